"""Quick held-out numbers during training, from one teacher-forced forward (no generation).

answer_token_accuracy: share of answer tokens (and eos) whose argmax prediction is right;
mask_iou: mean IoU of the predicted masks (logit > 0) with their targets, the seg tokens being
given; prompt_overlap: mean positive cosine between the seg prompts of different objects (near 1:
the prompts have collapsed and the decoder cannot tell targets apart). The first two are
``metrics``'; they track learning cheaply, the real metrics (gIoU, cIoU, count accuracy) come
from the engine on generated answers (``final_eval``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pixellm_ros.model.pixellm import PixelLMForCausalLM

from .batch import TrainingBatch
from .forward import ForwardOutput, batch_forward
from .metrics import answer_token_accuracy, mean_mask_iou


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
