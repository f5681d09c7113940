"""The assembled model: released key layout, image encoding, prompt splicing, seg codebook."""

import dataclasses

import pytest
import torch

from pixellm_ros.model import (
    IMAGE_TOKEN_INDEX,
    PixelLMConfig,
    PixelLMForCausalLM,
    group_seg_embeddings,
    seg_state_mask,
)

torch.set_num_threads(1)


def released_key_set(layers: int) -> set[str]:
    """The released checkpoint's keys, written out from the facts sheet (not from our code)."""
    keys = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for n in range(layers):
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"):
            keys.add(f"model.layers.{n}.{name}.weight")
    for proj in ("mm_projector", "out_mm_projector"):
        keys |= {f"model.{proj}.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    keys |= {"model.image_feature_neck.0.weight", "model.image_feature_neck.1.weight", "model.image_feature_neck.1.bias",
             "model.image_feature_neck.2.weight", "model.image_feature_neck.3.weight", "model.image_feature_neck.3.bias"}
    keys |= {f"model.text_hidden_fcs.0.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    pe = "model.prompt_encoder."
    keys |= {pe + "pe_layer.positional_encoding_gaussian_matrix", pe + "not_a_point_embed.weight", pe + "no_mask_embed.weight"}
    keys |= {f"{pe}point_embeddings.{i}.weight" for i in range(4)}
    keys |= {f"{pe}mask_downscaling.{i}.{p}" for i in (0, 1, 3, 4, 6) for p in ("weight", "bias")}
    md = "model.mask_decoder."
    linear = ("weight", "bias")
    for t in (0, 1):
        for layer in (0, 1):
            base = f"{md}transformer.{t}.layers.{layer}."
            for attn in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
                keys |= {f"{base}{attn}.{p}_proj.{w}" for p in "qkv" for w in linear}
                keys |= {f"{base}{attn}.out_proj.{w}" for w in linear}
            keys |= {f"{base}mlp.lin{i}.{w}" for i in (1, 2) for w in linear}
            keys |= {f"{base}norm{i}.{w}" for i in (1, 2, 3, 4) for w in linear}
        final = f"{md}transformer.{t}.final_attn_token_to_image."
        keys |= {f"{final}{p}_proj.{w}" for p in ("q", "k", "v", "out") for w in linear}
        keys |= {f"{md}transformer.{t}.norm_final_attn.{w}" for w in linear}
    keys |= {md + "iou_token.weight", md + "mask_tokens.weight", md + "level_embed.weight",
             md + "pe1.positional_encoding_gaussian_matrix"}
    keys |= {f"{md}output_upscaling.{i}.{w}" for i in (0, 1) for w in linear}
    keys |= {f"{md}upsample_2x.{i}.{w}" for i in (0, 1) for w in linear}
    keys |= {f"{md}output_hypernetworks_mlps.{k}.layers.{i}.{w}" for k in range(4) for i in range(3) for w in linear}
    keys |= {f"{md}iou_prediction_head.layers.{i}.{w}" for i in range(3) for w in linear}
    return keys


def clip_vision_key_set(layers: int) -> set[str]:
    """The vision half of an openai CLIP checkpoint."""
    keys = {"vision_model.embeddings.class_embedding", "vision_model.embeddings.patch_embedding.weight",
            "vision_model.embeddings.position_embedding.weight"}
    keys |= {f"vision_model.{n}.{w}" for n in ("pre_layrnorm", "post_layernorm") for w in ("weight", "bias")}
    for n in range(layers):
        base = f"vision_model.encoder.layers.{n}."
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                     "mlp.fc1", "mlp.fc2", "layer_norm1", "layer_norm2"):
            keys |= {f"{base}{name}.weight", f"{base}{name}.bias"}
    return keys


def to_released_name(key: str) -> str | None:
    """Our key -> the released key by the prefix rule (None for the vision tower, which is CLIP's)."""
    if key.startswith("vision_tower."):
        return None
    if key.startswith("language_model.model."):
        return "model." + key[len("language_model.model."):]
    if key.startswith("language_model.lm_head."):
        return key[len("language_model."):]
    return "model." + key


@pytest.fixture(scope="module")
def meta_7b():
    with torch.device("meta"):
        return PixelLMForCausalLM(PixelLMConfig.released_7b())


