#!/usr/bin/env bash
# The embedded model's GPU recipe end to end, as ONE command on the device machine (one H100/H200,
# 16 CPU cores, torch + transformers + opencv + scipy + sentencepiece + safetensors; no ROS, no
# pycocotools, no network). From a bare copy of the working tree:
#
#   bash scripts/device_train_embedded.sh            # the gpu recipe: ~7 min of training + ~1 min of evaluation
#   bash scripts/device_train_embedded.sh --tiny     # the gpu_tiny recipe: the same path in a minute or two (CPU too)
#
# It checks the machine and the imports, trains with `pixellm-ros train --recipe gpu` in a scratch
# run folder ($RUN_DIR, default /tmp/pixellm_gpu_run; stage budgets 180 s + 240 s), exports the
# model (fp16 safetensors), scores it and the shipped model through the engine on the 200 held-out
# scenes of docs/embedded_model_experiments.md (seed 1) in parallel CPU processes, and writes
# the paired bootstrap between them. Python is stopped after $LIMIT_S seconds whatever happens
# (550 s; --tiny 400 s), so the whole command ends within 9.7 minutes (run it with timeout_s 600).
# What comes back, in $OUT (the device tool returns at most 8 files, no sub-folders needed):
#
#   log.txt          everything printed            summary.json    recipe, machine, steps, times, figures, aims
#   model.tar        the exported model folder     eval_new.json   per-question report of the new model
#   history.json     both stages' curves           eval_base.json  per-question report of the shipped model
#   loss_curve.png   the curves drawn              comparison.json paired bootstrap, shipped -> new
#
# Unpack with `tar -xf model.tar` (a folder `model/` that `--model` / `model.path` accepts).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-/tmp/pixellm_device_out}"
RUN="${RUN_DIR:-/tmp/pixellm_gpu_run}"
PY="${PYTHON:-python3}"
RECIPE=gpu
LIMIT_S="${LIMIT_S:-550}"
if [[ "${1:-}" == "--tiny" ]]; then
    RECIPE=gpu_tiny
    LIMIT_S="${LIMIT_S_TINY:-400}"
fi
mkdir -p "$OUT"
rm -rf "$RUN"
LOG="$OUT/log.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

EXTRA=()
{
    echo "== $(date -u +%FT%TZ) recipe $RECIPE, limit ${LIMIT_S}s, $(nproc) cores, $($PY -V 2>&1)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    df -h /dev/shm /tmp 2>/dev/null | sed 's/^/   /'
    $PY - <<'PY'
import importlib, sys
need = ("torch", "transformers", "cv2", "scipy", "sentencepiece", "safetensors", "numpy", "PIL", "tqdm")
missing = []
for name in need:
    try:
        module = importlib.import_module(name)
        print(f"   {name} {getattr(module, '__version__', '')}")
    except ImportError as error:
        missing.append(f"{name} ({error})")
for name in ("matplotlib", "pycocotools", "rclpy"):
    try:
        importlib.import_module(name)
        print(f"   {name}: present (optional)")
    except ImportError:
        print(f"   {name}: absent (optional, not needed)")
import pixellm_ros.training.cli, pixellm_ros.training.final_eval, pixellm_ros.training.recipes  # noqa: E401,F401
import torch
print(f"   cuda available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
if missing:
    sys.exit("missing: " + ", ".join(missing))
PY
} 2>&1 | tee "$LOG"
if [[ ${PIPESTATUS[0]} -ne 0 ]]; then
    echo "preflight failed: see $LOG" | tee -a "$LOG"
    exit 3
fi
# DataLoader workers hand their batches over in /dev/shm: with little of it, fewer workers.
SHM_FREE_KB=$(df -k --output=avail /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
if [[ -n "$SHM_FREE_KB" && "$SHM_FREE_KB" -lt 4000000 ]]; then
    echo "only ${SHM_FREE_KB} KB free in /dev/shm: 4 workers" | tee -a "$LOG"
    EXTRA+=(--workers 4)
fi

timeout --signal=TERM --kill-after=10 "$LIMIT_S" \
    $PY -m pixellm_ros.training --recipe "$RECIPE" --out "$RUN" --no-progress "${EXTRA[@]}" 2>&1 | tee -a "$LOG"
STATUS=${PIPESTATUS[0]}
echo "== training + evaluation exited with $STATUS at $(date -u +%FT%TZ)" | tee -a "$LOG"

# What comes back (at most 8 files in $OUT).
[[ -d "$RUN/model" ]] && tar -C "$RUN" -cf "$OUT/model.tar" model
for file in "$RUN/summary.json" "$RUN/history.json" "$RUN/loss_curve.png" \
            "$RUN/eval/eval_new.json" "$RUN/eval/eval_base.json" "$RUN/eval/comparison.json"; do
    [[ -f "$file" ]] && cp "$file" "$OUT/"
done
ls -l "$OUT" | tee -a "$LOG"
exit "$STATUS"
