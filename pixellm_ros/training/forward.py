"""The trainer's forward: PixelLM's own training forward plus our training aids on the seg prompts.

``PixelLMForCausalLM.compute_losses`` is the training forward (token CE + mask BCE + Dice +
target refinement, each image encoded once and shared by its conversations). This module adds
what is ours, not PixelLM's: the push between the seg prompts of different objects
(``prompt_separation_loss``) and the pull of each target's prompts towards its stage-1 name
vector (``name_prompts.prompt_distillation_loss``), both read from the prompts the forward
decoded the masks from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pixellm_ros.model.losses import LossWeights
from pixellm_ros.model.outputs import PixelLMLosses
from pixellm_ros.model.pixellm import PixelLMForCausalLM

from .batch import TrainingBatch
from .name_prompts import NamePrompts, prompt_distillation_loss


def distinct_target_pairs(masks: torch.Tensor, max_iou: float = 0.5) -> torch.Tensor:
    """(T, H, W) {0,1} target masks of one image -> (T, T) bool: pairs of different objects.

    The same object may be a target of several questions about an image; two targets count as
    different when their masks overlap by IoU < ``max_iou`` (the world's masks are disjoint).
    """
    flat = masks.flatten(1).float()
    inter = flat @ flat.T
    area = flat.sum(1)
    union = area[:, None] + area[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1.0), torch.ones_like(union))
    return iou < max_iou


def prompt_separation_loss(prompts: torch.Tensor, masks: torch.Tensor) -> torch.Tensor | None:
    """prompts (T, L, D) fused seg vectors of one image's targets, masks (T, H, W) -> scalar or None.

    Mean over scales and pairs of different objects of relu(cosine similarity). Why: trained from
    scratch, the LLM's states before the seg tokens start out nearly identical for every target
    (cosine ~0.99 at init, the image tokens dominate every position) and the token CE pulls them
    together further, so the decoder never sees a prompt that tells targets apart and the mask loss
    has no gradient that would make them differ. Pushing the prompts of different objects apart
    breaks that symmetry; the mask loss then decides what they encode. None if no such pair.
    """
    pairs = distinct_target_pairs(masks)
    if not bool(pairs.any()):
        return None
    unit = torch.nn.functional.normalize(prompts.float(), dim=-1).transpose(0, 1)  # (L, T, D)
    cosine = unit @ unit.transpose(1, 2)  # (L, T, T)
    return cosine.relu()[:, pairs].mean()


@dataclass
class ForwardOutput:
    """losses: the weighted losses; token_logits (B_conv, T', V) and labels (B_conv, T') of the
    spliced sequences (image positions included); mask_logits / mask_targets: one (T_b, H, W) pair
    per conversation with targets, logits at the image's original size; prompt_overlap: the mean
    positive cosine between the seg prompts of different objects (1.0 = collapsed)."""

    losses: PixelLMLosses
    token_logits: torch.Tensor
    labels: torch.Tensor
    mask_logits: list[torch.Tensor]
    mask_targets: list[torch.Tensor]
    prompt_overlap: float | None = None  # unweighted prompt_separation_loss; None without two different targets


def batch_forward(
    model: PixelLMForCausalLM,
    batch: TrainingBatch,
    seg_token_ids: Sequence[int],
    weights: LossWeights | None = None,
    separation_weight: float = 0.0,
    name_prompts: NamePrompts | None = None,
    distillation_weight: float = 0.0,
) -> ForwardOutput:
    """The trainer's forward of one batch: PixelLM's losses plus the aids, and what they came from.

    separation_weight: weight of ``prompt_separation_loss`` (a training aid on top of PixelLM's
    losses, 0 = off), averaged over the images that have two different targets.
    name_prompts / distillation_weight: the frozen stage-1 NamePrompts and the weight of
    ``prompt_distillation_loss`` over all named targets of the batch (needs ``batch.target_names``;
    None / 0 = off). See ``name_prompts``.
    """
    out = model.compute_losses(
        pixel_values=batch.pixel_values,
        valid_hw=batch.valid_hw,
        input_ids=batch.input_ids,
        labels=batch.labels,
        gt_masks=batch.gt_masks,
        seg_token_ids=seg_token_ids,
        attention_mask=batch.attention_mask,
        original_hw=batch.original_hw,
        weights=weights,
        image_index=batch.image_index,
    )
    separation_terms: list[torch.Tensor] = []
    all_prompts: list[torch.Tensor] = []
    all_names: list[str] = []
    has_names = len(batch.target_names) == batch.num_conversations
    for image in out.seg_prompts:
        masks = torch.cat([batch.gt_masks[row] for row in image.rows])
        term = prompt_separation_loss(image.prompts, masks)
        if term is not None:  # computed even at weight 0: it is also a held-out metric
            separation_terms.append(term)
        if name_prompts is not None and distillation_weight > 0 and has_names:
            all_prompts.append(image.prompts)
            all_names.extend(name for row in image.rows for name in batch.target_names[row])
    zero = out.losses.total.new_zeros(())
    overlap = torch.stack(separation_terms).mean() if separation_terms else None
    aids = separation_weight * overlap if overlap is not None else zero
    if all_prompts:
        assert name_prompts is not None
        aids = aids + distillation_weight * prompt_distillation_loss(torch.cat(all_prompts), all_names, name_prompts)
    losses = dataclasses.replace(out.losses, total=out.losses.total + aids, prompt_aids=aids)
    prompt_overlap = float(overlap.detach()) if overlap is not None else None
    return ForwardOutput(losses, out.token_logits, out.labels, out.mask_logits, out.mask_targets, prompt_overlap)
