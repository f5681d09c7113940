"""Pre-processing: resize longest side, SAM normalisation on 0-255 RGB, zero padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixellm_ros.engine.errors import InvalidImageError, InvalidInputError
from pixellm_ros.engine.preprocess import preprocess_image, resized_shape, validate_image
from pixellm_ros.model.config import SAM_PIXEL_MEAN, SAM_PIXEL_STD


def _random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Smooth content (a gradient plus noise) so resampling differences stay meaningful.
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), (xx + yy) % 256], axis=-1)
    noise = rng.integers(-20, 21, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("hw", "expected"),
    [((480, 640), (336, 448)), ((640, 480), (448, 336)), ((100, 100), (448, 448)), ((333, 1000), (149, 448))],
)
def test_resized_shape_longest_side_rounded_half_up(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_shape(*hw, 448) == expected


def test_landscape_image_is_resized_normalised_and_padded_bottom_right() -> None:
    image = _random_image(300, 400)
    out = preprocess_image(image, 112, SAM_PIXEL_MEAN, SAM_PIXEL_STD)
    assert out.pixel_values.shape == (1, 3, 112, 112)
    assert out.valid_hw == (84, 112)
    assert out.original_hw == (300, 400)
    # The padding rows are exactly zero, the valid area is not.
    assert torch.count_nonzero(out.pixel_values[..., 84:, :]) == 0
    assert torch.count_nonzero(out.pixel_values[..., :84, :]) > 0
    # Undo the normalisation: values must be whole 0..255 levels (the uint8 round trip).
    mean = torch.tensor(SAM_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(3, 1, 1)
    levels = out.pixel_values[0, :, :84, :] * std + mean
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert levels.min() >= -1e-3 and levels.max() <= 255 + 1e-3


def test_image_already_at_size_keeps_its_pixels() -> None:
    image = _random_image(56, 112)
    out = preprocess_image(image, 112, SAM_PIXEL_MEAN, SAM_PIXEL_STD)
    mean = np.array(SAM_PIXEL_MEAN).reshape(1, 1, 3)
    std = np.array(SAM_PIXEL_STD).reshape(1, 1, 3)
    expected = (image.astype(np.float64) - mean) / std
    got = out.pixel_values[0, :, :56, :].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("hw", [(480, 640), (37, 29), (333, 1001), (449, 97), (1080, 1920)])
def test_resize_is_the_research_codes_pil_bilinear_bit_for_bit(hw: tuple[int, int]) -> None:
    """segment_anything's ResizeLongestSide: torchvision's resize of a PIL image = PIL's bilinear.

    Compared in uint8 (after undoing the normalisation): every value equal, odd sizes included.
    """
    from PIL import Image

    image = _random_image(*hw, seed=3)
    out = preprocess_image(image, 448, SAM_PIXEL_MEAN, SAM_PIXEL_STD)
    h, w = out.valid_hw
    assert (h, w) == resized_shape(*hw, 448)
    reference = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR)).astype(np.int64)
    mean = np.array(SAM_PIXEL_MEAN).reshape(1, 1, 3)
    std = np.array(SAM_PIXEL_STD).reshape(1, 1, 3)
    ours = np.rint(out.pixel_values[0, :, :h, :w].permute(1, 2, 0).double().numpy() * std + mean).astype(np.int64)
    assert np.array_equal(ours, reference), f"{np.count_nonzero(ours != reference)} values differ from PIL"


@pytest.mark.parametrize(("hw", "size"), [((1, 4000), 448), ((4000, 1), 448), ((2, 2000), 448), ((1, 300), 112)])
def test_an_image_too_thin_to_resize_is_an_invalid_image(hw: tuple[int, int], size: int) -> None:
    with pytest.raises(InvalidImageError, match="too thin"):
        preprocess_image(np.zeros((*hw, 3), dtype=np.uint8), size, SAM_PIXEL_MEAN, SAM_PIXEL_STD)


def test_the_thinnest_image_that_still_resizes_is_accepted() -> None:
    # 4000 long: the short side must give >= 0.5 px after scaling by 448 / 4000, i.e. >= 4.46 px.
    out = preprocess_image(np.zeros((5, 4000, 3), dtype=np.uint8), 448, SAM_PIXEL_MEAN, SAM_PIXEL_STD)
    assert out.valid_hw == (1, 448)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10, 3), dtype=np.float32),
        np.zeros((10, 10), dtype=np.uint8),
        np.zeros((10, 10, 4), dtype=np.uint8),
        np.zeros((0, 10, 3), dtype=np.uint8),
        [[0, 0, 0]],
    ],
)
def test_invalid_images_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        validate_image(bad)
