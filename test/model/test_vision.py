"""Vision tower: the released position-table quirk, padding masks, selected layers."""

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPVisionModel

from pixellm_ros.model import PixelLMConfig, resize_clip_position_embeddings
from pixellm_ros.model.vision import CLIPVisionTower, llm_token_mask, patch_padding_mask

torch.set_num_threads(1)


def test_resize_quirk_by_hand():
    # CLIP table for a 2x2 grid, class-first: a = class, b..e = patches. One channel.
    a, b, c, d, e = 1.0, 2.0, 4.0, 8.0, 16.0
    table = torch.tensor([[a], [b], [c], [d], [e]])
    out = resize_clip_position_embeddings(table, 4)
    assert out.shape == (17, 1)
    # The released code reads rows 0..3 = [[a, b], [c, d]] as the grid and row 4 (e) as "class".
    assert out[16, 0] == e
    # bilinear 2 -> 4, align_corners=False: per-axis weights (1,0), (.75,.25), (.25,.75), (0,1)
    axis = [(1.0, 0.0), (0.75, 0.25), (0.25, 0.75), (0.0, 1.0)]
    grid = [[a, b], [c, d]]
    for row in range(4):
        for col in range(4):
            expected = sum(
                axis[row][i] * axis[col][j] * grid[i][j] for i in range(2) for j in range(2)
            )
            assert out[row * 4 + col, 0].item() == pytest.approx(expected)
    # the top-left corner is exactly CLIP's real class row: the class token keeps its embedding
    assert out[0, 0] == a


def test_resize_quirk_differs_from_class_first_resize():
    torch.manual_seed(0)
    table = torch.randn(24 * 24 + 1, 8)
    quirk = resize_clip_position_embeddings(table, 32)
    assert quirk.shape == (32 * 32 + 1, 8)
    grid = table[1:].t().reshape(1, 8, 24, 24)
    correct_grid = F.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False)[0].flatten(1).t()
    correct = torch.cat([table[:1], correct_grid])
    assert not torch.allclose(quirk, correct, atol=1e-3)
    assert (quirk - correct).abs().max() > 0.1
    torch.testing.assert_close(quirk[0], table[0], rtol=0, atol=0)
    torch.testing.assert_close(quirk[-1], table[-1], rtol=0, atol=0)


def test_resize_rejects_a_non_square_table():
    with pytest.raises(ValueError):
        resize_clip_position_embeddings(torch.zeros(11, 4), 4)


def _tiny_tower(seed: int = 0) -> tuple[CLIPVisionTower, PixelLMConfig]:
    torch.manual_seed(seed)
    cfg = PixelLMConfig.tiny()
    return CLIPVisionTower.from_config(cfg).eval(), cfg


def test_table_row_p_is_added_to_sequence_position_p():
    """Pins the released behaviour: class token <- row 0, patch k <- row k+1 of the resized table."""
    tower, cfg = _tiny_tower()
    embeddings = tower.vision_model.embeddings
    g0, g1 = cfg.pretrained_vision_grid, cfg.vision_grid
    clip_table = torch.randn(g0 * g0 + 1, cfg.vision.hidden_size)
    with torch.no_grad():
        embeddings.position_embedding.weight.copy_(resize_clip_position_embeddings(clip_table, g1))
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        out = embeddings(pixels)
        patches = embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
    added = out - torch.cat([embeddings.class_embedding.expand(2, 1, -1), patches], dim=1)
    table = embeddings.position_embedding.weight
    torch.testing.assert_close(added, table.expand(2, -1, -1), rtol=0, atol=1e-5)
    # consequence of the quirk: the class token gets CLIP's own class position row
    torch.testing.assert_close(added[:, 0], clip_table[0].expand(2, -1), rtol=0, atol=1e-5)
    # and the last patch gets the row the research code treated as "class" (CLIP's last patch row)
    torch.testing.assert_close(added[:, -1], clip_table[-1].expand(2, -1), rtol=0, atol=1e-5)


