"""The training recipes: named presets of ``TrainSettings`` (`pixellm-ros train --recipe NAME`).

A recipe is data: the settings it changes from ``TrainSettings``' defaults (which ARE the CPU
recipe). Options given on the command line override the recipe's values.

* ``cpu``: the recipe of the embedded model as shipped. Patch-7 ViT, 650 stage-1 steps of 8
  scenes, 1000 stage-2 steps of 6 scenes x 2 questions, scenes rendered in the training process;
  just under an hour on 2 CPU cores (measured 54 minutes: 31 for stage 1, 24 for stage 2).
* ``gpu``: for one H100 / H200 (the project's device machine: 16 CPU cores). The conv-stem
  tower (``demo_conv``), scenes rendered by DataLoader workers on every core but two, bf16
  autocast, 6x larger stage-1 batches and 5x larger stage-2 batches (4 questions per scene),
  the attribute heads teaching the tower colour and shape directly in stage 1, and wall-clock
  budgets instead of step counts (3 + 4 minutes of training; the learning rates decay over the
  budgets), then the 200-scene held-out evaluation through the engine in parallel processes,
  paired against the shipped model. Budgeted, the run ends in time on any machine; its step
  counts are whatever the machine reaches.
* ``gpu_tiny``: the ``gpu`` recipe shrunk to a minute or two of a CPU (tiny batches and budgets,
  4 evaluation scenes): a check that the whole GPU path runs, not a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .loading import AUTO_WORKERS
from .trainer import TrainSettings


@dataclass(frozen=True)
class Recipe:
    """A named preset: ``settings`` are TrainSettings fields and the values this recipe gives them."""

    name: str
    summary: str
    settings: Mapping[str, Any]

    def train_settings(self, out_dir: str, **overrides: Any) -> TrainSettings:
        """TrainSettings of this recipe for a run in ``out_dir``, ``overrides`` applied last."""
        values = TrainSettings(out_dir=out_dir).to_dict()
        values.update(self.settings)
        values.update(overrides)
        values["recipe"] = self.name
        values["out_dir"] = out_dir
        return TrainSettings.from_dict(values)


_GPU: dict[str, Any] = {
    "model": "demo_conv",
    "device": "cuda",
    "amp": True,
    "num_workers": AUTO_WORKERS,
    "tokenizer_from": "shipped",  # the same world tokenizer recipe; saves training it again
    # stage 1: vision tower + decoder, name-prompted masks + the attribute heads
    "decoder_pretrain_steps": 100_000,  # the budget ends it
    "decoder_pretrain_images": 48,
    "decoder_pretrain_lr": 1e-3,
    "decoder_pretrain_schedule": "cosine",
    "decoder_pretrain_warmup_steps": 100,
    "decoder_pretrain_min_lr_ratio": 0.1,
    "decoder_pretrain_budget_s": 180.0,
    "attribute_weight": 0.5,
    # stage 2: the LLM learns to answer and to point
    "steps": 100_000,  # the budget ends it
    "images_per_step": 32,
    "questions_per_image": 4,
    "lr": 1.6e-3,
    "warmup_steps": 100,
    "min_lr_ratio": 0.05,
    "stage_two_budget_s": 240.0,
    "curriculum_steps": 1000,
    "eval_every": 500,
    "eval_images": 16,
    "checkpoint_every": 0,
    # after training
    "final_eval_scenes": 200,
    "final_eval_seed": 1,
    "final_eval_workers": AUTO_WORKERS,
    "compare_with": "shipped",
    "progress": False,
}

_GPU_TINY: dict[str, Any] = {
    **_GPU,
    "device": "auto",
    "decoder_pretrain_images": 4,
    "decoder_pretrain_warmup_steps": 3,
    "decoder_pretrain_budget_s": 20.0,
    "images_per_step": 2,
    "questions_per_image": 2,
    "warmup_steps": 3,
    "stage_two_budget_s": 25.0,
    "curriculum_steps": 20,
    "eval_every": 10,
    "eval_images": 2,
    "final_eval_scenes": 4,
    "final_eval_workers": 2,  # the parallel evaluation path, even on a 2-core machine
}

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("cpu", "the shipped model's recipe: 2 CPU cores, just under an hour", {}),
        Recipe("gpu", "one H100/H200 + 16 CPU cores: conv-stem tower, 3 + 4 minutes of budgeted training, "
                      "then the 200-scene held-out evaluation against the shipped model", _GPU),
        Recipe("gpu_tiny", "the gpu recipe at a tiny size, to check its whole path on a CPU in a minute or two",
               _GPU_TINY),
    )
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; the recipes are {sorted(RECIPES)}")
    return RECIPES[name]


def _check() -> None:
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    for item in RECIPES.values():
        unknown = set(item.settings) - fields
        if unknown:
            raise ValueError(f"recipe {item.name!r} sets unknown settings {sorted(unknown)}")


_check()
