"""Which answer target is which track: mask IoU (after carrying the answer's masks to the
current frame), 3D distance when both sides have a centroid, one Hungarian assignment
(``scipy.optimize.linear_sum_assignment``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

Box = tuple[int, int, int, int]
FORBIDDEN = 1e6


@dataclass(frozen=True)
class Candidate:
    """One side of a pair: a mask crop (h, w) bool at ``offset`` (None: no mask this frame), and a
    3D centroid (3,) or None."""

    mask: np.ndarray | None
    offset: tuple[int, int]
    centroid: np.ndarray | None


def mask_iou(a: Candidate, b: Candidate) -> float:
    """IoU of two mask crops placed in the same frame (0 when either has none)."""
    if a.mask is None or b.mask is None:
        return 0.0
    ax0, ay0 = a.offset
    bx0, by0 = b.offset
    ax1, ay1 = ax0 + a.mask.shape[1], ay0 + a.mask.shape[0]
    bx1, by1 = bx0 + b.mask.shape[1], by0 + b.mask.shape[0]
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    inter = 0
    if x1 > x0 and y1 > y0:
        inter = int(np.count_nonzero(a.mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
                                     & b.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]))
    union = int(np.count_nonzero(a.mask)) + int(np.count_nonzero(b.mask)) - inter
    return inter / union if union else 0.0


def match_cost(targets: list[Candidate], tracks: list[Candidate], min_iou: float,
               max_distance_m: float) -> np.ndarray:
    """(T, K) cost of each target-track pair in [0, 1], ``FORBIDDEN`` where the pair may not match.

    Both with a centroid: allowed when they are at most ``max_distance_m`` apart, cost the mean of
    (1 - IoU) and distance / max_distance_m. Otherwise: allowed when IoU >= ``min_iou``, cost 1 - IoU.
    """
    cost = np.full((len(targets), len(tracks)), FORBIDDEN)
    for i, target in enumerate(targets):
        for j, track in enumerate(tracks):
            iou = mask_iou(target, track)
            if target.centroid is not None and track.centroid is not None:
                distance = float(np.linalg.norm(target.centroid - track.centroid))
                if distance <= max_distance_m:
                    cost[i, j] = 0.5 * (1.0 - iou) + 0.5 * distance / max_distance_m
            elif iou >= min_iou:
                cost[i, j] = 1.0 - iou
    return cost


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """The (target, track) pairs of the least total cost, forbidden pairs left out."""
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < FORBIDDEN]
