"""The training forward over a TrainingBatch: token CE + mask BCE + Dice + target refinement.

``PixelLMForCausalLM.compute_losses`` runs the vision tower once per conversation; training asks
several questions about every rendered image, so this forward encodes each image once and shares
its features across its conversations (what LISA/PixelLM's training code does with its
``offset``). Everything else is the model's own machinery: ``splice_image``, ``seg_state_mask``
(hidden states just before each [SEGk]), ``seg_prompts`` + ``decode_masks`` and the loss functions
of ``model/losses.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pixellm_ros.model.codebook import seg_state_mask
from pixellm_ros.model.losses import LossWeights, mask_losses, token_cross_entropy
from pixellm_ros.model.mask_resize import low_res_to_original
from pixellm_ros.model.outputs import ImageFeatures, PixelLMLosses
from pixellm_ros.model.pixellm import PixelLMForCausalLM

from .batch import TrainingBatch
from .name_prompts import NamePrompts, prompt_distillation_loss


def seg_hidden_states(
    hidden: torch.Tensor, token_ids: torch.Tensor, attention_mask: torch.Tensor, seg_token_ids: Sequence[int]
) -> list[torch.Tensor]:
    """hidden (B, T, H) after the final norm; token_ids / attention_mask (B, T) of the spliced prompt.

    Returns B tensors (K_b, H): the states at the positions just BEFORE each seg token, in order
    (the state that predicts [SEGk] is the one the codebook uses).
    """
    before_seg = seg_state_mask(token_ids, seg_token_ids) & attention_mask.bool()
    return [hidden[row][before_seg[row]] for row in range(hidden.shape[0])]


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


def conversation_features(feats: ImageFeatures, image_index: torch.Tensor) -> ImageFeatures:
    """Image features of B_img images -> the LLM-side features of each of B_conv conversations."""
    return ImageFeatures(
        llm_tokens=feats.llm_tokens.index_select(0, image_index),
        llm_mask=feats.llm_mask.index_select(0, image_index),
        decoder_features=[],  # the decoder reads the per-image features directly
    )


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
    """The training forward of one batch: losses plus what they were computed from.

    separation_weight: weight of ``prompt_separation_loss`` (a training aid on top of PixelLM's
    losses, 0 = off), averaged over the images that have two different targets.
    name_prompts / distillation_weight: the frozen stage-1 NamePrompts and the weight of
    ``prompt_distillation_loss`` over all named targets of the batch (needs ``batch.target_names``;
    None / 0 = off). See ``name_prompts``.
    """
    weights = weights or LossWeights()
    cfg = model.config
    per_target = cfg.seg_tokens_per_target
    feats = model.encode_images(batch.pixel_values, batch.valid_hw)
    spliced = model.splice_image(
        batch.input_ids, conversation_features(feats, batch.image_index), labels=batch.labels,
        attention_mask=batch.attention_mask,
    )
    hidden = model.language_model.model(
        inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask, use_cache=False
    ).last_hidden_state  # after the final norm
    logits = model.language_model.lm_head(hidden)
    assert spliced.labels is not None
    token_ce = weights.ce * token_cross_entropy(logits, spliced.labels)

    seg_states = seg_hidden_states(hidden, spliced.token_ids, spliced.attention_mask, seg_token_ids)
    image_of = batch.image_index.tolist()
    predictions: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    separation_terms: list[torch.Tensor] = []
    all_prompts: list[torch.Tensor] = []
    all_names: list[str] = []
    has_names = len(batch.target_names) == batch.num_conversations
    # One decoder pass per image for the targets of all its conversations (shared image-side work).
    for image in range(batch.num_images):
        rows = [row for row, owner in enumerate(image_of) if owner == image]
        states = [seg_states[row] for row in rows]
        for row, state in zip(rows, states):
            expected = batch.gt_masks[row].shape[0] * per_target
            if state.shape[0] != expected:
                raise ValueError(
                    f"conversation {row}: {state.shape[0]} seg tokens in the labels, "
                    f"expected {expected} for {batch.gt_masks[row].shape[0]} target masks"
                )
        if not rows or sum(s.shape[0] for s in states) == 0:
            continue
        image_feats = [f[image : image + 1] for f in feats.decoder_features]
        prompts = model.seg_prompts(torch.cat(states))  # (T, L, out_dim); the aids below read them too
        masks = model.decode_masks(image_feats, prompts)
        term = prompt_separation_loss(prompts, torch.cat([batch.gt_masks[row] for row in rows]))
        if term is not None:  # computed even at weight 0: it is also a held-out metric
            separation_terms.append(term)
        if name_prompts is not None and distillation_weight > 0 and has_names:
            all_prompts.append(prompts)
            all_names.extend(name for row in rows for name in batch.target_names[row])
        full = low_res_to_original(
            masks.low_res_logits, cfg.image_size, tuple(batch.valid_hw[image]), tuple(batch.original_hw[image])
        )
        start = 0
        for row, state in zip(rows, states):
            count = state.shape[0] // per_target
            predictions.append(full[start : start + count])  # one question: refinement works within it
            targets.append(batch.gt_masks[row])
            start += count
    if predictions:
        mask_bce, mask_dice, refinement, num_masks = mask_losses(predictions, targets, weights)
    else:  # a batch with no targets at all: keep the decoder in the graph with zero weight
        zero = hidden.sum() * 0.0
        mask_bce, mask_dice, refinement, num_masks = zero, zero, zero, 0
    overlap = torch.stack(separation_terms).mean() if separation_terms else None
    separation = separation_weight * overlap if overlap is not None else hidden.sum() * 0.0
    aids = separation
    if all_prompts:
        assert name_prompts is not None
        aids = aids + distillation_weight * prompt_distillation_loss(torch.cat(all_prompts), all_names, name_prompts)
    losses = PixelLMLosses(
        total=token_ce + mask_bce + mask_dice + refinement + aids,
        token_ce=token_ce,
        mask_bce=mask_bce,
        mask_dice=mask_dice,
        target_refinement=refinement,
        num_masks=num_masks,
        prompt_aids=aids,
    )
    prompt_overlap = float(overlap.detach()) if overlap is not None else None
    return ForwardOutput(losses, logits, spliced.labels, predictions, targets, prompt_overlap)
