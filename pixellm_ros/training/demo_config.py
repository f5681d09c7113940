"""The shipped small PixelLM: the released architecture with dimensions that train on two CPU cores.

Same classes as the released 7B/13B model (CLIP ViT, LLaMA, seg codebook with N = 3 tokens per
scale and L = 2 scales, SAM-style two-level decoder), only narrower and shallower, with every part
trained from scratch on the procedural tabletop world (no CLIP or LLaMA weights exist here).

Sizes and why (chosen so that the default run, 650 + 1000 steps, fits in under an hour on two
CPU cores):
* 168 px input, patch 7 -> G = 24 vision grid, so the decoder's low-res masks are 4 G = 96 px;
  world objects are >= ~18 px across at 168, i.e. >= 10 mask pixels. Measured after 300 steps of
  stage 1 (name-prompted masks, 40 held-out scenes): mean IoU 0.55 with 7 px patches against 0.34
  with 14 px (0.80 against 0.51 on objects whose colour is unique in the scene), for 2.7 against
  1.2 s per step: finer patches see the shapes' outlines and place the mask edges.
* Vision: 3 layers of width 128. Scales are the last layer (semantics: colour, shape, relations)
  and the one before it (closer to the pixels, for the second decoder level).
* LLM image grid 6 (36 image tokens, each the mean of 4 x 4 patches): enough for
  left/right/front/behind, short prompts.
* LLM: 3 layers of width 192; the vocabulary is a small sentencepiece model trained on the world's
  text (a few hundred pieces), so the embeddings stay small.
* Decoder width 96 (out_dim), MLP 256, 4 heads; the learned token fusion (the paper's linear
  projection) since this is a new model, not a released checkpoint.
A larger variant (224 px, 4x192 vision, 4x256 LLM) ran at ~2.5 s/step here: too slow to train in
the hour this model is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from transformers import CLIPVisionConfig, LlamaConfig

from pixellm_ros.model.config import PixelLMConfig

DEMO_IMAGE_SIZE = 168
DEMO_PATCH_SIZE = 7


def demo_config(vocab_size: int) -> PixelLMConfig:
    """The config of the shipped default model for a tokenizer of ``vocab_size`` ids (added tokens included)."""
    vision = CLIPVisionConfig(
        hidden_size=128,
        intermediate_size=512,
        projection_dim=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_channels=3,
        image_size=DEMO_IMAGE_SIZE,
        patch_size=DEMO_PATCH_SIZE,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=192,
        intermediate_size=512,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    return PixelLMConfig(
        text=text,
        vision=vision,
        # Trained at its run size: the position table needs no resize.
        vision_pretrained_image_size=DEMO_IMAGE_SIZE,
        vision_select_layers=(-1, -2),
        vision_tower_name="pixellm-ros-demo-vit",
        llm_image_grid=6,
        llm_image_resize="area",
        seg_tokens_per_scale=3,
        num_scales=2,
        out_dim=96,
        fusion="learned",
        decoder_depth=2,
        decoder_mlp_dim=256,
        decoder_num_heads=4,
        decoder_attention_downsample=2,
        decoder_upscale_channels=16,
        iou_head_hidden_dim=96,
        mask_in_chans=8,
        max_new_tokens=128,
        extra={"source": "pixellm_ros demo model (tabletop world)"},
    )


def demo_conv_config(vocab_size: int) -> PixelLMConfig:
    """``demo_config`` with a convolutional stem in front of the patch embedding: 3x3 convolutions
    to 32 and 64 channels at full resolution, then the 7 x 7 stride-7 patch convolution (the
    tower that learns shape sooner per step, docs/embedded_model_experiments.md)."""
    base = demo_config(vocab_size)
    return dataclasses.replace(
        base, vision_stem="conv", vision_stem_channels=(32, 64), vision_stem_kernel=3,
        vision_tower_name="pixellm-ros-demo-conv-vit",
        extra={"source": "pixellm_ros demo model, conv stem (tabletop world)"},
    )


# The model sizes `pixellm-ros train` can build (TrainSettings.model): name -> vocab size -> config.
MODEL_CONFIGS: dict[str, Callable[[int], PixelLMConfig]] = {
    "demo": demo_config,
    "demo_conv": demo_conv_config,
}
