"""Post-processing geometry: decoder logits on the padded S frame -> masks on the original image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixellm_ros.engine.postprocess import box_from_mask, mask_scores, postprocess_masks
from pixellm_ros.engine.preprocess import resized_shape

S, M = 448, 128  # released frame and low-res mask sizes: one low-res cell is 3.5 frame pixels


def _block_logits(rows: tuple[int, int], cols: tuple[int, int], high: float = 10.0) -> torch.Tensor:
    logits = torch.full((1, M, M), -high)
    logits[0, rows[0] : rows[1], cols[0] : cols[1]] = high
    return logits


def test_block_in_frame_lands_on_the_right_pixels_of_a_non_square_image() -> None:
    original = (300, 600)  # H, W: landscape, so the frame is padded at the bottom
    valid = resized_shape(*original, S)
    assert valid == (224, 448)
    # Low-res rows 16..48, cols 32..96 = frame rows 56..168, cols 112..336; the frame -> image scale
    # is 600/448, so the block covers image rows 75..225 and cols 150..450.
    (target,) = postprocess_masks(_block_logits((16, 48), (32, 96)), S, valid, original)
    assert target.mask.shape == original
    assert target.box == (150, 75, 450, 225)
    expected = np.zeros(original, dtype=bool)
    expected[75:225, 150:450] = True
    # Two bilinear passes round the block's corners off by a pixel or two; every other pixel,
    # edges included, is exact.
    wrong_y, wrong_x = np.nonzero(target.mask != expected)
    corners = np.array([[75, 150], [75, 449], [224, 150], [224, 449]])
    distance = np.abs(np.stack([wrong_y, wrong_x], 1)[:, None, :] - corners[None]).max(-1).min(-1)
    assert len(wrong_y) <= 16 and (distance <= 2).all()
    assert 0.5 < target.score <= 1.0


def test_portrait_image_and_the_padding_is_cropped_away() -> None:
    original = (400, 250)  # portrait: padding on the right
    valid = resized_shape(*original, S)
    assert valid == (448, 280)
    # A block entirely inside the padded columns (frame x >= 280 <=> low-res col >= 80) vanishes;
    # a block in the valid corner is kept.
    logits = torch.cat([_block_logits((0, 128), (90, 128)), _block_logits((0, 32), (0, 40))])
    padded_only, valid_block = postprocess_masks(logits, S, valid, original)
    assert not padded_only.mask.any()
    assert padded_only.box == (0, 0, 0, 0)
    assert padded_only.score == 0.0
    # Low-res (32 rows, 40 cols) = frame (112, 140) px; frame -> image scale 400/448 = 250/280.
    assert valid_block.box == (0, 0, 125, 100)


def test_threshold_is_in_logit_space_and_configurable() -> None:
    logits = torch.full((1, M, M), 0.5)
    (default,) = postprocess_masks(logits, S, (448, 448), (64, 64))
    (strict,) = postprocess_masks(logits, S, (448, 448), (64, 64), threshold=1.0)
    assert default.mask.all() and not strict.mask.any()
    assert default.score == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item(), abs=1e-6)


def test_no_targets_give_no_masks() -> None:
    assert postprocess_masks(torch.zeros((0, M, M)), S, (448, 448), (10, 10)) == []


def test_score_is_mean_probability_inside_the_mask() -> None:
    logits = torch.tensor([[[2.0, -1.0], [0.0, 4.0]]])
    masks = logits > 0
    expected = (torch.sigmoid(torch.tensor(2.0)) + torch.sigmoid(torch.tensor(4.0))) / 2
    assert mask_scores(logits, masks).item() == pytest.approx(expected.item())


def test_box_is_tight_with_exclusive_max() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[5, 7] = True
    mask[12, 21] = True
    assert box_from_mask(mask) == (7, 5, 22, 13)
    assert box_from_mask(np.zeros((4, 4), dtype=bool)) == (0, 0, 0, 0)
