"""The training batch: a few images, several conversations about each.

As in LISA/PixelLM training, the vision tower runs once per image and each image's features are
shared by all the conversations (questions) asked about it; ``image_index`` says which image a
conversation belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TrainingBatch:
    """pixel_values: (B_img, 3, S, S) normalised, zero-padded bottom/right.
    valid_hw / original_hw: B_img (h, w): the resized image inside S x S / the rendered image size.
    image_index: (B_conv,) long, the image of each conversation.
    input_ids / labels / attention_mask: (B_conv, T) long, right-padded (pad id, IGNORE_INDEX, 0);
        one IMAGE_TOKEN_INDEX per row; labels are IGNORE_INDEX outside the answer (+ eos).
    gt_masks: B_conv float tensors (T_b, H_img, W_img) in {0, 1} at the image's original size, one
        per target in answer order (T_b = seg groups in that answer, may be 0).
    target_names: B_conv tuples of the targets' names ("red ball"), in the order of gt_masks;
        empty tuples where the data has no names.
    """

    pixel_values: torch.Tensor
    valid_hw: list[tuple[int, int]]
    original_hw: list[tuple[int, int]]
    image_index: torch.Tensor
    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    gt_masks: list[torch.Tensor]
    target_names: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return int(self.pixel_values.shape[0])

    @property
    def num_conversations(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TrainingBatch:
        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        return TrainingBatch(
            pixel_values=move(self.pixel_values),
            valid_hw=list(self.valid_hw),
            original_hw=list(self.original_hw),
            image_index=move(self.image_index),
            input_ids=move(self.input_ids),
            labels=move(self.labels),
            attention_mask=move(self.attention_mask),
            gt_masks=[move(m) for m in self.gt_masks],
            target_names=list(self.target_names),
        )

    def pin_memory(self) -> TrainingBatch:
        """The batch in page-locked memory (the DataLoader's pin_memory calls this), for fast non-blocking copies."""
        return TrainingBatch(
            pixel_values=self.pixel_values.pin_memory(),
            valid_hw=list(self.valid_hw),
            original_hw=list(self.original_hw),
            image_index=self.image_index.pin_memory(),
            input_ids=self.input_ids.pin_memory(),
            labels=self.labels.pin_memory(),
            attention_mask=self.attention_mask.pin_memory(),
            gt_masks=[m.pin_memory() for m in self.gt_masks],
            target_names=list(self.target_names),
        )
