"""The released config.json (llava format) -> PixelLMConfig: the key mapping and its refusals."""

import pytest

from pixellm_ros.model import PixelLMConfig
from pixellm_ros.model.config import clip_vit_large_patch14_336
from pixellm_ros.model.released_config import config_from_released_json

RELEASED_7B_JSON = {
    "_name_or_path": "PixelLM-7B",
    "architectures": ["PixelLMForCausalLM"],
    "model_type": "llava",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "initializer_range": 0.02,
    "max_position_embeddings": 2048,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 32008,
    "mm_vision_tower": "openai/clip-vit-large-patch14-336",
    "mm_vision_select_layer": -2,
    "mm_hidden_size": 1024,
    "separate_mm_projector": True,
    "image_feature_scale_num": 2,
    "resize_vision_tower": True,
    "resize_vision_tower_size": 448,
    "pad_train_clip_images": True,
    "vision_tower_for_mask": True,
    "out_dim": 256,
    "mm_use_im_start_end": True,
    "use_mm_proj": True,
    "train_mask_decoder": True,
}



def test_config_from_released_json_maps_llava_keys():
    cfg = config_from_released_json(RELEASED_7B_JSON)
    assert cfg.text.hidden_size == 4096 and cfg.text.vocab_size == 32008
    assert cfg.text.max_position_embeddings == 2048 and cfg.text.rms_norm_eps == 1e-6
    assert cfg.text.pad_token_id == 0
    assert cfg.vision.image_size == 448
    assert cfg.vision_pretrained_image_size == 336
    assert cfg.vision.num_hidden_layers == 24 and cfg.vision.hidden_act == "quick_gelu"
    assert cfg.vision_select_layers == (-2, -11)
    assert cfg.num_scales == 2 and cfg.seg_tokens_per_scale == 3  # N from our defaults
    assert cfg.out_dim == 256
    assert cfg.mask_padded_patches is True
    assert cfg.use_im_start_end is True
    assert cfg.vision_tower_name == "openai/clip-vit-large-patch14-336"
    # a llava json maps to the same network as our preset
    preset = PixelLMConfig.released_7b()
    for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        assert getattr(cfg.text, name) == getattr(preset.text, name)


def test_config_from_released_json_takes_the_clip_folder_config():
    clip = clip_vit_large_patch14_336(336)
    cfg = config_from_released_json({**RELEASED_7B_JSON, "resize_vision_tower_size": 448}, vision=clip.to_dict())
    assert cfg.vision.image_size == 448 and cfg.vision_pretrained_image_size == 336
    assert clip.image_size == 336  # the caller's config is not modified


def test_config_from_released_json_rejects_a_non_pixellm_config():
    with pytest.raises(ValueError):
        config_from_released_json({**RELEASED_7B_JSON, "separate_mm_projector": False})
    with pytest.raises(ValueError, match="mm_hidden_size"):
        config_from_released_json({**RELEASED_7B_JSON, "mm_hidden_size": 768})
