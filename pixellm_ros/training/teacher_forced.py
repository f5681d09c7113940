"""Quick held-out numbers during training, from one teacher-forced forward (no generation).

answer_token_accuracy: share of answer tokens (and eos) whose argmax prediction is right;
mask_iou: mean IoU of the predicted masks (logit > 0) with their targets, the seg tokens being
given; prompt_overlap: mean positive cosine between the seg prompts of different objects (near 1:
the prompts have collapsed and the decoder cannot tell targets apart). They track learning cheaply; the real metrics (gIoU, cIoU, count accuracy) come from the
engine on generated answers (``final_eval``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pixellm_ros.model.losses import IGNORE_INDEX
from pixellm_ros.model.pixellm import PixelLMForCausalLM

from .batch import TrainingBatch
from .forward import ForwardOutput, batch_forward


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


@torch.no_grad()
def evaluate_batches(
    model: PixelLMForCausalLM, batches: Sequence[TrainingBatch], seg_token_ids: Sequence[int], device: torch.device
) -> dict[str, float]:
    """Mean losses and the quick metrics over fixed held-out batches (model left in train mode after)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}  # prompt_overlap is absent from batches without two different targets
    for batch in batches:
        out: ForwardOutput = batch_forward(model, batch.to(device), seg_token_ids)
        values = out.losses.as_floats()
        values["answer_token_accuracy"] = answer_token_accuracy(out.token_logits, out.labels)
        values["mask_iou"] = mean_mask_iou(out.mask_logits, out.mask_targets)
        if out.prompt_overlap is not None:
            values["prompt_overlap"] = out.prompt_overlap
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    model.train(was_training)
    return {key: value / counts[key] for key, value in sums.items()}
