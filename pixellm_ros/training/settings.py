"""The training settings, declared once: this dataclass is the table.

Each field is one knob: its type, its default (the shipped recipe's value) and, in its metadata, the
help text and the stage it belongs to. The CLI's options (``add_setting_options`` /
``settings_from_args``) and the recipes (``RECIPES``: named overrides, checked against these fields)
come from it; nothing else restates a default.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pixellm_ros.world.questions import KIND_WEIGHTS


def _knob(default: Any, help: str, stage: str) -> Any:
    return field(default=default, metadata={"help": help, "stage": stage})


@dataclass(frozen=True)
class TrainSettings:
    """How the embedded model is trained (see README, "The embedded model")."""

    # the scenes (rendered once, encoded once by the frozen image encoder, cached in the run folder)
    train_scenes: int = _knob(3000, "training scenes (train split: no held-out colour x shape pair)", "data")
    wide_scene_share: float = _knob(0.25, "share of 480x640 scenes (the rest 224x224)", "data")
    seed: int = _knob(1, "seed of the scenes, the questions and the initialisation", "data")
    # stage 1: object tokenizer + pixel decoder on the cached encoder maps
    stage1_steps: int = _knob(1200, "stage 1 optimizer steps", "stage1")
    stage1_batch: int = _knob(16, "stage 1 scenes per step", "stage1")
    stage1_lr: float = _knob(1e-3, "stage 1 peak learning rate (one-cycle)", "stage1")
    stage1_masks_per_scene: int = _knob(2, "stage 1 objects per scene whose masks are decoded each step", "stage1")
    # stage 2: the LLM (low-rank adapters, added token rows) + token projector + seg codebook
    stage2_steps: int = _knob(1000, "stage 2 optimizer steps", "stage2")
    stage2_batch: int = _knob(32, "stage 2 questions per step", "stage2")
    questions_per_scene: int = _knob(
        4, "stage 2 questions asked of one scene in one sequence: they read the scene's tokens once, each sees "
        "only those and itself", "stage2"
    )
    stage2_lr: float = _knob(1e-3, "stage 2 peak learning rate (one-cycle)", "stage2")
    lora_rank: int = _knob(16, "rank of the adapters on every Linear of the LLM's layers", "stage2")
    llm_layers: str = _knob(
        "", "the base LLM's layers the LLM keeps, in order: numbers and ranges (\"0-2,8-11,15\"); empty: all of them "
        "(30 for SmolLM2). A stage-2 step costs about their count / 30 of the whole LLM's", "stage2"
    )
    phrasing_rate: float = _knob(0.5, "share of training questions re-worded (training.phrasing)", "stage2")
    none_rate: float = _knob(0.15, "share of questions about something absent", "stage2")
    list_rate: float = _knob(
        0.0, "share of stage 2's scenes also asked to list every object they hold (world kind \"everything\"; "
        "the answer names each object left to right)", "stage2"
    )
    typo_rate: float = _knob(
        0.0, "share of re-worded questions given one typo (a letter swapped with the next, dropped or doubled)", "stage2"
    )
    rewrite_rate: float = _knob(
        0.0, "share of re-worded questions asked in another sentence form of the same meaning (training.phrasing.REWORDINGS)",
        "stage2"
    )
    question_kinds: str = _knob(
        "", "stage 2's question mix: kind=weight pairs, comma-separated (e.g. affordance=3,half=1.2), replacing the "
        "world's weights (world.questions.KIND_WEIGHTS) for the kinds named; the evaluation keeps the world's mix",
        "stage2"
    )
    prompt_distillation: float = _knob(1.0, "weight of the pull of seg prompts to stage 1's object prompts", "stage2")
    object_orders: str = _knob(
        "left_to_right,front_to_back", "the orders the LLM reads the object slots in, comma-separated (model config OBJECT_ORDERS): "
        "left_to_right, or also front_to_back (nearest the camera first)", "stage2"
    )
    object_neighbour_words: bool = _knob(
        True, "each object slot carries, after its place, the attribute words of the detected object nearest to it",
        "stage2"
    )
    object_neighbour_marker: str = _knob(
        "near", "the word written before the neighbour's words in each slot (one LLM token after a space, e.g. near: "
        "\"small red ball 3 7 near large blue cup\"); empty: none; none either without object_neighbour_words", "stage2"
    )
    # the run
    threads: int = _knob(2, "torch CPU threads", "run")
    checkpoint_minutes: float = _knob(8.0, "minutes between checkpoints (a stopped run resumes from the last)", "run")
    fresh_process_minutes: float = _knob(
        15.0, "minutes after which the run goes on from a checkpoint in a fresh process, again and again (0: one "
        "process throughout): a long process's heap slows its steps (training.memory)", "run"
    )
    eval_questions: int = _knob(100, "held-out questions the run scores through the engine at its end (0: none)", "run")

    def __post_init__(self) -> None:
        self.kind_weights  # noqa: B018 - a malformed question_kinds is an error at once, not at stage 2
        self.base_layers  # noqa: B018 - a malformed llm_layers is an error at once, not at stage 2

    @property
    def kind_weights(self) -> dict[str, float]:
        """Stage 2's weight per question kind: the world's ``KIND_WEIGHTS`` with ``question_kinds``'
        pairs in their place."""
        weights = dict(KIND_WEIGHTS)
        for pair in filter(None, (p.strip() for p in self.question_kinds.split(","))):
            kind, equals, value = (part.strip() for part in pair.partition("="))
            try:
                weight = float(value) if equals else None
            except ValueError:
                weight = None
            if weight is None:
                raise ValueError(f"question_kinds: {pair!r} is not kind=weight")
            if kind not in weights:
                raise ValueError(f"question_kinds: unknown kind {kind!r}; the kinds: {', '.join(weights)}")
            weights[kind] = weight
            if weights[kind] < 0:
                raise ValueError(f"question_kinds: the weight of {kind} is negative")
        return weights

    @property
    def base_layers(self) -> tuple[int, ...]:
        """``llm_layers`` as the base's layer numbers, ascending (() = all of them)."""
        layers: list[int] = []
        for part in filter(None, (p.strip() for p in self.llm_layers.split(","))):
            first, dash, last = part.partition("-")
            try:
                span = range(int(first), int(last if dash else first) + 1)
            except ValueError:
                span = range(0)
            if not span:
                raise ValueError(f"llm_layers: {part!r} is not a layer number or a range a-b (a <= b)")
            layers.extend(span)
        if any(later <= earlier for earlier, later in zip(layers, layers[1:])):
            raise ValueError(f"llm_layers: {self.llm_layers!r} is not ascending layer numbers, each once")
        return tuple(layers)

    @property
    def orders(self) -> tuple[str, ...]:
        """``object_orders`` as the model config's tuple."""
        return tuple(order.strip() for order in self.object_orders.split(","))

    @property
    def slot_marker(self) -> str:
        """The word the object slots write before their neighbour's words: ``object_neighbour_marker``
        where the slots carry them (``object_neighbour_words``), else none."""
        return self.object_neighbour_marker if self.object_neighbour_words else ""


