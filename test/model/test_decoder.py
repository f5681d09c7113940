"""Pixel decoder: prompt encoder, two-way transformer, multi-scale mask decoder."""

import math

import torch
import torch.nn.functional as F

from pixellm_ros.model import PixelLMConfig
from pixellm_ros.model.decoder import MultiScaleMaskDecoder
from pixellm_ros.model.prompt_encoder import PositionEmbeddingRandom, PromptEncoder
from pixellm_ros.model.two_way_transformer import Attention, TwoWayTransformer

torch.set_num_threads(1)


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    cfg = PixelLMConfig.tiny()
    prompt = PromptEncoder.from_config(cfg).eval()
    decoder = MultiScaleMaskDecoder.from_config(cfg).eval()
    # non-trivial no_mask_embed / level embeddings so that every input path matters
    with torch.no_grad():
        prompt.no_mask_embed.weight.normal_()
        decoder.level_embed.weight.normal_()
    features = [torch.randn(1, cfg.out_dim, cfg.vision_grid, cfg.vision_grid) for _ in range(cfg.num_scales)]
    return cfg, prompt, decoder, features


def _decode(prompt, decoder, features, prompts):
    with torch.no_grad():
        return decoder(features, prompt.dense_positional_encoding(), prompt.no_mask_dense_embedding(), prompts)


def test_random_positional_encoding_is_unit_sin_cos_pairs():
    pe = PositionEmbeddingRandom(16)((5, 7))
    assert pe.shape == (32, 5, 7)
    torch.testing.assert_close(pe[:16] ** 2 + pe[16:] ** 2, torch.ones(16, 5, 7))


def test_positional_encoding_value_at_a_cell():
    layer = PositionEmbeddingRandom(4)
    matrix = layer.positional_encoding_gaussian_matrix
    pe = layer((2, 4))
    x, y = 2 * (2.5 / 4) - 1, 2 * (0.5 / 2) - 1  # row 0, column 2
    angles = 2 * math.pi * (x * matrix[0] + y * matrix[1])
    torch.testing.assert_close(pe[:, 0, 2], torch.cat([angles.sin(), angles.cos()]))


def test_prompt_encoder_shapes():
    cfg, prompt, _, _ = _parts()
    grid = cfg.vision_grid
    assert prompt.dense_positional_encoding().shape == (1, cfg.out_dim, grid, grid)
    dense = prompt.no_mask_dense_embedding()
    assert dense.shape == (1, cfg.out_dim, grid, grid)
    torch.testing.assert_close(dense[0, :, 3, 5], prompt.no_mask_embed.weight[0])


def test_attention_matches_the_softmax_formula():
    torch.manual_seed(0)
    attn = Attention(16, num_heads=2, downsample_rate=2)
    q, k, v = torch.randn(3, 5, 16), torch.randn(3, 7, 16), torch.randn(3, 7, 16)
    qh = attn.q_proj(q).view(3, 5, 2, 4).transpose(1, 2)
    kh = attn.k_proj(k).view(3, 7, 2, 4).transpose(1, 2)
    vh = attn.v_proj(v).view(3, 7, 2, 4).transpose(1, 2)
    weights = torch.softmax(qh @ kh.transpose(-1, -2) / 2.0, dim=-1)
    expected = attn.out_proj((weights @ vh).transpose(1, 2).reshape(3, 5, 8))
    torch.testing.assert_close(attn(q, k, v), expected, rtol=1e-5, atol=1e-6)


def test_two_way_transformer_shapes():
    torch.manual_seed(0)
    transformer = TwoWayTransformer(depth=2, embedding_dim=32, num_heads=4, mlp_dim=64)
    tokens, image = transformer(torch.randn(3, 32, 8, 8), torch.randn(3, 32, 8, 8), torch.randn(3, 6, 32))
    assert tokens.shape == (3, 6, 32) and image.shape == (3, 64, 32)


def test_decoder_output_shapes():
    cfg, prompt, decoder, features = _parts()
    logits, iou = _decode(prompt, decoder, features, torch.randn(3, cfg.num_scales, cfg.out_dim))
    assert logits.shape == (3, cfg.mask_resolution, cfg.mask_resolution)  # 4 G
    assert iou.shape == (3,)
    assert torch.isfinite(logits).all()


def test_batched_decode_equals_per_target_decodes():
    cfg, prompt, decoder, features = _parts()
    prompts = torch.randn(4, cfg.num_scales, cfg.out_dim)
    batched, batched_iou = _decode(prompt, decoder, features, prompts)
    for index in range(4):
        single, single_iou = _decode(prompt, decoder, features, prompts[index : index + 1])
        torch.testing.assert_close(batched[index : index + 1], single, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batched_iou[index : index + 1], single_iou, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])  # targets really differ


def test_final_logits_are_half_level0_upsampled_plus_half_level1():
    cfg, prompt, decoder, features = _parts()
    prompts = torch.randn(2, cfg.num_scales, cfg.out_dim)
    final, _ = _decode(prompt, decoder, features, prompts)
    pe, dense = prompt.dense_positional_encoding(), prompt.no_mask_dense_embedding()
    with torch.no_grad():
        level0, _ = decoder._decode_level(0, features[0], pe, dense, prompts, None)
        level1, _ = decoder._decode_level(1, features[1], pe, dense, prompts, level0)
    grid = cfg.vision_grid
    assert level0.shape == (2, 1, 2 * grid, 2 * grid)
    assert level1.shape == (2, 1, 4 * grid, 4 * grid)
    expected = 0.5 * F.interpolate(level0, size=(4 * grid, 4 * grid), mode="bilinear", align_corners=False) + 0.5 * level1
    torch.testing.assert_close(final, expected[:, 0], rtol=1e-5, atol=1e-5)


def test_level1_is_gated_by_the_level0_mask():
    cfg, prompt, decoder, features = _parts()
    prompts = torch.randn(1, cfg.num_scales, cfg.out_dim)
    pe, dense = prompt.dense_positional_encoding(), prompt.no_mask_dense_embedding()
    with torch.no_grad():
        level0, _ = decoder._decode_level(0, features[0], pe, dense, prompts, None)
        gated, _ = decoder._decode_level(1, features[1], pe, dense, prompts, level0)
        flipped, _ = decoder._decode_level(1, features[1], pe, dense, prompts, -level0)
    assert not torch.allclose(gated, flipped, atol=1e-4)


def test_each_scale_prompt_and_feature_matters():
    cfg, prompt, decoder, features = _parts()
    prompts = torch.randn(1, cfg.num_scales, cfg.out_dim)
    base, _ = _decode(prompt, decoder, features, prompts)
    for scale in range(cfg.num_scales):
        changed = prompts.clone()
        changed[:, scale] = torch.randn(cfg.out_dim)
        out, _ = _decode(prompt, decoder, features, changed)
        assert not torch.allclose(out, base, atol=1e-4)
        other = list(features)
        other[scale] = torch.randn_like(other[scale])
        out, _ = _decode(prompt, decoder, other, prompts)
        assert not torch.allclose(out, base, atol=1e-4)
