#!/usr/bin/env bash
# The one prepared command of the GPU decode session (issue 20; docs/gpu_decode.md): on the GPU
# machine, install the carried wheels, then run benchmarks/gpu_7b.py (every decode mode and weight
# format at 7B, the key ones at 13B, the release check) and benchmarks/profile_decode.py (a
# torch.profiler summary of one 7B decode step per mode), all within DEVICE_BUDGET_S seconds.
#
#   here, once:   python scripts/fetch_device_wheels.py          # .device_wheels/ (git-ignored)
#   the session:  run(command="bash scripts/device_gpu_decode.sh", carry=[".device_wheels"], timeout_s=560)
#   on the CPU:   bash scripts/device_gpu_decode.sh --tiny       # the same script at tiny sizes
# Environment: DEVICE_BUDGET_S (480), PROFILE_BUDGET_S (110, kept for the profile), GPU_7B_PLAN (rows
# for gpu_7b.py --plan, default its GPU_PLAN), PROFILE_MODES (profile_decode.py --modes), PYTHON (python3).
#
# Writes into $OUT (the run tool's folder; out/device here when unset), at most 6 files, flat:
#   device_log.txt, gpu_7b.json, gpu_7b.md, profile_decode.md, profile_decode_raw.txt, profile_decode.json
# Both benchmarks rewrite their reports after every row / mode, so a run stopped early keeps its rows.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TINY=()
[ "${1:-}" = "--tiny" ] && TINY=(--tiny)
OUT="${OUT:-$ROOT/out/device}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_log.txt") 2>&1
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
TOTAL_S="${DEVICE_BUDGET_S:-480}"   # the whole script; the run's timeout_s leaves ~80 s beyond it
PROFILE_S="${PROFILE_BUDGET_S:-110}"  # kept for the profile after the benchmark
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

echo "[device] $(date -u '+%Y-%m-%d %H:%M:%S') UTC, budget ${TOTAL_S} s${TINY:+ (tiny sizes on the CPU)}"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,clocks.mem --format=csv

# The wheels the image lacks (torchao, bitsandbytes trimmed to CUDA 13, transformers 5.24), into a
# private folder ahead of the image's packages; one that does not import is removed again.
SITE="$(mktemp -d /tmp/pixellm_site.XXXX)"
if compgen -G ".device_wheels/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .device_wheels/*.whl \
    || echo "[device] pip could not install the carried wheels: going on without them"
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  for module in transformers torchao bitsandbytes; do
    if [ -d "$SITE/$module" ] && ! "$PY" -c "import $module" > /dev/null 2>&1; then
      echo "[device] the carried $module does not import here: removed, the image's own is used"
      "$PY" -c "import $module" 2>&1 | tail -2
      rm -rf "$SITE/$module" "$SITE/$module"-*.dist-info
    fi
  done
else
  echo "[device] no .device_wheels/: torchao and bitsandbytes rows will be refused (python scripts/fetch_device_wheels.py, carry .device_wheels)"
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - << 'EOF'
import importlib
import torch
print(f"[device] torch {torch.__version__} (CUDA {torch.version.cuda}), GPU: "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
for name in ("transformers", "torchao", "bitsandbytes"):
    try:
        module = importlib.import_module(name)
        print(f"[device] {name} {module.__version__} from {module.__file__}")
    except Exception as exc:  # noqa: BLE001 - say what is missing and go on
        print(f"[device] {name}: not importable ({type(exc).__name__}: {exc})")
EOF

# The benchmark first (its compiled steps also fill the inductor cache the profile then reuses).
BENCH_S=$(( TOTAL_S - $(elapsed) - PROFILE_S ))
echo "[device] gpu_7b.py, budget ${BENCH_S} s (at $(elapsed) s)"
PLAN=()
[ -n "${GPU_7B_PLAN:-}" ] && PLAN=(--plan "$GPU_7B_PLAN")   # a rerun may name its own rows
timeout --kill-after=10 $(( BENCH_S + 60 )) "$PY" benchmarks/gpu_7b.py "${TINY[@]}" "${PLAN[@]}" --budget-s "$BENCH_S" --out "$OUT"
echo "[device] gpu_7b.py exit $? at $(elapsed) s"

LEFT=$(( TOTAL_S - $(elapsed) - 10 ))
if [ "$LEFT" -gt 20 ]; then
  echo "[device] profile_decode.py, budget ${LEFT} s"
  MODES=()
  [ ${#TINY[@]} -eq 0 ] && MODES=(--modes "${PROFILE_MODES:-compiled+fused,cuda_graph+fused,dynamic,cuda_graph,static,compiled,int4_weight/cuda_graph+fused}")
  # gpu_7b.py compiled the same 7B steps (same shapes, same cache size): the inductor cache is warm.
  timeout --kill-after=10 $(( LEFT + 30 )) "$PY" benchmarks/profile_decode.py "${TINY[@]}" "${MODES[@]}" \
    --budget-s "$LEFT" --compile-estimate-s 45 --out "$OUT"
  echo "[device] profile_decode.py exit $? at $(elapsed) s"
else
  echo "[device] no time left for profile_decode.py ($LEFT s)"
fi
rm -rf "$SITE"
echo "[device] done at $(elapsed) s; files in $OUT:"
ls -la "$OUT"