SETTING_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(TrainSettings)}

RECIPES: dict[str, dict[str, Any]] = {
    "cpu": {},  # the shipped model: the defaults above
    "tiny": {  # the whole pipeline in a minute: tests and smoke checks, not a model
        "train_scenes": 48, "stage1_steps": 6, "stage1_batch": 4, "stage2_steps": 4, "stage2_batch": 4, "questions_per_scene": 2,
        "lora_rank": 2, "eval_questions": 0, "checkpoint_minutes": 0.0, "fresh_process_minutes": 0.0,
        "object_orders": "left_to_right",  # half the image tokens; both orders are tested by name
        "object_neighbour_words": False,  # the tests' slot layout: the neighbour's words are tested by name
        "llm_layers": "0-3",  # the package LLM's first 4 layers: a step ~1/7 of the whole's
    },
}


def recipe(name: str, **overrides: Any) -> TrainSettings:
    """The named recipe's settings with ``overrides`` (unknown names are an error)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    values = {**RECIPES[name], **overrides}
    unknown = set(values) - set(SETTING_FIELDS)
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}")
    return TrainSettings(**values)


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One ``--name`` option per setting (default: the recipe's); a yes / no setting is ``--name`` /
    ``--no-name``."""
    for name, spec in SETTING_FIELDS.items():
        kind = type(spec.default)
        shown = repr(spec.default) if kind is str else spec.default  # an empty one shows as ''
        value = {"action": argparse.BooleanOptionalAction} if kind is bool else {"type": kind}
        parser.add_argument(
            "--" + name.replace("_", "-"), **value, default=None,
            help=f"{spec.metadata['help']} ({spec.metadata['stage']}; default {shown})",
        )


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """The recipe named by ``args.recipe`` with every option given on the command line."""
    overrides = {name: getattr(args, name) for name in SETTING_FIELDS if getattr(args, name, None) is not None}
    return recipe(getattr(args, "recipe", None) or "cpu", **overrides)
