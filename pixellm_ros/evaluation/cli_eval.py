"""`pixellm-ros eval`: score a model on MUSE-format data (gIoU, cIoU, count accuracy).

Command module for ``pixellm_ros.cli``: ``HELP``, ``add_arguments(parser)``, ``run(args)``.
"""

from __future__ import annotations

import argparse

from pixellm_ros.evaluation.evaluator import EvaluationReport, Predictor, evaluate
from pixellm_ros.evaluation.muse_data import load_muse


HELP = "evaluate a model on MUSE-format data: gIoU, cIoU, target-count accuracy"


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `pixellm-ros eval` (the CLI's subcommand parser calls this)."""
    parser.add_argument("--data", required=True, help="MUSE-format JSON file")
    parser.add_argument("--images", required=True, help="image root (files found by file name)")
    parser.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most N questions")
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda", "cuda:N" or "auto"')
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))


def engine_predictor(model_dir: str | None, device: str = "cpu", dtype: str = "float32") -> Predictor:
    """A predictor backed by ``PixelLMEngine`` (imported here: the engine pulls in torch and the model)."""
    from pixellm_ros.engine import PixelLMEngine

    engine = PixelLMEngine.from_pretrained(model_dir, device=device, dtype=dtype)

    def predict(image_rgb, instruction):  # type: ignore[no-untyped-def]
        return [t.mask for t in engine.segment(image_rgb, instruction).targets]

    return predict


def run_eval_cli(args: argparse.Namespace, predictor: Predictor | None = None) -> int:
    """Run `pixellm-ros eval` with parsed arguments; returns the exit code.

    ``predictor`` replaces the engine (any segmenter with the same signature).
    """
    images = load_muse(args.data, args.images)
    if predictor is None:
        predictor = engine_predictor(args.model, getattr(args, "device", "cpu"), getattr(args, "dtype", "float32"))
    report: EvaluationReport = evaluate(images, predictor, limit=getattr(args, "limit", None))
    print(report.table())
    if getattr(args, "out", None):
        report.write_json(args.out)
        print(f"wrote {args.out}")
    return 0


add_arguments = add_eval_arguments
run = run_eval_cli
