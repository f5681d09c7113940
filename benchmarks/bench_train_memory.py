"""How much do the training process's memory settings (``training.memory``) speed up a step?

Runs stage 2's step (``bench_stage2_packing.py``, one layout) in a fresh process for each memory
mode: ``default`` (glibc and torch as they come), ``pages`` (2 MB pages for torch's large buffers),
``keep`` (glibc keeps what is freed), ``both`` (`pixellm-ros train --memory both`); prints each one's
seconds and page faults a step (the median; and of the first and the last quarter of the steps, to
see a long run slow down), and its speed as a multiple of the default's. The settings are
process-wide and the first must precede torch's import, hence a process each.

    python benchmarks/bench_train_memory.py [--layout 32x4] [--steps 4] [--scenes 96] [--object-orders O]
    python benchmarks/bench_train_memory.py --smoke   # toy sizes (the LLM's first 2 layers), default and both only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import add_smoke_argument, read_result, report  # noqa: E402

from pixellm_ros.training.memory import MODES  # noqa: E402  (the default first)

PACKING = Path(__file__).resolve().parent / "bench_stage2_packing.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", default="32x4", help="Q questions a step asked N to a sequence, QxN")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--scenes", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--object-orders", default=None)
    add_smoke_argument(parser)
    args = parser.parse_args()
    modes = ("default", "both") if args.smoke else tuple(MODES)
    common = ["--layouts", "4x2" if args.smoke else args.layout, "--threads", str(args.threads)]
    common += ["--smoke", "--llm-layers", "2"] if args.smoke else ["--steps", str(args.steps), "--scenes", str(args.scenes)]
    if args.object_orders:
        common += ["--object-orders", args.object_orders]

    rows = []
    for mode in modes:
        done = subprocess.run([sys.executable, str(PACKING), *common, "--memory", mode], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{mode}: bench_stage2_packing.py failed\n{done.stderr[-3000:]}")
        figures = read_result(done.stdout)
        layout = figures["layouts"][0]
        rows.append({"mode": mode, "taken": figures["memory_taken"], "step_s": layout["step_s"],
                     "page_faults": layout["page_faults"], "first_s": layout["first_s"], "last_s": layout["last_s"]})
    base = rows[0]["step_s"]
    print(f"stage-2 step {common[1]} (questions x per sequence), {args.threads} threads, a process per mode")
    print("mode    | taken        | s a step | first / last quarter | page faults a step | speed vs default")
    for row in rows:
        row["speedup"] = base / row["step_s"]
        print(f"{row['mode']:7s} | {'+'.join(row['taken']) or '-':12s} | {row['step_s']:8.2f} | "
              f"{row['first_s']:9.2f} / {row['last_s']:<8.2f} | {row['page_faults']:18.0f} | {row['speedup']:.2f}x")
    report({"modes": rows})


if __name__ == "__main__":
    main()
