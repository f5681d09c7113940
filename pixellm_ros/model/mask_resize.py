"""Low-res mask logits back to an image's own size (differentiable, used for mask losses)."""

from __future__ import annotations

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
