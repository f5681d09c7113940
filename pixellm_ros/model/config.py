"""PixelLMConfig: every dimension of the network in one place.

The released research code hard-codes most of PixelLM's shape (the second feature layer, the 16x16
LLM grid, the decoder depth, ...). Here each of those numbers is a field, so that the released
7B/13B models, the tiny test models and new trained models are all the same class with different
values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import CLIPVisionConfig, LlamaConfig

from .constants import RELEASED_ADDED_TOKENS

FusionMode = Literal["released_constant", "learned"]
FUSION_MODES: tuple[str, ...] = ("released_constant", "learned")
# How scale 0 is brought from G x G to the LLM's g x g: "bilinear" is the released resize (for
# G = 2 g, as released, it is exactly the mean of each 2 x 2 block); "area" is the mean of each
# (G/g) x (G/g) block, which for G = 4 g still sees every patch where bilinear samples only the
# central 2 x 2 of each block.
LLM_IMAGE_RESIZES: tuple[str, ...] = ("bilinear", "area")
# The image encoder: "clip" is the released CLIP ViT tower (``vision``); "efficientnet_lite0" is a
# pretrained CNN (``model.efficientnet``) whose stride 8 / 16 / 32 maps feed the object tokenizer
# (``model.object_tokens``): one LLM token per object, and the decoder's two scales (stride 16 at
# G x G, stride 8 at 2G x 2G).
IMAGE_ENCODERS: tuple[str, ...] = ("clip", "efficientnet_lite0")
# How the prompt around the image and the instruction is written (engine.prompt): the released
# models' llava_v1, or the ChatML turns of an instruct LLM such as SmolLM2.
PROMPT_TEMPLATES: tuple[str, ...] = ("llava_v1", "chatml")
CNN_FEATURE_STRIDES: tuple[int, int, int] = (8, 16, 32)

LLAMA_BASE_VOCAB = 32000
DEFAULT_ROPE_THETA = 10000.0  # LLaMA's rotary base
OBJECT_PLACE_AXES = (0, 1)  # an object's place words: the bin of its centre's x, then of its y (ObjectTokenizer.places)
# The orders the object slots can be written in (config.object_orders): detected left to right, or
# nearest the camera first (the largest centre y first: the camera looks down at the table from the front).
OBJECT_ORDERS: tuple[str, ...] = ("left_to_right", "front_to_back")

# SAM / ImageNet statistics on 0-255 RGB: the released model normalises CLIP's input with these,
# not with CLIP's own statistics.
SAM_PIXEL_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
SAM_PIXEL_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)


def clip_vision_config(
    hidden_size: int, intermediate_size: int, num_hidden_layers: int, num_attention_heads: int, image_size: int,
    projection_dim: int | None = None, patch_size: int = 14,
) -> CLIPVisionConfig:
    """A CLIP vision tower of these sizes, the rest as OpenAI's CLIP (RGB, quick_gelu, LayerNorm eps
    1e-5); projection_dim defaults to hidden_size. The one place a CLIPVisionConfig is written out."""
    return CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        projection_dim=hidden_size if projection_dim is None else projection_dim,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_channels=3,
        image_size=image_size,
        patch_size=patch_size,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


def clip_vit_large_patch14_336(image_size: int = 448) -> CLIPVisionConfig:
    """The vision config of `openai/clip-vit-large-patch14-336`, run at ``image_size``."""
    return clip_vision_config(1024, 4096, 24, 16, image_size, projection_dim=768)


@dataclass
class PixelLMConfig:
    """The full description of a PixelLM network.

    ``text`` is the LLaMA config (``vocab_size`` includes the added seg/image tokens);
    ``vision`` is the CLIP vision config with ``image_size`` = the run size ``S`` (448 released),
    so the vision grid is ``G = S / patch`` (32) and the low-res mask side is ``M = 4 G`` (128).
    """

    text: LlamaConfig
    vision: CLIPVisionConfig | None  # None with a CNN image encoder

    # Vision tower.
    vision_pretrained_image_size: int = 336  # the CLIP checkpoint's own size (for the pos-embed resize)
    vision_select_layers: tuple[int, ...] = (-2, -11)  # one hidden-state index per feature scale
    mask_padded_patches: bool = True  # key-mask patches that lie fully in the zero padding
    vision_tower_name: str = "openai/clip-vit-large-patch14-336"

    # A CNN image encoder and its object tokens (image_encoder != "clip"; see IMAGE_ENCODERS).
    image_encoder: str = "clip"
    encoder_image_size: int = 320  # S for a CNN encoder (CLIP's is vision.image_size)
    object_tokens: int = 10  # K: at most this many objects, one LLM token each
    object_classes: int = 6  # centre heat maps (one per colour in the tabletop world)
    object_embed_dim: int = 256
    object_attributes: tuple[int, ...] = (6, 8, 3)  # attribute groups read at each object (colour, shape, size)
    # Each object token is followed by the words of its most likely attributes ("small red ball"):
    # object_tag_groups names the groups in the order written, object_tag_token_ids holds, per
    # attribute group, the LLM token id of each value's word (empty: no words).
    object_tag_groups: tuple[int, ...] = ()
    object_tag_token_ids: tuple[tuple[int, ...], ...] = ()
    # ... and then the words of its place ("small red ball 3 7"): the bin of its centre's x (left to
    # right) and of its y (back to front) on the un-padded image, object_place_token_ids holding the
    # LLM token id of each bin's word (empty: no place words).
    object_place_token_ids: tuple[int, ...] = ()
    # The object slots are written once per order named here (OBJECT_ORDERS), one list after the
    # other: left to right alone, or also front to back, so that "the nearest ..." is "the first ..."
    # of the second list as "the leftmost ..." is of the first.
    object_orders: tuple[str, ...] = ("left_to_right",)
    # ... and then, if set, the attribute words of the detected object nearest to it (centres' pixel
    # distance, the world's "closest"; "small red ball 3 7 large blue cup"), the embeddings that
    # object's own slot reads: "the thing closest to the blue cup" is then the name carried by the
    # slot that reads " blue cup", copied, not a distance computed.
    object_neighbour_words: bool = False
    # ... and, if >= 0, this LLM token before the neighbour's words ("small red ball 3 7 near large
    # blue cup"): the slot's own words and its neighbour's are then told apart by a word, not by place.
    object_neighbour_marker_token_id: int = -1
    object_threshold: float = 0.3  # a heat-map peak above this is an object
    # A peak within this many radii (the larger of the two) of a higher-scoring one is the same
    # object seen again (another class's map, or a ring's body beside its hole) and is dropped; 0 = keep.
    object_duplicate_radius: float = 0.0
    # Where the attributes are read: 0 = at the centre; f > 0 = the mean of the centre's reading and
    # the body's (8 points on a circle of f radii: a ring's centre is its hole).
    object_attribute_circle: float = 0.0

    # Where the LLM's base weights come from: "" = this folder; a name of
    # model.pretrained_llm.PRETRAINED_LLMS = that registry package (the folder holds the changes).
    base_llm: str = ""
    # Which of the base's layers the LLM's are, in order: () = its first text.num_hidden_layers.
    base_llm_layers: tuple[int, ...] = ()
    prompt_template: str = "llava_v1"  # PROMPT_TEMPLATES

    # Image tokens for the LLM: scale 0 resized to llm_image_grid x llm_image_grid.
    llm_image_grid: int = 16
    llm_image_resize: str = "bilinear"  # LLM_IMAGE_RESIZES
    projector_hidden_factor: int = 2  # mm_projector / out_mm_projector: C -> factor*H -> H

    # Seg codebook.
    seg_tokens_per_scale: int = 3  # N
    num_scales: int = 2  # L
    out_dim: int = 256  # seg embedding / decoder width
    fusion: str = "released_constant"

    # Pixel decoder (SAM-style).
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    decoder_attention_downsample: int = 2
    num_mask_tokens: int = 4  # 3 multimask outputs + 1 single-mask output
    decoder_upscale_channels: int = 32  # transformer_dim // 8 in the released model
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16  # prompt encoder mask_downscaling width (present in the checkpoint, unused)
    # True (released): all scales at G x G, levels >= 1 upsample theirs 2x; False: scale 1 arrives at 2G
    decoder_upsample_scales: bool = True

    # Pre-processing and prompting.
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD
    use_im_start_end: bool = True
    max_new_tokens: int = 512

    # Not part of to_dict()'s payload semantics, only a marker of where the config came from.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vision_select_layers = tuple(int(i) for i in self.vision_select_layers)
        self.object_attributes = tuple(int(g) for g in self.object_attributes)
        self.object_tag_groups = tuple(int(g) for g in self.object_tag_groups)
        self.object_tag_token_ids = tuple(tuple(int(i) for i in ids) for ids in self.object_tag_token_ids)
        self.object_place_token_ids = tuple(int(i) for i in self.object_place_token_ids)
        self.base_llm_layers = tuple(int(i) for i in self.base_llm_layers)
        self.object_orders = tuple(str(o) for o in self.object_orders)
        self.object_neighbour_words = bool(self.object_neighbour_words)
        self.object_neighbour_marker_token_id = int(self.object_neighbour_marker_token_id)
        self.pixel_mean = tuple(float(v) for v in self.pixel_mean)  # type: ignore[assignment]
        self.pixel_std = tuple(float(v) for v in self.pixel_std)  # type: ignore[assignment]
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def uses_clip(self) -> bool:
        return self.image_encoder == "clip"

    @property
    def image_size(self) -> int:
        """S: the square side the image is resized and padded to."""
        return int(self.vision.image_size) if self.vision is not None else int(self.encoder_image_size)

    @property
    def patch_size(self) -> int:
        """Pixels per cell of scale 0: CLIP's patch, or the CNN's stride 16."""
        return int(self.vision.patch_size) if self.vision is not None else CNN_FEATURE_STRIDES[1]

    @property
    def vision_grid(self) -> int:
        """G: patches per side at the run size (32 released)."""
        return self.image_size // self.patch_size

    @property
    def pretrained_vision_grid(self) -> int:
        """Patches per side of the CLIP checkpoint's own position table (24 for CLIP-L/14-336)."""
        return self.vision_pretrained_image_size // self.patch_size

    @property
    def mask_resolution(self) -> int:
        """M: side of the low-res mask logits (4 G = 128 released)."""
        return 4 * self.vision_grid

    @property
    def image_token_len(self) -> int:
        """Number of image tokens the LLM sees (g*g = 256 released; with a CNN, K object slots of
        ``object_words`` tokens each, once per order of ``object_orders``)."""
        if self.uses_clip:
            return self.llm_image_grid * self.llm_image_grid
        return self.object_tokens * self.object_words * len(self.object_orders)

    @property
    def object_words(self) -> int:
        """LLM tokens per object slot with a CNN encoder: its token, its attribute words, its two place
        words, the neighbour marker, its nearest neighbour's attribute words."""
        return (1 + len(self.object_tag_groups) * (2 if self.object_neighbour_words else 1)
                + (len(OBJECT_PLACE_AXES) if self.object_place_token_ids else 0)
                + (1 if self.object_neighbour_marker_token_id >= 0 else 0))

    @property
    def seg_tokens_per_target(self) -> int:
        """N*L: seg tokens written per target (6 released)."""
        return self.seg_tokens_per_scale * self.num_scales

    @property
    def hidden_size(self) -> int:
        return int(self.text.hidden_size)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ValueError(f"image_encoder must be one of {IMAGE_ENCODERS}, got {self.image_encoder!r}")
        if self.prompt_template not in PROMPT_TEMPLATES:
            raise ValueError(f"prompt_template must be one of {PROMPT_TEMPLATES}, got {self.prompt_template!r}")
        if not self.uses_clip:
            self._validate_cnn()
            return
        if self.vision is None:
            raise ValueError("a CLIP image encoder needs a vision config")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {self.fusion!r}")
        if self.llm_image_resize not in LLM_IMAGE_RESIZES:
            raise ValueError(f"llm_image_resize must be one of {LLM_IMAGE_RESIZES}, got {self.llm_image_resize!r}")
        if self.image_size % self.patch_size != 0:
            raise ValueError(f"image size {self.image_size} is not a multiple of patch {self.patch_size}")
        if self.vision_grid % self.llm_image_grid != 0:
            raise ValueError(f"llm_image_grid {self.llm_image_grid} must divide the vision grid {self.vision_grid}")
        if len(self.vision_select_layers) != self.num_scales:
            raise ValueError(
                f"vision_select_layers {self.vision_select_layers} must hold one index per scale ({self.num_scales})"
            )
        n_states = int(self.vision.num_hidden_layers) + 1
        for index in self.vision_select_layers:
            if not -n_states <= index < n_states:
                raise ValueError(f"vision layer {index} out of range for {n_states} hidden states")
        if self.seg_tokens_per_scale < 1 or self.num_scales < 1:
            raise ValueError("seg_tokens_per_scale and num_scales must be >= 1")
        if self.out_dim % self.decoder_num_heads != 0:
            raise ValueError(f"out_dim {self.out_dim} not divisible by decoder_num_heads {self.decoder_num_heads}")
        if (self.out_dim // self.decoder_attention_downsample) % self.decoder_num_heads != 0:
            raise ValueError("out_dim / decoder_attention_downsample must be divisible by decoder_num_heads")
        if self.out_dim % 2 != 0:
            raise ValueError("out_dim must be even (random positional encoding uses out_dim/2 frequencies)")

    def _validate_cnn(self) -> None:
        if self.vision is not None:
            raise ValueError(f"a {self.image_encoder} image encoder takes no CLIP vision config")
        if self.num_scales != 2 or self.decoder_upsample_scales:
            raise ValueError("a CNN encoder feeds the decoder two scales at G and 2G: num_scales 2, decoder_upsample_scales False")
        if self.encoder_image_size % CNN_FEATURE_STRIDES[-1] != 0:
            raise ValueError(f"encoder_image_size {self.encoder_image_size} must be a multiple of {CNN_FEATURE_STRIDES[-1]}")
        if self.object_tokens < 1 or self.object_classes < 1 or not 0.0 < self.object_threshold < 1.0:
            raise ValueError("object_tokens and object_classes must be >= 1 and object_threshold in (0, 1)")
        if not 0.0 <= self.object_duplicate_radius < 1.0:
            raise ValueError(f"object_duplicate_radius must be in [0, 1), got {self.object_duplicate_radius}")
        if not 0.0 <= self.object_attribute_circle < 1.0:
            raise ValueError(f"object_attribute_circle must be in [0, 1), got {self.object_attribute_circle}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {self.fusion!r}")
        if self.object_tag_groups:
            if len(self.object_tag_token_ids) != len(self.object_attributes):
                raise ValueError("object_tag_token_ids needs one tuple of word ids per attribute group")
            for group, (size, ids) in enumerate(zip(self.object_attributes, self.object_tag_token_ids)):
                if group in self.object_tag_groups and len(ids) != size:
                    raise ValueError(f"attribute group {group} has {size} values but {len(ids)} word ids")
            if not all(0 <= g < len(self.object_attributes) for g in self.object_tag_groups):
                raise ValueError(f"object_tag_groups {self.object_tag_groups} names a group that does not exist")
        if len(self.object_place_token_ids) == 1:
            raise ValueError("object_place_token_ids needs at least two bins (or none)")
        if not self.object_orders or len(set(self.object_orders)) != len(self.object_orders) or not set(
                self.object_orders) <= set(OBJECT_ORDERS):
            raise ValueError(f"object_orders must name distinct orders of {OBJECT_ORDERS}, got {self.object_orders}")
        if self.object_neighbour_words and not self.object_tag_groups:
            raise ValueError("object_neighbour_words are the nearest object's attribute words: object_tag_groups needs a group")
        if self.object_neighbour_marker_token_id >= 0 and not self.object_neighbour_words:
            raise ValueError("object_neighbour_marker_token_id is written before the neighbour's words: "
                             "it needs object_neighbour_words")
        if self.object_neighbour_marker_token_id >= int(self.text.vocab_size):
            raise ValueError(f"object_neighbour_marker_token_id {self.object_neighbour_marker_token_id} is outside "
                             f"the vocabulary ({self.text.vocab_size})")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (our own save format); inverse of from_dict()."""
        payload: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (f.name == "text" or f.name == "vision") and value is not None:
                # where the sub-config was read from (a path on the machine that trained) is not the model's
                value = {k: v for k, v in value.to_dict().items() if k != "_name_or_path"}
            elif isinstance(value, tuple):
                value = list(value)
            payload[f.name] = value
        payload["format"] = "pixellm_ros"
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> PixelLMConfig:
        data = dict(payload)
        data.pop("format", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown PixelLMConfig fields: {sorted(unknown)}")
        data["text"] = LlamaConfig.from_dict(dict(data["text"]))
        data["vision"] = CLIPVisionConfig.from_dict(dict(data["vision"])) if data.get("vision") is not None else None
        return cls(**data)

    # ------------------------------------------------------------------ presets
    @classmethod
    def released_7b(cls, vocab_size: int = LLAMA_BASE_VOCAB + RELEASED_ADDED_TOKENS) -> PixelLMConfig:
        """PixelLM-7B: LLaVA-Lightning-7B-v1-1 (Vicuna / LLaMA-1), CLIP-L/14-336 at 448."""
        return cls(
            text=llama_text_config(
                vocab_size=vocab_size, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6,
            ),
            vision=clip_vit_large_patch14_336(448),
        )

    @classmethod
    def released_13b(cls, vocab_size: int = LLAMA_BASE_VOCAB + RELEASED_ADDED_TOKENS) -> PixelLMConfig:
        """PixelLM-13B: LLaVA Llama-2-13B-chat lightning preview, CLIP-L/14-336 at 448.

        Llama-2 defaults (4096 positions, rms eps 1e-5) are assumed; a real folder's config.json,
        read by released_config.config_from_released_json(), always wins over this preset.
        """
        return cls(
            text=llama_text_config(
                vocab_size=vocab_size, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                num_attention_heads=40, max_position_embeddings=4096, rms_norm_eps=1e-5,
            ),
            vision=clip_vit_large_patch14_336(448),
        )

    @classmethod
    def tiny(cls, vocab_size: int = 128 + RELEASED_ADDED_TOKENS, image_size: int = 112) -> PixelLMConfig:
        """A few-MB model for tests: G = image_size/14 (8 at 112), LLM grid G/2, width 64."""
        vision = clip_vision_config(32, 64, 4, 4, image_size)
        text = llama_text_config(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=512, rms_norm_eps=1e-6,
        )
        return cls(
            text=text,
            vision=vision,
            vision_pretrained_image_size=84,
            vision_select_layers=(-2, -4),
            vision_tower_name="tiny-clip",
            llm_image_grid=(image_size // 14) // 2,
            out_dim=32,
            decoder_mlp_dim=64,
            decoder_num_heads=4,
            decoder_upscale_channels=4,
            iou_head_hidden_dim=32,
            mask_in_chans=8,
            max_new_tokens=64,
        )


def llama_text_config(**kwargs: Any) -> LlamaConfig:
    """A LlamaConfig with the released models' token ids (bos 1, eos 2, pad 0), SiLU and untied
    embeddings; ``kwargs`` override them and give the sizes. ``rope_theta`` becomes transformers 5's
    ``rope_parameters``; a ``rope_scaling`` is refused (no PixelLM checkpoint uses one)."""
    base: dict[str, Any] = {
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
    }
    base.update(kwargs)
    rope_theta = base.pop("rope_theta", None)
    rope_scaling = base.pop("rope_scaling", None)
    if rope_scaling is not None:
        raise ValueError(f"rope_scaling {rope_scaling!r} is not used by any PixelLM checkpoint")
    if rope_theta is not None:
        base["rope_parameters"] = {"rope_type": "default", "rope_theta": float(rope_theta)}
    return LlamaConfig(**base)
