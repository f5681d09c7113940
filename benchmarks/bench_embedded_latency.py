"""How long does the embedded model take to answer a demo question on a CPU? (The aim: <= 1.5 s on 2 cores.)

The questions are exactly the demo's (`make demo`: camera_sim's scene of seed 3 at 640x480 and the
world's questions about it, ``ros.demo.scene_questions``), asked through the engine one after
another, each on a fresh engine cache for the first of a repeat (so the image encoder runs once per
repeat, as when the demo's first question arrives). Printed per model: the median over repeats of
the whole demo's time per question, of the first question (encoder included) and of the others
(features cached), the encoder's milliseconds and the tokens generated per question.

    python benchmarks/bench_embedded_latency.py [--model FOLDER ...] [--threads 2] [--repeats 5]
    python benchmarks/bench_embedded_latency.py --smoke   # one demo question, one repeat
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import add_smoke_argument, report  # noqa: E402

from pixellm_ros.engine import PixelLMEngine  # noqa: E402
from pixellm_ros.engine.engine import DEFAULT_MODEL_DIR  # noqa: E402
from pixellm_ros.ros import demo  # noqa: E402


def demo_defaults() -> argparse.Namespace:
    """`make demo`'s seed, image size and number of questions: the demo command's own defaults."""
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args([])


def time_model(engine: PixelLMEngine, image, instructions, repeats: int):  # type: ignore[no-untyped-def]
    totals, firsts, others, vision, tokens = [], [], [], [], []
    for _ in range(repeats):
        engine.clear_cache()
        began = time.perf_counter()
        for index, instruction in enumerate(instructions):
            start = time.perf_counter()
            result = engine.segment(image, instruction)
            elapsed = time.perf_counter() - start
            (firsts if index == 0 else others).append(elapsed)
            if index == 0:
                vision.append(result.timings["vision_ms"])
            tokens.append(result.generated_tokens)
        totals.append((time.perf_counter() - began) / len(instructions))
    return {
        "per_question_s": statistics.median(totals),
        "first_question_s": statistics.median(firsts),
        "cached_question_s": statistics.median(others) if others else float("nan"),
        "vision_ms": statistics.median(vision),
        "tokens_per_question": statistics.mean(tokens),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    add_smoke_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    defaults = demo_defaults()
    if args.smoke:
        args.repeats, defaults.questions = 1, 1
    scene = demo.scene_questions(defaults.seed, defaults.height, defaults.width, defaults.questions)
    image, instructions = scene.rgb, [q.instruction for q in scene.questions]
    print(f"{len(instructions)} demo questions on a {defaults.width}x{defaults.height} image, {args.threads} threads, "
          f"median of {args.repeats} repeats")

    rows = []
    for folder in args.model or [str(DEFAULT_MODEL_DIR)]:
        engine = PixelLMEngine.from_pretrained(folder)
        rows.append((Path(folder).name, time_model(engine, image, instructions, args.repeats)))
        engine.release()
    header = f"{'model':<40}{'per question':>14}{'first':>9}{'cached':>9}{'vision':>10}{'tokens':>8}"
    print(header + "\n" + "-" * len(header))
    for name, r in rows:
        print(f"{name:<40}{r['per_question_s']:>12.3f} s{r['first_question_s']:>7.3f} s{r['cached_question_s']:>7.3f} s"
              f"{r['vision_ms']:>7.1f} ms{r['tokens_per_question']:>8.1f}")
    report(dict(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
