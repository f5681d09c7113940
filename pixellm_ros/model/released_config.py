"""The released checkpoints' ``config.json`` (llava format) <-> PixelLMConfig, in both directions.

A released ``config.json`` is a LLaMA config plus LLaVA's / PixelLM's ``mm_*`` keys; it does not
hold the CLIP architecture (that comes from the CLIP folder ``mm_vision_tower`` names) nor the
number of seg tokens (the tokenizer's ``[SEG0]..`` are the truth), nor anything the research code
hard-codes (the second vision layer, the LLM grid, the decoder sizes): those keep our defaults,
the released values. The key tables below are the whole mapping; ``config_from_released_json``
reads with them, ``released_config_payload`` writes with them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transformers import CLIPVisionConfig

from .config import DEFAULT_ROPE_THETA, PixelLMConfig, clip_vit_large_patch14_336, llama_text_config
from .tokenizer import check_tokenizer_fits

if TYPE_CHECKING:
    import torch

    from .tokenizer import PixelLMTokenizer

RELEASED_CONFIG_FILE = "config.json"
RELEASED_ARCHITECTURE = "PixelLMForCausalLM"
RELEASED_MODEL_TYPE = "llava"


class ReleasedLayoutError(ValueError):
    """A model or folder that the released layout cannot express."""


# ------------------------------------------------------------------------------------ key tables
# LLaMA fields: the same name in config.json and in transformers' LlamaConfig; read and written.
LLAMA_KEYS: tuple[str, ...] = (
    "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "hidden_size", "initializer_range",
    "intermediate_size", "max_position_embeddings", "num_attention_heads", "num_hidden_layers",
    "num_key_value_heads", "rms_norm_eps", "tie_word_embeddings", "vocab_size",
)
# Read when present (a newer LLaMA config holds them), never written (the 4.31 configs do not).
# rope_theta is written too, but only when it is not LLaMA's default (as 4.31 did).
LLAMA_READ_ONLY_KEYS: tuple[str, ...] = ("attention_bias", "rope_scaling", "rope_theta")


@dataclass(frozen=True)
class ReleasedKey:
    """A PixelLM key of config.json: the PixelLMConfig field it carries, its meaning when absent."""

    key: str
    field: str
    default: Any
    kind: type


PIXELLM_KEYS: tuple[ReleasedKey, ...] = (
    ReleasedKey("image_feature_scale_num", "num_scales", 2, int),
    ReleasedKey("out_dim", "out_dim", 256, int),
    ReleasedKey("pad_train_clip_images", "mask_padded_patches", True, bool),
    ReleasedKey("mm_use_im_start_end", "use_im_start_end", True, bool),
)
# Keys computed from more than one field (each with its rule, in the functions below):
#   resize_vision_tower_size  <-> vision.image_size (the run size S; default 448)
#   mm_hidden_size            <-> vision.hidden_size (checked against the CLIP folder's on reading)
#   mm_vision_select_layer    <-> vision_select_layers[0] (default -2; the other scales keep ours)
#   mm_vision_tower           ->  vision_tower_name on reading; the CLIP folder's path on writing
#   torch_dtype               ->  extra["torch_dtype"] on reading; the weights' dtype on writing
# Written as they are; separate_mm_projector must also be true on reading.
FIXED_KEYS: dict[str, Any] = {
    "_name_or_path": "pixellm_ros",
    "architectures": [RELEASED_ARCHITECTURE],
    "model_type": RELEASED_MODEL_TYPE,
    "transformers_version": "4.31.0",
    "use_cache": True,
    "freeze_mm_mlp_adapter": False,
    "mm_use_im_patch_token": False,
    "mm_vision_select_feature": "patch",
    "separate_mm_projector": True,
    "tune_mm_mlp_adapter": False,
    "use_mm_proj": True,
}
RELEASED_RUN_SIZE = 448
RELEASED_VISION_TOWER = "openai/clip-vit-large-patch14-336"

# What decides the network (for checking that a written config.json reads back as the model).
NOT_ARCHITECTURE = frozenset({"vision_tower_name", "extra", "max_new_tokens"})
TEXT_ARCHITECTURE: tuple[str, ...] = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
    "tie_word_embeddings", "attention_bias", "mlp_bias", "rope_parameters",
)
VISION_ARCHITECTURE: tuple[str, ...] = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
    "image_size", "patch_size", "hidden_act", "layer_norm_eps",
)


# ------------------------------------------------------------------------------------ reading
def is_released_config(payload: dict[str, Any]) -> bool:
    return payload.get("model_type") == RELEASED_MODEL_TYPE or RELEASED_ARCHITECTURE in payload.get("architectures", [])


def config_from_released_json(
    payload: dict[str, Any], vision: CLIPVisionConfig | dict[str, Any] | None = None
) -> PixelLMConfig:
    """Map a released llava-format ``config.json`` (``model_type: llava``) to a PixelLMConfig.

    Pass the CLIP folder's vision config as ``vision`` when at hand, otherwise CLIP-L/14-336 is
    assumed. Its ``image_size`` is replaced by the run size ``resize_vision_tower_size`` and the
    checkpoint's own size is kept as ``vision_pretrained_image_size`` (the caller's config is not
    modified). N (seg tokens per scale) is not in the json: our default.
    """
    if not payload.get("separate_mm_projector", False):
        raise ValueError("released config without separate_mm_projector is not a PixelLM checkpoint we support")
    if vision is None:
        vision_cfg = clip_vit_large_patch14_336(336)
    else:
        vision_cfg = CLIPVisionConfig.from_dict(dict(vision) if isinstance(vision, dict) else vision.to_dict())
    pretrained_size = int(vision_cfg.image_size)
    vision_cfg.image_size = int(payload.get("resize_vision_tower_size", RELEASED_RUN_SIZE))
    mm_hidden = int(payload.get("mm_hidden_size", vision_cfg.hidden_size))
    if mm_hidden != int(vision_cfg.hidden_size):
        raise ValueError(f"mm_hidden_size {mm_hidden} != CLIP hidden size {vision_cfg.hidden_size}")

    text_kwargs = {k: payload[k] for k in LLAMA_KEYS + LLAMA_READ_ONLY_KEYS if payload.get(k) is not None}
    fields = {row.field: row.kind(payload.get(row.key, row.default)) for row in PIXELLM_KEYS}
    ours = PixelLMConfig.__dataclass_fields__["vision_select_layers"].default  # (-2, -11)
    first_layer = int(payload.get("mm_vision_select_layer", ours[0]))
    return PixelLMConfig(
        text=llama_text_config(**text_kwargs),
        vision=vision_cfg,
        vision_pretrained_image_size=pretrained_size,
        vision_select_layers=(first_layer,) + tuple(ours[1 : fields["num_scales"]]),
        vision_tower_name=str(payload.get("mm_vision_tower", RELEASED_VISION_TOWER)),
        extra={"source": "released", "torch_dtype": payload.get("torch_dtype")},
        **fields,
    )


def config_from_released(
    payload: dict[str, Any], clip_vision_config: Any, tokenizer: PixelLMTokenizer
) -> PixelLMConfig:
    """PixelLMConfig of a released folder; N (seg tokens per scale) comes from the tokenizer.

    The released json has no seg-token count: the tokenizer's ``[SEG0]..`` tokens are the truth
    (N*L of them), and the vocabulary must match the tokenizer's.
    """
    config = config_from_released_json(payload, vision=clip_vision_config)
    seg_total = len(tokenizer.seg_token_ids)
    if seg_total == 0 or seg_total % config.num_scales != 0:
        raise ReleasedLayoutError(
            f"the tokenizer has {seg_total} seg tokens, not a positive multiple of {config.num_scales} scales"
        )
    config = dataclasses.replace(config, seg_tokens_per_scale=seg_total // config.num_scales)
    check_tokenizer_fits(tokenizer, config, ReleasedLayoutError)
    return config


# ------------------------------------------------------------------------------------ writing
def rope_theta(config: PixelLMConfig) -> float:
    return float((config.text.rope_parameters or {}).get("rope_theta", DEFAULT_ROPE_THETA))


def released_config_payload(config: PixelLMConfig, dtype: torch.dtype, clip_path: str) -> dict[str, Any]:
    """The llava-format ``config.json`` of a PixelLM model (LLaMA fields + the mm_* fields)."""
    text = config.text
    payload: dict[str, Any] = dict(FIXED_KEYS)
    payload.update({key: getattr(text, key) for key in LLAMA_KEYS})
    payload["tie_word_embeddings"] = bool(text.tie_word_embeddings)
    if rope_theta(config) != DEFAULT_ROPE_THETA:  # 4.31 configs only carried it when it was not the default
        payload["rope_theta"] = rope_theta(config)
    payload.update({row.key: getattr(config, row.field) for row in PIXELLM_KEYS})
    payload.update({
        "resize_vision_tower_size": config.image_size,
        "mm_hidden_size": int(config.vision.hidden_size),
        "mm_vision_select_layer": config.vision_select_layers[0],
        "mm_vision_tower": clip_path,
        "torch_dtype": str(dtype).removeprefix("torch."),
    })
    return payload


def released_config_mismatches(ours: PixelLMConfig, reread: PixelLMConfig) -> list[str]:
    """Fields where ``reread`` (what a released folder yields) differs from ``ours``."""
    problems = []
    for field in dataclasses.fields(PixelLMConfig):
        if field.name in NOT_ARCHITECTURE or field.name in ("text", "vision"):
            continue
        if getattr(ours, field.name) != getattr(reread, field.name):
            problems.append(f"{field.name}: {getattr(ours, field.name)!r} -> {getattr(reread, field.name)!r}")
    for prefix, mine, theirs, names in (
        ("text", ours.text, reread.text, TEXT_ARCHITECTURE),
        ("vision", ours.vision, reread.vision, VISION_ARCHITECTURE),
    ):
        for name in names:
            if getattr(mine, name, None) != getattr(theirs, name, None):
                problems.append(f"{prefix}.{name}: {getattr(mine, name, None)!r} -> {getattr(theirs, name, None)!r}")
    return problems
