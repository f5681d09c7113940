"""Plain result containers passed between the model, the engine and the trainer."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageFeatures:
    """What one vision pass yields, cached per image by the engine.

    llm_tokens:       (B, g*g, H) projected image tokens for the LLM
    llm_mask:         (B, g*g) bool, False where a token comes from padding only
    decoder_features: L tensors (B, out_dim, G, G), after out_mm_projector and the neck
    """

    llm_tokens: torch.Tensor
    llm_mask: torch.Tensor
    decoder_features: list[torch.Tensor]

    @property
    def batch_size(self) -> int:
        return int(self.llm_tokens.shape[0])

    def for_conversations(self, image_index: torch.Tensor) -> ImageFeatures:
        """The LLM-side features of each of B_conv conversations, ``image_index`` (B_conv,) long
        naming the image of each; ``decoder_features`` stay per image (empty here)."""
        return ImageFeatures(
            llm_tokens=self.llm_tokens.index_select(0, image_index),
            llm_mask=self.llm_mask.index_select(0, image_index),
            decoder_features=[],
        )

    def sample(self, index: int) -> ImageFeatures:
        """The features of image ``index`` as a batch of 1."""
        return ImageFeatures(
            llm_tokens=self.llm_tokens[index : index + 1],
            llm_mask=self.llm_mask[index : index + 1],
            decoder_features=[f[index : index + 1] for f in self.decoder_features],
        )


@dataclass
class MaskOutput:
    """One mask per target.

    low_res_logits: (T, M, M) logits on the padded S x S canvas, M = 4 G (128 released)
    iou_scores:     (T,) raw output of the last level's IoU head for mask 0. The released model
                    was never trained with an IoU loss, so these carry no calibrated meaning there;
                    the research demo scored a mask by its mean probability over positive pixels.
    """

    low_res_logits: torch.Tensor
    iou_scores: torch.Tensor

    @property
    def num_targets(self) -> int:
        return int(self.low_res_logits.shape[0])


@dataclass
class PixelLMLosses:
    """Training losses (each already weighted) and their sum ``total``."""

    total: torch.Tensor
    token_ce: torch.Tensor
    mask_bce: torch.Tensor
    mask_dice: torch.Tensor
    target_refinement: torch.Tensor
    num_masks: int
    # pixellm_ros's own training aids on the seg prompts (training/forward.py, already in total),
    # not PixelLM's losses.
    prompt_aids: torch.Tensor | None = None

    def as_floats(self) -> dict[str, float]:
        values = {
            "total": float(self.total.detach()),
            "token_ce": float(self.token_ce.detach()),
            "mask_bce": float(self.mask_bce.detach()),
            "mask_dice": float(self.mask_dice.detach()),
            "target_refinement": float(self.target_refinement.detach()),
        }
        if self.prompt_aids is not None:
            values["prompt_aids"] = float(self.prompt_aids.detach())
        return values


@dataclass
class ImageSegPrompts:
    """The fused seg prompts of one image's targets: those of its conversations ``rows``, in order.

    prompts: (T, L, out_dim), T = all targets of those conversations.
    """

    image: int
    rows: list[int]
    prompts: torch.Tensor


@dataclass
class PixelLMTrainingOutput:
    """The training forward's losses and what they were computed from.

    token_logits: (B_conv, T', V) and labels (B_conv, T') of the spliced sequences (image
    positions included, IGNORE_INDEX there); mask_logits / mask_targets: one (T_b, H, W) pair per
    conversation of an image with targets, logits at the image's original size; seg_prompts: per
    such image, the fused prompts its masks were decoded from.
    """

    losses: PixelLMLosses
    token_logits: torch.Tensor
    labels: torch.Tensor
    mask_logits: list[torch.Tensor]
    mask_targets: list[torch.Tensor]
    seg_prompts: list[ImageSegPrompts]
