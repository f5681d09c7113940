"""Hungarian matching of predicted to ground-truth masks, and the IoU of one question.

Matching cost between a predicted mask p and a ground-truth mask g (both binary, N pixels):

    cost(p, g) = BCE(p, g) + Dice(p, g)
    BCE(p, g)  = -(1/N) * sum_i [ g_i log(q_i) + (1 - g_i) log(1 - q_i) ],  q = clip(p, eps, 1 - eps), eps = 1e-6
               = (number of disagreeing pixels / N) * -log(eps)  +  (agreeing / N) * -log(1 - eps)
    Dice(p, g) = 1 - (2 |p & g| + 1) / (|p| + |g| + 1)

(the "+1" smoothing of PixelLM's matcher; binary masks clipped to eps instead of logits).
``scipy.optimize.linear_sum_assignment`` minimises the total cost; it pairs min(#pred, #gt)
masks. Each mask left over on either side is paired with an empty mask.

IoU of a question (``score_question``):

    IoU_q = (sum over matched pairs of |p & g| / |p | g|) / max(#pred, #gt)

— the pairs with an empty partner add 0 to the sum but count in the denominator (even when
the left-over mask is itself empty, so padding an answer with empty masks never pays). A matched
pair where both masks are empty has IoU 1 (0/0 := 1). When #pred = #gt = 0 (a "none" question
answered with no mask) IoU_q = 1. For cIoU each question also contributes its cumulative
intersection (sum of |p & g| over matched pairs) and union (sum of |p | g| over matched pairs
plus the area of every left-over mask).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

BCE_EPS = 1e-6


def _flatten(masks: Sequence[np.ndarray], shape: tuple[int, int] | None) -> np.ndarray:
    """(K, H*W) float32 0/1 from K binary masks of one shape."""
    if not masks:
        size = 0 if shape is None else shape[0] * shape[1]
        return np.zeros((0, size), dtype=np.float32)
    return np.stack([m.reshape(-1) for m in masks]).astype(np.float32)


def matching_cost(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> np.ndarray:
    """Cost matrix BCE + Dice (module docstring).

    Args:
        preds: P binary (H, W) masks.
        gts: G binary (H, W) masks of the same size.

    Returns:
        (P, G) float64.
    """
    shape = preds[0].shape if preds else (gts[0].shape if gts else None)
    p = _flatten(preds, shape)
    g = _flatten(gts, shape)
    n = max(p.shape[1], 1)
    # float32 products of 0/1 are exact counts (below 2**24 pixels); the cost itself in float64.
    inter = (p @ g.T).astype(np.float64)  # (P, G) |p & g|
    p_area = p.sum(axis=1, dtype=np.float64)[:, None]
    g_area = g.sum(axis=1, dtype=np.float64)[None, :]
    disagree = p_area + g_area - 2.0 * inter
    bce = (disagree * -math.log(BCE_EPS) + (n - disagree) * -math.log1p(-BCE_EPS)) / n
    dice = 1.0 - (2.0 * inter + 1.0) / (p_area + g_area + 1.0)
    return bce + dice


@dataclass(frozen=True)
class QuestionScore:
    """How one question's predicted masks compare with its ground truth.

    ``pairs`` are (pred index, gt index) of the matched masks; ``iou`` is IoU_q; ``intersection``
    and ``union`` are the question's contribution to cIoU (pixels).
    """

    iou: float
    intersection: int
    union: int
    num_pred: int
    num_gt: int
    pairs: tuple[tuple[int, int], ...]
    pair_ious: tuple[float, ...]

    @property
    def count_correct(self) -> bool:
        """Whether the prediction has the right number of targets."""
        return self.num_pred == self.num_gt


def _binary(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    return arr if arr.dtype == bool else arr > 0.5


def score_question(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> QuestionScore:
    """Match and score one question (module docstring).

    Args:
        preds: predicted (H, W) masks, bool (or probabilities, thresholded at 0.5).
        gts: ground-truth (H, W) bool masks, same size.
    """
    preds = [_binary(m) for m in preds]
    gts = [_binary(m) for m in gts]
    shapes = {m.shape for m in preds} | {m.shape for m in gts}
    if len(shapes) > 1:
        raise ValueError(f"predicted and ground-truth masks differ in size: {sorted(shapes)}")
    num_pred, num_gt = len(preds), len(gts)
    if num_pred == 0 and num_gt == 0:
        return QuestionScore(1.0, 0, 0, 0, 0, (), ())
    pairs: list[tuple[int, int]] = []
    if num_pred and num_gt:
        rows, cols = linear_sum_assignment(matching_cost(preds, gts))
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols)]
    intersection = union = 0
    pair_ious = []
    for pi, gi in pairs:
        inter = int(np.logical_and(preds[pi], gts[gi]).sum())
        uni = int(np.logical_or(preds[pi], gts[gi]).sum())
        intersection += inter
        union += uni
        pair_ious.append(1.0 if uni == 0 else inter / uni)
    matched_pred = {pi for pi, _ in pairs}
    matched_gt = {gi for _, gi in pairs}
    # Left-over masks are paired with an empty mask: no intersection, their whole area is union.
    union += sum(int(m.sum()) for i, m in enumerate(preds) if i not in matched_pred)
    union += sum(int(m.sum()) for i, m in enumerate(gts) if i not in matched_gt)
    iou = sum(pair_ious) / max(num_pred, num_gt)
    return QuestionScore(iou, intersection, union, num_pred, num_gt, tuple(pairs), tuple(pair_ious))