def test_selected_layers_match_the_public_clip_forward():
    tower, cfg = _tiny_tower()
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        ours = tower(pixels)
        reference = CLIPVisionModel.forward(tower.vision_model, pixels, output_hidden_states=True).hidden_states
    assert len(ours) == 2
    for state, index in zip(ours, cfg.vision_select_layers):
        assert state.shape == (2, cfg.vision_grid**2, cfg.vision.hidden_size)
        torch.testing.assert_close(state, reference[index][:, 1:], rtol=1e-5, atol=1e-5)


def test_key_mask_changes_nothing_without_padding():
    tower, cfg = _tiny_tower()
    pixels = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    mask = patch_padding_mask([(cfg.image_size, cfg.image_size)], cfg.image_size, cfg.vision_grid)
    assert bool(mask.all())
    with torch.no_grad():
        plain = tower(pixels)
        masked = tower(pixels, mask)
    for a, b in zip(plain, masked):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_key_mask_hides_padded_patches_from_valid_ones():
    tower, cfg = _tiny_tower()
    size, grid = cfg.image_size, cfg.vision_grid
    valid = (60, size)  # rows 0..4 hold image pixels (5 * 14 = 70 > 60), rows 5..7 are pure padding
    mask = patch_padding_mask([valid], size, grid)
    assert mask[0].all(dim=1).tolist() == [True] * 5 + [False] * 3
    pixels = torch.randn(1, 3, size, size)
    pixels[:, :, valid[0]:] = 0.0
    other = pixels.clone()
    other[:, :, 70:] = torch.randn(1, 3, size - 70, size)  # change pixels of the fully padded patches only
    valid_tokens = mask[0].flatten()
    with torch.no_grad():
        masked_a, masked_b = tower(pixels, mask), tower(other, mask)
        plain_a, plain_b = tower(pixels), tower(other)
    for a, b, pa, pb in zip(masked_a, masked_b, plain_a, plain_b):
        # with the key mask, valid patches never see the padded ones
        torch.testing.assert_close(a[:, valid_tokens], b[:, valid_tokens], rtol=0, atol=1e-6)
        # without it they do (the test could fail)
        assert not torch.allclose(pa[:, valid_tokens], pb[:, valid_tokens], atol=1e-4)
        # and masking changes the valid outputs when there is padding
        assert not torch.allclose(a[:, valid_tokens], pa[:, valid_tokens], atol=1e-4)


def test_patch_mask_marks_partly_covered_patches_valid():
    mask = patch_padding_mask([(299, 448), (448, 299), (448, 448)], 448, 32)
    assert mask[0].all(dim=1).sum() == 22  # ceil(299 / 14)
    assert mask[0].any(dim=1).sum() == 22
    assert mask[1].all(dim=0).sum() == 22
    assert bool(mask[2].all())


def test_llm_mask_of_a_3_by_2_landscape_image_keeps_11_of_16_rows():
    # 3:2 landscape resized to 448 wide: height round(448 * 2 / 3) = 299
    patch_mask = patch_padding_mask([(299, 448)], 448, 32)
    token_mask = llm_token_mask(patch_mask, 16).view(16, 16)
    rows = token_mask.all(dim=1)
    assert rows.tolist() == [True] * 11 + [False] * 5
    assert bool(token_mask[:11].all()) and not bool(token_mask[11:].any())


def test_llm_mask_portrait_and_square():
    patch_mask = patch_padding_mask([(448, 299), (448, 448), (100, 100)], 448, 32)
    token_mask = llm_token_mask(patch_mask, 16).view(3, 16, 16)
    assert token_mask[0].all(dim=0).tolist() == [True] * 11 + [False] * 5
    assert bool(token_mask[1].all())
    assert token_mask[2].sum() == 4 * 4  # ceil(100 / 28) = 4 rows and columns


def test_patch_mask_rejects_sizes_outside_the_canvas():
    with pytest.raises(ValueError):
        patch_padding_mask([(0, 10)], 112, 8)
    with pytest.raises(ValueError):
        patch_padding_mask([(113, 10)], 112, 8)
