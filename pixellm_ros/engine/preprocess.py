"""Image pre-processing: the exact input transform of the released PixelLM.

The research code resizes the uint8 RGB image so that its longest side is ``S`` (448 released),
with bilinear interpolation (torchvision on a PIL image, i.e. antialiased when shrinking) and
back to uint8; then normalises with the SAM statistics on 0-255 RGB and zero-pads bottom/right
to ``S x S``. We resize with torch's uint8 antialiased bilinear kernel on the CPU, which was built
to follow PIL's fixed-point filter (it agrees with PIL on all but ~0.1% of values, by one grey
level; a float resize rounded to uint8 differs on ~15%), then normalise and pad on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidInputError


@dataclass(frozen=True)
class PreprocessedImage:
    """The model input for one image.

    pixel_values: (1, 3, S, S) normalised, zero (after normalisation) in the bottom/right padding.
    valid_hw: (h, w) the resized image inside the S x S frame (longest side = S).
    original_hw: (H, W) the caller's image size, where masks are returned.
    """

    pixel_values: torch.Tensor
    valid_hw: tuple[int, int]
    original_hw: tuple[int, int]


def validate_image(image: object) -> np.ndarray:
    """Check that ``image`` is an (H, W, 3) uint8 RGB array and return it C-contiguous.

    Raises InvalidInputError naming what is wrong, so the caller can report it.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8 RGB, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"image must have shape (H, W, 3), got {tuple(image.shape)}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInputError(f"image is empty: shape {tuple(image.shape)}")
    return np.ascontiguousarray(image)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the longest side scaled to ``size``, rounded half up as the research code does."""
    scale = size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_longest_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of a (3, H, W) uint8 CPU tensor to longest side ``size``.

    Returns (3, h, w) uint8, as the research pipeline's intermediate PIL image.
    """
    height, width = int(image.shape[-2]), int(image.shape[-1])
    target = resized_shape(height, width, size)
    if target == (height, width):
        return image
    return F.interpolate(image[None], size=target, mode="bilinear", align_corners=False, antialias=True)[0]


def preprocess_image(
    image: np.ndarray,
    size: int,
    pixel_mean: Sequence[float],
    pixel_std: Sequence[float],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> PreprocessedImage:
    """Turn an (H, W, 3) uint8 RGB image into the (1, 3, S, S) tensor the vision tower reads.

    The uint8 resize runs on the CPU (the PIL-exact kernel exists there only; the upload is then
    at most S*S*3 bytes); normalisation is in float32 on ``device``, cast to ``dtype`` at the end.
    """
    image = validate_image(image)
    original_hw = (int(image.shape[0]), int(image.shape[1]))
    chw = torch.from_numpy(image).permute(2, 0, 1)
    resized = resize_longest_side(chw, size).to(device)
    valid_hw = (int(resized.shape[1]), int(resized.shape[2]))
    mean = torch.tensor(pixel_mean, dtype=torch.float32, device=resized.device).view(3, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32, device=resized.device).view(3, 1, 1)
    normalised = (resized.float() - mean) / std
    # Pad after normalising, so the padding is exactly 0 in the normalised space (as released).
    padded = F.pad(normalised, (0, size - valid_hw[1], 0, size - valid_hw[0]))
    return PreprocessedImage(pixel_values=padded[None].to(dtype), valid_hw=valid_hw, original_hw=original_hw)
