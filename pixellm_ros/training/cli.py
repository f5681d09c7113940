"""`pixellm-ros train`: train the small PixelLM on the tabletop world.

    pixellm-ros train --out runs/demo [--recipe cpu|gpu|gpu_tiny] [--steps N] [--resume]
                      [--device auto|cpu|cuda] [--threads 2] [--export pixellm_ros/assets/default_model]
                      [--eval-images 60]

Writes the run folder described in ``trainer``; ``--recipe`` starts from a named preset of the
settings (``recipes``; default ``cpu``, the shipped model's), the other options override it;
``--export`` also writes the final model folder there (the shipped default model lives in
``pixellm_ros/assets/default_model``); ``--eval-images`` scores the exported model with the
engine on held-out world scenes afterwards. A recipe with ``final_eval_scenes`` (the ``gpu``
recipe: 200) then runs ``final_eval.evaluate_run`` into ``out/eval/``; ``out/summary.json``
gathers the run: recipe, settings, machine, stage steps and times, model size, the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from .recipes import RECIPES, recipe
from .trainer import Trainer, TrainResult, TrainSettings

DEFAULTS = TrainSettings(out_dir="")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `pixellm-ros train` (the CLI's subcommand parser calls this)."""
    parser.add_argument("--out", required=True, help="run folder (checkpoints, curves, final model)")
    parser.add_argument(
        "--recipe", choices=sorted(RECIPES), default=None,
        help="named preset of the settings (default cpu: the shipped model's; gpu: one H100/H200 + 16 cores)",
    )
    parser.add_argument("--model", default=None, help=f"model size and tower (default {DEFAULTS.model}; demo_conv: conv stem)")
    parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default {DEFAULTS.steps})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--device", default=None, help='"auto" (default: cuda if present), "cpu", "cuda", "cuda:N"')
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers rendering scenes (default 0)")
    parser.add_argument("--images-per-step", type=int, default=None, help=f"default {DEFAULTS.images_per_step}")
    parser.add_argument("--questions-per-image", type=int, default=None, help=f"default {DEFAULTS.questions_per_image}")
    parser.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {DEFAULTS.lr})")
    parser.add_argument("--seed", type=int, default=None, help=f"default {DEFAULTS.seed}")
    parser.add_argument("--eval-every", type=int, default=None, help=f"default {DEFAULTS.eval_every}")
    parser.add_argument("--checkpoint-every", type=int, default=None, help=f"default {DEFAULTS.checkpoint_every}")
    parser.add_argument("--export", default=None, help="also write the final model folder here")
    parser.add_argument(
        "--export-dtype", choices=("float16", "float32"), default=None, help="weights on disk (default float16)"
    )
    parser.add_argument(
        "--eval-images", type=int, default=0, help="after training, score the model with the engine on N held-out scenes"
    )
    parser.add_argument(
        "--decoder-pretrain-steps", type=int, default=None,
        help=f"stage 1: vision + decoder steps on name-prompted objects (default {DEFAULTS.decoder_pretrain_steps}; 0 = none)",
    )
    parser.add_argument(
        "--prompt-distillation", type=float, default=None,
        help=f"weight of the pull of seg prompts to their stage-1 name vectors (default {DEFAULTS.prompt_distillation})",
    )
    parser.add_argument(
        "--prompt-separation", type=float, default=None,
        help=f"weight of the push between different objects' seg prompts (default {DEFAULTS.prompt_separation})",
    )
    parser.add_argument(
        "--freeze-image-path", action=argparse.BooleanOptionalAction, default=None,
        help=f"stage 2 keeps stage 1's vision tower and decoder fixed (default {DEFAULTS.freeze_image_path})",
    )
    parser.add_argument(
        "--decoder-pretrain-budget", type=float, default=None, help="stage 1 wall-clock budget in seconds (0 = none)"
    )
    parser.add_argument("--stage-two-budget", type=float, default=None, help="stage 2 wall-clock budget in seconds (0 = none)")
    parser.add_argument(
        "--final-eval-scenes", type=int, default=None,
        help="after training: held-out scenes for the final evaluation against --compare-with (0 = none)",
    )
    parser.add_argument("--compare-with", default=None, help='"shipped" (the embedded model), a model folder, or ""')
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA (CPU is always float32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


_OVERRIDES = {
    "model": "model",
    "decoder_pretrain_budget": "decoder_pretrain_budget_s",
    "stage_two_budget": "stage_two_budget_s",
    "final_eval_scenes": "final_eval_scenes",
    "compare_with": "compare_with",
    "steps": "steps",
    "device": "device",
    "threads": "threads",
    "workers": "num_workers",
    "images_per_step": "images_per_step",
    "questions_per_image": "questions_per_image",
    "lr": "lr",
    "seed": "seed",
    "eval_every": "eval_every",
    "checkpoint_every": "checkpoint_every",
    "export_dtype": "export_dtype",
    "prompt_separation": "prompt_separation",
    "prompt_distillation": "prompt_distillation",
    "decoder_pretrain_steps": "decoder_pretrain_steps",
    "freeze_image_path": "freeze_image_path",
}


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """Fresh run: the recipe's settings (default cpu) + given options. Resume: the run's saved
    settings + given options."""
    out = Path(args.out)
    saved = out / "settings.json"
    if args.resume and saved.is_file():
        base = TrainSettings.from_dict(json.loads(saved.read_text()))
    else:
        base = recipe(getattr(args, "recipe", None) or "cpu").train_settings(str(out))
    values = base.to_dict()
    values["out_dir"] = str(out)
    for arg_name, field_name in _OVERRIDES.items():
        value = getattr(args, arg_name, None)
        if value is not None:
            values[field_name] = value
    if getattr(args, "no_progress", False):
        values["progress"] = False
    if getattr(args, "fp32", False):
        values["amp"] = False
    return TrainSettings.from_dict(values)


def run_train_cli(args: argparse.Namespace) -> int:
    """Run `pixellm-ros train` with parsed arguments; returns the exit code."""
    settings = settings_from_args(args)
    trainer_probe = Path(settings.out_dir) / "checkpoints" / "last.pt"
    if trainer_probe.is_file() and not args.resume:
        print(f"{settings.out_dir} already holds a run (checkpoints/last.pt): pass --resume or another --out")
        return 2
    began = time.monotonic()
    trainer = Trainer(settings, resume=args.resume)
    print(f"recipe {settings.recipe}: model {settings.model} on {trainer.device}, {_parameters(trainer):,} parameters",
          flush=True)
    if args.resume:
        print(f"resuming at step {trainer.step} of {settings.steps}")
    result = trainer.run()
    print(
        f"stage 1: {result.stage_one_steps} steps in {result.stage_one_seconds:.0f} s; stage 2: trained to step "
        f"{result.steps}, median {result.seconds_per_step:.2f} s/step, {result.stage_two_seconds:.0f} s; "
        f"final train loss {result.final_train.get('total', float('nan')):.4f}; model in {result.model_dir}",
        flush=True,
    )
    if result.final_eval:
        print("held-out (teacher forced): " + ", ".join(f"{k} {v:.4f}" for k, v in result.final_eval.items() if k != "step"))
    model_dir = result.model_dir
    if args.export and model_dir is not None:
        target = Path(args.export)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model_dir, target)
        print(f"exported the model to {target}")
    if args.eval_images > 0 and model_dir is not None:
        from .final_eval import evaluate_model_folder

        device = "cuda" if trainer.device.type == "cuda" else "cpu"
        # held-out: every question involves an unseen colour x shape pair; train: new scenes, seen pairs
        for split in ("heldout", "train"):
            report = evaluate_model_folder(
                model_dir, Path(settings.out_dir) / "eval_data", split, args.eval_images, device=device,
                progress=settings.progress,
            )
            print(f"\n{split} split ({args.eval_images} scenes, engine generation):")
            print(report.table())
            report.write_json(Path(settings.out_dir) / f"eval_{split}.json")
    evaluation = None
    if settings.final_eval_scenes > 0 and model_dir is not None:
        from .final_eval import evaluate_run

        evaluation = evaluate_run(
            model_dir, Path(settings.out_dir) / "eval", settings.final_eval_scenes, settings.final_eval_seed,
            settings.compare_with, settings.final_eval_workers,
        )
        print(f"\nheld-out, {settings.final_eval_scenes} scenes (seed {settings.final_eval_seed}), engine generation:")
        print(evaluation["new"]["table"])
        if "comparison_table" in evaluation:
            print(f"\npaired against {evaluation['base']['model']}:")
            print(evaluation["comparison_table"])
        print("\naims: " + ", ".join(
            f"{name} {aim['value'] if aim['value'] is None else round(aim['value'], 3)} "
            f"({'met' if aim['met'] else 'not met'}, aim {aim['aim']})"
            for name, aim in evaluation["aims"].items()
        ))
    summary = run_summary(trainer, result, time.monotonic() - began, evaluation)
    (Path(settings.out_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {Path(settings.out_dir) / 'summary.json'}", flush=True)
    return 0


def _parameters(trainer: Trainer) -> int:
    return sum(p.numel() for p in trainer.model.parameters())


def run_summary(
    trainer: Trainer, result: TrainResult, seconds: float, evaluation: dict[str, Any] | None
) -> dict[str, Any]:
    """What the run was and what it gave, as one JSON-ready dict (out/summary.json)."""
    import torch

    device = trainer.device
    weights = result.model_dir / "model.safetensors" if result.model_dir is not None else None
    stage_one = trainer.stage_one_history
    return {
        "recipe": trainer.settings.recipe,
        "settings": trainer.settings.to_dict(),
        "machine": {
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_cores": _cores(),
        },
        "parameters": _parameters(trainer),
        "model_dir": str(result.model_dir) if result.model_dir is not None else None,
        "model_bytes": weights.stat().st_size if weights is not None and weights.is_file() else None,
        "stage_one": {
            "steps": result.stage_one_steps,
            "seconds": result.stage_one_seconds,
            "last_50_mask_iou": _mean_last(stage_one, "mask_iou", 50),
            "last_50_object_shape_accuracy": _mean_last(stage_one, "object_shape_accuracy", 50),
        },
        "stage_two": {
            "steps": result.steps,
            "seconds": result.stage_two_seconds,
            "median_seconds_per_step": result.seconds_per_step,
            "final_train": result.final_train,
            "final_teacher_forced_eval": result.final_eval,
        },
        "total_seconds": seconds,
        "evaluation": evaluation,
    }


def _mean_last(rows: list[dict[str, float]], key: str, count: int) -> float | None:
    values = [row[key] for row in rows[-count:] if key in row]
    return sum(values) / len(values) if values else None


def _cores() -> int:
    from .loading import available_cores

    return available_cores()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixellm-ros train", description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)
    return run_train_cli(parser.parse_args(argv))


# The project CLI's command interface (pixellm_ros/cli.py).
HELP = "train the small PixelLM on the tabletop world (the embedded default model's recipe)"
add_arguments = add_train_arguments
run = run_train_cli
