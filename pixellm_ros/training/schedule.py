"""Time-budgeted training stages: a stage clock and a learning rate that follows the stage's progress.

A stage given a wall-clock budget ends when its budget or its step count runs out, whichever
comes first, so a run ends in time however fast the machine is (the GPU recipe's budgets are set
for one H200; the same recipe on a slower machine simply takes fewer steps). Its learning rate
follows the stage's progress p = max(step / steps, elapsed / budget) in [0, 1] instead of the
step count alone: a linear warm-up over the first ``warmup_steps`` steps, then a cosine from the
peak to ``min_lr_ratio`` x peak as p goes from 0 to 1. The decay therefore completes at the end
of the budget whatever the speed. A budgeted stage that is resumed restarts its clock.
"""

from __future__ import annotations

import math
import time

import torch
from torch.optim.lr_scheduler import LRScheduler


def progress_lr_factor(step: int, progress: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """The learning rate over the peak at ``step`` (0-based) and stage progress ``progress``."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    p = min(max(progress, 0.0), 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


class StageClock:
    """Progress of a stage of ``steps`` steps with a wall-clock budget of ``budget_s`` (0: none)."""

    def __init__(self, steps: int, budget_s: float = 0.0, start_step: int = 0) -> None:
        self.steps = max(int(steps), 1)
        self.budget_s = float(budget_s)
        self.start_step = int(start_step)
        self.started = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def progress(self, step: int) -> float:
        """max(step / steps, elapsed / budget), in [0, 1]; ``step`` = steps done so far."""
        by_steps = step / self.steps
        by_time = self.elapsed_s / self.budget_s if self.budget_s > 0 else 0.0
        return min(max(by_steps, by_time), 1.0)

    def done(self, step: int) -> bool:
        return step >= self.steps or (self.budget_s > 0 and self.elapsed_s >= self.budget_s)


class ProgressSchedule(LRScheduler):
    """``progress_lr_factor`` x each group's initial lr; call ``set_progress`` before ``step``."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, min_lr_ratio: float) -> None:
        self.warmup_steps = int(warmup_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.progress = 0.0
        super().__init__(optimizer)

    def set_progress(self, progress: float) -> None:
        self.progress = min(max(float(progress), 0.0), 1.0)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        factor = progress_lr_factor(self.last_epoch, self.progress, self.warmup_steps, self.min_lr_ratio)
        return [base * factor for base in self.base_lrs]
