"""Mask post-processing: low-res decoder logits back to the caller's image.

Released transform: the (T, M, M) logits (M = 128) are upsampled bilinearly to the padded
S x S frame, the un-padded (h, w) corner is cropped, that crop is upsampled bilinearly to the
original (H, W), and a pixel belongs to the target where its logit is > 0. Boxes and scores are
read off the final masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# One implementation of the released logits -> original-size transform, shared with the training
# losses: bilinear M -> S, crop the un-padded (h, w), bilinear to (H, W), in float32.
from pixellm_ros.model.mask_resize import low_res_to_original


@dataclass(frozen=True)
class PostprocessedMask:
    """One target at the original size: mask (H, W) bool, box (x0, y0, x1, y1) exclusive max, score."""

    mask: np.ndarray
    box: tuple[int, int, int, int]
    score: float


def mask_scores(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid probability inside each mask; 0 for an empty mask.

    logits, masks: (T, H, W). Returns (T,) float32.
    """
    inside = masks.flatten(1).float()
    probs = logits.flatten(1).sigmoid()
    area = inside.sum(1)
    return torch.where(area > 0, (probs * inside).sum(1) / area.clamp_min(1.0), torch.zeros_like(area))


def box_from_mask(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1) of a (H, W) bool mask, x1/y1 exclusive; (0, 0, 0, 0) if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (0, 0, 0, 0)
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def postprocess_masks(
    low_res_logits: torch.Tensor,
    size: int,
    valid_hw: tuple[int, int],
    original_hw: tuple[int, int],
    threshold: float = 0.0,
) -> list[PostprocessedMask]:
    """(T, M, M) decoder logits -> T masks at the original size with box and score.

    ``threshold`` is in logit space (0 = probability 0.5, as released). The upsampling and the
    score run on the logits' device; only the boolean masks come back to the host.
    """
    if low_res_logits.shape[0] == 0:
        return []
    logits = low_res_to_original(low_res_logits, size, valid_hw, original_hw)
    masks = logits > threshold
    scores = mask_scores(logits, masks).tolist()
    masks_np = masks.cpu().numpy()
    return [
        PostprocessedMask(mask=mask, box=box_from_mask(mask), score=float(score))
        for mask, score in zip(masks_np, scores)
    ]
