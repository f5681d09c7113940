"""The loss curves of a training run (matplotlib, written as a PNG without a display).

matplotlib is optional: without it no figure is drawn and the run says so once; history.json holds
the same numbers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# (history key, curves drawn from its rows, panel title)
PANELS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("stage1", ("total", "heat", "box", "attributes", "mask_bce", "mask_dice"), "stage 1: object tokenizer + pixel decoder"),
    ("stage2", ("total", "token_ce", "distillation"), "stage 2: LLM adapters + seg codebook"),
)


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    data = np.asarray(values, dtype=float)
    if window <= 1 or data.size == 0:
        return data
    cumulative = np.cumsum(np.insert(data, 0, 0.0))
    counts = np.minimum(np.arange(1, data.size + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, data.size + 1) - counts]) / counts


def plot_loss_curve(history: Mapping[str, Sequence[Mapping[str, float]]], path: str | os.PathLike[str],
                    untrained: Mapping[str, str] | None = None) -> Path | None:
    """One panel per stage of ``history`` ({"stage1": rows, "stage2": rows}, one row per step with
    "step" and the losses). ``untrained`` says, per stage this run did not train (stage 1 taken from
    another model), where it came from: its panel says so instead of standing empty. Writes the PNG
    and returns its path; None (and a warning) without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return None
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 4.5))
    for ax, (key, curves, title) in zip(axes, PANELS):
        rows = history.get(key, ())
        if rows:
            steps = [row["step"] for row in rows]
            window = max(1, len(rows) // 50)
            for curve in curves:
                if curve in rows[0]:
                    ax.plot(steps, smooth([row[curve] for row in rows], window), label=curve)
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        elif untrained and key in untrained:
            ax.text(0.5, 0.5, f"not trained in this run:\ntaken from {untrained[key]}", ha="center", va="center",
                    wrap=True, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
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
