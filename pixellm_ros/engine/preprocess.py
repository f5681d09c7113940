"""Image pre-processing: the exact input transform of the released PixelLM.

The research code resizes the uint8 RGB image so that its longest side is ``S`` (448 released)
with segment_anything's ``ResizeLongestSide``: torchvision's ``resize`` of a PIL image, which is
PIL's own bilinear filter (antialiased when shrinking, fixed point, uint8 out); then it normalises
with the SAM statistics on 0-255 RGB and zero-pads bottom/right to ``S x S``. We resize with PIL
itself, so the pixels are the research code's bit for bit (torch's antialiased uint8 kernel, used
before, differed from PIL on ~0.1% of values by one grey level, which moved mask logits by ~2e-4),
then normalise and pad on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import InvalidImageError


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

    Raises InvalidImageError naming what is wrong, so the caller can report it.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"image must be uint8 RGB, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"image must have shape (H, W, 3), got {tuple(image.shape)}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidImageError(f"image is empty: shape {tuple(image.shape)}")
    return np.ascontiguousarray(image)


def check_resizable(height: int, width: int, size: int) -> tuple[int, int]:
    """The resized (h, w) of an image, or InvalidImageError when a side would round to 0 pixels.

    A line-scan camera's 4000 x 1 frame resized to a longest side of 448 has a short side of
    0.11 px, which rounds to 0: such an image cannot be run, whatever the model.
    """
    target = resized_shape(height, width, size)
    if min(target) < 1:
        longest, shortest = max(height, width), min(height, width)
        raise InvalidImageError(
            f"image {width}x{height} is too thin: resized to a longest side of {size} px its short side "
            f"would be {shortest * size / longest:.2f} px, which rounds to 0; the short side must be at "
            f"least {longest / (2 * size):.1f} px for this long side"
        )
    return target


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the longest side scaled to ``size``, rounded half up as the research code does."""
    scale = size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_longest_side(image: np.ndarray, size: int) -> np.ndarray:
    """PIL's bilinear resize of an (H, W, 3) uint8 RGB array to longest side ``size``.

    Returns (h, w, 3) uint8: the research pipeline's intermediate PIL image, pixel for pixel.
    Raises InvalidImageError when a side would become 0 pixels (``check_resizable``).
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    target_h, target_w = check_resizable(height, width, size)
    if (target_h, target_w) == (height, width):
        return image
    return np.array(Image.fromarray(image).resize((target_w, target_h), Image.Resampling.BILINEAR))


def preprocess_image(
    image: np.ndarray,
    size: int,
    pixel_mean: Sequence[float],
    pixel_std: Sequence[float],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> PreprocessedImage:
    """Turn an (H, W, 3) uint8 RGB image into the (1, 3, S, S) tensor the vision tower reads.

    The uint8 resize runs on the CPU with PIL (the upload is then at most S*S*3 bytes);
    normalisation is in float32 on ``device``, cast to ``dtype`` at the end.
    Raises InvalidImageError for an unusable image (``validate_image``, ``check_resizable``).
    """
    image = validate_image(image)
    original_hw = (int(image.shape[0]), int(image.shape[1]))
    resized_hwc = np.ascontiguousarray(resize_longest_side(image, size))  # writable: PIL hands out a copy
    resized = torch.from_numpy(resized_hwc).permute(2, 0, 1).to(device)
    valid_hw = (int(resized.shape[1]), int(resized.shape[2]))
    mean = torch.tensor(pixel_mean, dtype=torch.float32, device=resized.device).view(3, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32, device=resized.device).view(3, 1, 1)
    normalised = (resized.float() - mean) / std
    # Pad after normalising, so the padding is exactly 0 in the normalised space (as released).
    padded = F.pad(normalised, (0, size - valid_hw[1], 0, size - valid_hw[0]))
    return PreprocessedImage(pixel_values=padded[None].to(dtype), valid_hw=valid_hw, original_hw=original_hw)
