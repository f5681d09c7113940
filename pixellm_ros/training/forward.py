"""The training forward over a TrainingBatch: token CE + mask BCE + Dice + target refinement.

``PixelLMForCausalLM.compute_losses`` runs the vision tower once per conversation; training asks
several questions about every rendered image, so this forward encodes each image once and shares
its features across its conversations (what LISA/PixelLM's training code does with its
``offset``). Everything else is the model's own machinery: ``splice_image``, ``seg_state_mask``
(hidden states just before each [SEGk]), ``masks_from_hidden_states`` and the loss functions
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


def seg_hidden_states(
    hidden: torch.Tensor, token_ids: torch.Tensor, attention_mask: torch.Tensor, seg_token_ids: Sequence[int]
) -> list[torch.Tensor]:
    """hidden (B, T, H) after the final norm; token_ids / attention_mask (B, T) of the spliced prompt.

    Returns B tensors (K_b, H): the states at the positions just BEFORE each seg token, in order
    (the state that predicts [SEGk] is the one the codebook uses).
    """
    before_seg = seg_state_mask(token_ids, seg_token_ids) & attention_mask.bool()
    return [hidden[row][before_seg[row]] for row in range(hidden.shape[0])]


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
    per conversation with targets, logits at the image's original size."""

    losses: PixelLMLosses
    token_logits: torch.Tensor
    labels: torch.Tensor
    mask_logits: list[torch.Tensor]
    mask_targets: list[torch.Tensor]


def batch_losses(
    model: PixelLMForCausalLM,
    batch: TrainingBatch,
    seg_token_ids: Sequence[int],
    weights: LossWeights | None = None,
) -> PixelLMLosses:
    """The weighted losses of one batch (all on the model's device)."""
    return batch_forward(model, batch, seg_token_ids, weights).losses


def batch_forward(
    model: PixelLMForCausalLM,
    batch: TrainingBatch,
    seg_token_ids: Sequence[int],
    weights: LossWeights | None = None,
) -> ForwardOutput:
    """The training forward of one batch: losses plus what they were computed from."""
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
        masks = model.masks_from_hidden_states(torch.cat(states), image_feats)
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
    losses = PixelLMLosses(
        total=token_ce + mask_bce + mask_dice + refinement,
        token_ce=token_ce,
        mask_bce=mask_bce,
        mask_dice=mask_dice,
        target_refinement=refinement,
        num_masks=num_masks,
    )
    return ForwardOutput(losses, logits, spliced.labels, predictions, targets)
