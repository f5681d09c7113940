"""Quick training metrics from teacher-forced outputs (no generation): answer tokens and mask IoU.

Used by stage 1 (``decoder_pretraining``) and the held-out evaluations of stage 2
(``teacher_forced``); the real metrics (gIoU, cIoU, count accuracy) come from ``final_eval``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pixellm_ros.model.losses import IGNORE_INDEX


def answer_token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """logits (B, T, V), labels (B, T) -> accuracy of predicting labels[:, 1:] from logits[:, :-1]."""
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    if not bool(keep.any()):
        return 0.0
    right = (logits[:, :-1].argmax(-1) == target) & keep
    return float(right.sum()) / float(keep.sum())


def mean_mask_iou(mask_logits: Sequence[torch.Tensor], mask_targets: Sequence[torch.Tensor]) -> float:
    """Mean IoU over all masks (T_b, H, W) of all conversations; 0 if there are none."""
    ious: list[torch.Tensor] = []
    for logits, target in zip(mask_logits, mask_targets):
        predicted = logits > 0
        truth = target > 0.5
        inter = (predicted & truth).flatten(1).sum(1).float()
        union = (predicted | truth).flatten(1).sum(1).float()
        ious.append(torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)))
    return float(torch.cat(ious).mean()) if ious else 0.0
