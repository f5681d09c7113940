"""The loss-curve figure of a training run (matplotlib, written as a PNG without a display).

matplotlib is optional: on a machine without it (a bare GPU box) no figure is drawn and the run
says so once; history.json holds the same numbers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRAIN_CURVES: tuple[str, ...] = ("total", "token_ce", "mask_bce", "mask_dice", "target_refinement", "prompt_aids")


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    data = np.asarray(values, dtype=float)
    if window <= 1 or data.size == 0:
        return data
    cumulative = np.cumsum(np.insert(data, 0, 0.0))
    counts = np.minimum(np.arange(1, data.size + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, data.size + 1) - counts]) / counts


def plot_loss_curve(
    train: Sequence[Mapping[str, float]],
    evals: Sequence[Mapping[str, float]],
    path: str | os.PathLike[str],
    stage_one: Sequence[Mapping[str, float]] = (),
) -> Path | None:
    """train: one dict per step ({"step", "total", "token_ce", ...}); evals: one per eval
    ({"step", "total", "mask_iou", "answer_token_accuracy"}, "prompt_overlap" where measured);
    stage_one: stage 1's per-step rows ({"step", "loss", "mask_iou"}), drawn in a panel of its own
    when given. Writes the PNG to ``path`` and returns it; None (and a warning) without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return None
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    panels = 3 if stage_one else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    if stage_one:
        _plot_stage_one(axes[0], stage_one)
    loss_ax, metric_ax = axes[-2], axes[-1]
    if train:
        steps = [row["step"] for row in train]
        window = max(1, len(train) // 50)
        for key in TRAIN_CURVES:
            if key in train[0]:
                loss_ax.plot(steps, smooth([row[key] for row in train], window), label=f"train {key}")
    if evals:
        eval_steps = [row["step"] for row in evals]
        loss_ax.plot(eval_steps, [row["total"] for row in evals], "o-", color="black", label="held-out total")
        for key in ("mask_iou", "answer_token_accuracy", "prompt_overlap"):
            points = [(row["step"], row[key]) for row in evals if key in row]
            if points:
                metric_ax.plot(*zip(*points), "o-", label=f"held-out {key}")
    loss_ax.set_xlabel("step")
    loss_ax.set_title("full model (stage 2)" if stage_one else "training")
    loss_ax.set_ylabel("loss (weighted)")
    loss_ax.set_yscale("log")
    loss_ax.legend(fontsize=8)
    loss_ax.grid(alpha=0.3)
    metric_ax.set_xlabel("step")
    metric_ax.set_ylim(0.0, 1.0)
    metric_ax.set_title("teacher-forced held-out metrics")
    if evals:
        metric_ax.legend(fontsize=8)
    metric_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


_WARNED: list[bool] = []


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None (warned once) where matplotlib is absent."""
    try:
        import matplotlib
    except ImportError:
        if not _WARNED:
            warnings.warn("matplotlib is not installed: no loss_curve.png (history.json has the curves)", stacklevel=3)
            _WARNED.append(True)
        return None
    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    return plt


def _plot_stage_one(ax: Any, rows: Sequence[Mapping[str, float]]) -> None:
    """Stage 1: training mask IoU (0..1, left) and loss (log, right)."""
    steps = [row["step"] for row in rows]
    window = max(1, len(rows) // 50)
    ax.plot(steps, smooth([row["mask_iou"] for row in rows], window), label="train mask_iou")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("step")
    ax.set_title("stage 1: name-prompted masks")
    ax.grid(alpha=0.3)
    loss_ax = ax.twinx()
    loss_ax.plot(steps, smooth([row["loss"] for row in rows], window), color="grey", alpha=0.6, label="train loss")
    loss_ax.set_yscale("log")
    lines = ax.get_legend_handles_labels()
    more = loss_ax.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