def test_released_7b_keys_map_one_to_one(meta_7b):
    ours = meta_7b.state_dict()
    mapped = {to_released_name(k) for k in ours if to_released_name(k) is not None}
    expected = released_key_set(layers=32)
    assert mapped - expected == set(), "keys the released checkpoint lacks"
    assert expected - mapped == set(), "released keys we lack"
    tower = {k[len("vision_tower."):] for k in ours if k.startswith("vision_tower.")}
    assert tower == clip_vision_key_set(24)


def test_released_7b_shapes(meta_7b):
    sd = meta_7b.state_dict()
    shapes = {
        "language_model.model.embed_tokens.weight": (32008, 4096),
        "language_model.lm_head.weight": (32008, 4096),
        "mm_projector.0.weight": (8192, 1024),
        "mm_projector.2.weight": (4096, 8192),
        "out_mm_projector.2.weight": (4096, 8192),
        "image_feature_neck.0.weight": (256, 4096, 1, 1),
        "image_feature_neck.2.weight": (256, 256, 3, 3),
        "text_hidden_fcs.0.0.weight": (4096, 4096),
        "text_hidden_fcs.0.2.weight": (256, 4096),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
        "prompt_encoder.mask_downscaling.0.weight": (4, 1, 2, 2),
        "prompt_encoder.mask_downscaling.6.weight": (256, 16, 1, 1),
        "mask_decoder.transformer.0.layers.0.cross_attn_token_to_image.q_proj.weight": (128, 256),
        "mask_decoder.transformer.1.layers.1.mlp.lin1.weight": (2048, 256),
        "mask_decoder.mask_tokens.weight": (4, 256),
        "mask_decoder.output_upscaling.0.weight": (256, 32, 2, 2),
        "mask_decoder.upsample_2x.0.weight": (256, 256, 2, 2),
        "mask_decoder.output_hypernetworks_mlps.0.layers.2.weight": (32, 256),
        "mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
        "mask_decoder.level_embed.weight": (2, 256),
        "mask_decoder.pe1.positional_encoding_gaussian_matrix": (2, 128),
        "vision_tower.vision_model.embeddings.position_embedding.weight": (1025, 1024),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key


def test_released_13b_keys_map_one_to_one():
    with torch.device("meta"):
        model = PixelLMForCausalLM(PixelLMConfig.released_13b())
    mapped = {to_released_name(k) for k in model.state_dict() if to_released_name(k) is not None}
    assert mapped == released_key_set(layers=40)
    assert tuple(model.mm_projector[2].weight.shape) == (5120, 10240)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = PixelLMConfig.tiny()
    return PixelLMForCausalLM(cfg).eval()


def test_encode_images_shapes_and_3_by_2_mask(tiny):
    cfg = tiny.config
    size = cfg.image_size  # 112: 3:2 landscape -> 112 x 75
    pixels = torch.randn(2, 3, size, size)
    pixels[0, :, 75:] = 0
    with torch.no_grad():
        feats = tiny.encode_images(pixels, [(75, size), (size, size)])
    g, grid = cfg.llm_image_grid, cfg.vision_grid
    assert feats.llm_tokens.shape == (2, g * g, cfg.hidden_size)
    assert feats.llm_mask.dtype == torch.bool and feats.llm_mask.shape == (2, g * g)
    # ceil(75 / 28) = 3 of 4 token rows valid
    assert feats.llm_mask[0].view(g, g).all(dim=1).tolist() == [True, True, True, False]
    assert bool(feats.llm_mask[1].all())
    assert len(feats.decoder_features) == cfg.num_scales
    for f in feats.decoder_features:
        assert f.shape == (2, cfg.out_dim, grid, grid)


def test_encode_images_rejects_a_wrong_size(tiny):
    with pytest.raises(ValueError):
        tiny.encode_images(torch.zeros(1, 3, 64, 64), [(64, 64)])
    with pytest.raises(ValueError):
        tiny.encode_images(torch.zeros(2, 3, 112, 112), [(112, 112)])


def test_llm_tokens_are_scale0_resized_then_projected(tiny):
    cfg = tiny.config
    pixels = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        feats = tiny.encode_images(pixels, [(cfg.image_size, cfg.image_size)])
        scale0 = tiny.vision_tower(pixels)[0]  # (1, G*G, C)
        grid, g = cfg.vision_grid, cfg.llm_image_grid
        # G = 2 g: bilinear (align_corners=False) halving is the mean of each 2x2 block
        blocks = scale0.view(1, g, 2, g, 2, -1).mean(dim=(2, 4)).reshape(1, g * g, -1)
        expected = tiny.mm_projector(blocks)
    torch.testing.assert_close(feats.llm_tokens, expected, rtol=1e-5, atol=1e-5)
    assert grid == 2 * g


def test_area_resize_averages_every_patch_of_a_block():
    # G = 8, g = 2: each LLM token stands for a 4 x 4 block of patches
    cfg = dataclasses.replace(PixelLMConfig.tiny(), llm_image_grid=2, llm_image_resize="area")
    torch.manual_seed(0)
    model = PixelLMForCausalLM(cfg).eval()
    pixels = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        feats = model.encode_images(pixels, [(cfg.image_size, cfg.image_size)])
        scale0 = model.vision_tower(pixels)[0]
        blocks = scale0.view(1, 2, 4, 2, 4, -1).mean(dim=(2, 4)).reshape(1, 4, -1)
        torch.testing.assert_close(feats.llm_tokens, model.mm_projector(blocks), rtol=1e-5, atol=1e-5)
        # the released bilinear resize would see only the central 2 x 2 patches of each block
        model.config.llm_image_resize = "bilinear"
        bilinear = model.encode_images(pixels, [(cfg.image_size, cfg.image_size)]).llm_tokens
        centres = scale0.view(1, 2, 4, 2, 4, -1)[:, :, 1:3, :, 1:3].mean(dim=(2, 4)).reshape(1, 4, -1)
        torch.testing.assert_close(bilinear, model.mm_projector(centres), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(bilinear, feats.llm_tokens)
    with pytest.raises(ValueError, match="llm_image_resize"):
        dataclasses.replace(cfg, llm_image_resize="nearest")


def test_embed_prompt_splices_the_image_tokens(tiny):
    cfg = tiny.config
    pixels = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        feats = tiny.encode_images(pixels, [(75, cfg.image_size)])
        ids = torch.tensor([[1, 5, 6, IMAGE_TOKEN_INDEX, 7, 8, 9]])
        embeds, attn = tiny.embed_prompt(ids, feats)
    n = cfg.image_token_len
    assert embeds.shape == (1, ids.shape[1] - 1 + n, cfg.hidden_size)
    assert attn.dtype == torch.long and attn.shape == (1, ids.shape[1] - 1 + n)
    table = tiny.language_model.get_input_embeddings().weight
    torch.testing.assert_close(embeds[0, :3], table[[1, 5, 6]])
    torch.testing.assert_close(embeds[0, 3 : 3 + n], feats.llm_tokens[0])
    torch.testing.assert_close(embeds[0, 3 + n :], table[[7, 8, 9]])
    assert attn[0, :3].tolist() == [1, 1, 1] and attn[0, 3 + n :].tolist() == [1, 1, 1]
    assert attn[0, 3 : 3 + n].tolist() == feats.llm_mask[0].long().tolist()
    assert 0 in attn[0].tolist()


def test_embed_prompt_needs_exactly_one_placeholder(tiny):
    feats = tiny.encode_images(torch.zeros(1, 3, 112, 112), [(112, 112)])
    with pytest.raises(ValueError):
        tiny.embed_prompt(torch.tensor([[1, 5, 6]]), feats)
    with pytest.raises(ValueError):
        tiny.embed_prompt(torch.tensor([[1, IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX]]), feats)


def test_last_hidden_state_in_hidden_states_is_after_the_final_norm(tiny):
    embeds = torch.randn(1, 6, tiny.config.hidden_size)
    with torch.no_grad():
        out = tiny.language_model(inputs_embeds=embeds, output_hidden_states=True)
        base = tiny.language_model.model(inputs_embeds=embeds).last_hidden_state
    torch.testing.assert_close(out.hidden_states[-1], base)
    torch.testing.assert_close(out.logits, tiny.language_model.lm_head(base))


def test_seg_state_mask_marks_the_position_before_each_seg_token():
    seg = [50, 51, 52, 53, 54, 55]
    ids = torch.tensor([[1, 9, 50, 51, 52, 53, 54, 55, 8, 50]])
    mask = seg_state_mask(ids, seg)
    assert mask[0].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6, 8]


def test_released_fusion_is_half_the_mean_of_the_first_three(tiny):
    cfg = tiny.config
    torch.manual_seed(1)
    groups = torch.randn(5, cfg.num_scales, cfg.seg_tokens_per_scale, cfg.out_dim)
    fused = tiny.fuse_seg_groups(groups)
    assert fused.shape == (5, cfg.num_scales, cfg.out_dim)
    e0, e1, e2 = groups[:, :, 0], groups[:, :, 1], groups[:, :, 2]
    torch.testing.assert_close(fused, (e0 + e1 + e2) / 6)
    assert not any(k.startswith("seg_fusion") for k in tiny.state_dict())


def test_learned_fusion_starts_at_the_mean_and_is_saved():
    cfg = PixelLMConfig.tiny()
    cfg.fusion = "learned"
    torch.manual_seed(0)
    model = PixelLMForCausalLM(cfg)
    groups = torch.randn(2, cfg.num_scales, cfg.seg_tokens_per_scale, cfg.out_dim)
    torch.testing.assert_close(model.fuse_seg_groups(groups), groups.mean(dim=2), rtol=1e-5, atol=1e-6)
    keys = [k for k in model.state_dict() if k.startswith("seg_fusion")]
    assert sorted(keys) == ["seg_fusion.projection.bias", "seg_fusion.projection.weight"]


def test_grouping_order_and_errors():
    seg = torch.arange(12.0).view(12, 1)
    groups = group_seg_embeddings(seg, num_scales=2, tokens_per_scale=3)
    assert groups.shape == (2, 2, 3, 1)
    assert groups[1, 1, :, 0].tolist() == [9.0, 10.0, 11.0]  # target 1, scale 1 = [SEG3..5]
    with pytest.raises(ValueError):
        group_seg_embeddings(torch.zeros(7, 4), 2, 3)


def test_decode_masks_from_hidden_states(tiny):
    cfg = tiny.config
    with torch.no_grad():
        feats = tiny.encode_images(torch.randn(1, 3, cfg.image_size, cfg.image_size), [(112, 112)])
        hidden = torch.randn(2 * cfg.seg_tokens_per_target, cfg.hidden_size)
        out = tiny.masks_from_hidden_states(hidden, feats.decoder_features)
        fused = tiny.fuse_seg_groups(tiny.seg_embeddings(hidden).view(2, cfg.num_scales, cfg.seg_tokens_per_scale, -1))
        direct = tiny.decode_masks(feats.decoder_features, fused)
    assert out.low_res_logits.shape == (2, cfg.mask_resolution, cfg.mask_resolution)
    assert out.iou_scores.shape == (2,)
    torch.testing.assert_close(out.low_res_logits, direct.low_res_logits)
    empty = tiny.decode_masks(feats.decoder_features, torch.zeros(0, cfg.num_scales, cfg.out_dim))
    assert empty.low_res_logits.shape == (0, cfg.mask_resolution, cfg.mask_resolution)
    with pytest.raises(ValueError):
        tiny.decode_masks([f.expand(2, -1, -1, -1) for f in feats.decoder_features], fused)


def test_a_whole_batch_decodes_in_one_pass_as_image_by_image(tiny):
    """decode_masks with image_index: the targets of several images at once, each on its own image."""
    cfg = tiny.config
    torch.manual_seed(4)
    with torch.no_grad():
        feats = tiny.encode_images(torch.randn(3, 3, cfg.image_size, cfg.image_size), [(112, 112), (80, 112), (112, 60)])
        fused = torch.randn(5, cfg.num_scales, cfg.out_dim)
        owner = torch.tensor([0, 0, 2, 1, 2])  # any order of images
        batched = tiny.decode_masks(feats.decoder_features, fused, image_index=owner)
        one_by_one = [
            tiny.decode_masks([f[i : i + 1] for f in feats.decoder_features], fused[t : t + 1])
            for t, i in enumerate(owner.tolist())
        ]
    torch.testing.assert_close(batched.low_res_logits, torch.cat([o.low_res_logits for o in one_by_one]),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched.iou_scores, torch.cat([o.iou_scores for o in one_by_one]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batched.low_res_logits[0], batched.low_res_logits[3], atol=1e-3)  # images differ
    with pytest.raises(ValueError, match="image_index"):
        tiny.decode_masks(feats.decoder_features, fused, image_index=owner[:4])
