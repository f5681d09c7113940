"""Low-res mask logits back to an image's own size (differentiable, used for mask losses)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def low_res_to_original(
    logits: torch.Tensor, image_size: int, valid_hw: tuple[int, int], original_hw: tuple[int, int]
) -> torch.Tensor:
    """(T, M, M) logits -> (T, H, W) logits at the original image size.

    As the research code: bilinear M -> S, crop the un-padded (h, w) top-left, bilinear to (H, W)
    (align_corners=False, in float32).
    """
    height, width = valid_hw
    canvas = F.interpolate(logits[:, None].float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
    cropped = canvas[..., :height, :width]
    if (height, width) != tuple(original_hw):
        cropped = F.interpolate(cropped, size=tuple(original_hw), mode="bilinear", align_corners=False)
    return cropped[:, 0]


def low_res_to_original_many(
    logits: Sequence[torch.Tensor],
    image_size: int,
    valid_hw: Sequence[tuple[int, int]],
    original_hw: Sequence[tuple[int, int]],
) -> list[torch.Tensor]:
    """``low_res_to_original`` for several images: logits[i] (T_i, M, M) -> (T_i, H_i, W_i) at image
    i's sizes. Images of the same valid and original size are resized in one call."""
    out: list[torch.Tensor | None] = [None] * len(logits)
    groups: dict[tuple[tuple[int, int], tuple[int, int]], list[int]] = {}
    for index, chunk in enumerate(logits):
        groups.setdefault((tuple(valid_hw[index]), tuple(original_hw[index])), []).append(index)  # type: ignore[arg-type]
    for (valid, original), members in groups.items():
        joined = low_res_to_original(torch.cat([logits[i] for i in members]), image_size, valid, original)
        for index, part in zip(members, torch.split(joined, [logits[i].shape[0] for i in members])):
            out[index] = part
    return out  # type: ignore[return-value]
