"""Resumable training state: model, optimizer, scheduler, step, RNG states and the loss history.

The data stream needs no state of its own (each step's data is a function of the seed and the
step, see ``dataset``), so model + optimizer + scheduler + step + torch RNG reproduce the next
step exactly. Files are written to a temporary name and renamed, so a run killed while saving
keeps its previous checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_NAME = "last.pt"


@dataclass
class TrainingState:
    """What a checkpoint restores besides the module/optimizer/scheduler weights."""

    step: int = 0  # number of optimizer steps already taken
    train_history: list[dict[str, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainingState,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write everything needed to continue at ``state.step`` to ``path`` (atomically)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": state.step,
        "train_history": state.train_history,
        "eval_history": state.eval_history,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "extra": extra or {},
    }
    tmp = out.with_name(out.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out)
    return out


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    map_location: torch.device | str = "cpu",
) -> tuple[TrainingState, dict[str, Any]]:
    """Restore a checkpoint into the given objects; returns the TrainingState and the ``extra`` dict."""
    payload = torch.load(Path(path), map_location=map_location, weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"].cpu())
    if payload.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in payload["cuda_rng"]])
    state = TrainingState(
        step=int(payload["step"]),
        train_history=list(payload["train_history"]),
        eval_history=list(payload["eval_history"]),
    )
    return state, dict(payload.get("extra", {}))
