"""The PixelLM network, one module per part (see docs/architecture.md, "Model contract")."""

from __future__ import annotations

from typing import Any

from .library_logs import quiet_known_library_warnings

quiet_known_library_warnings()  # first: importing the parts below imports transformers, which imports torchao

# ruff: noqa: E402
from .codebook import SegTokenFusion, group_seg_embeddings, seg_state_mask
from .config import PixelLMConfig
from .constants import IMAGE_TOKEN_INDEX
from .losses import IGNORE_INDEX, LossWeights
from .outputs import ImageFeatures, MaskOutput, PixelLMLosses
from .pixellm import PixelLMForCausalLM
from .vision import resize_clip_position_embeddings

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_TOKEN_INDEX",
    "ImageFeatures",
    "LossWeights",
    "MaskOutput",
    "PixelLMConfig",
    "PixelLMForCausalLM",
    "PixelLMLosses",
    "PixelLMTokenizer",
    "SegTokenFusion",
    "group_seg_embeddings",
    "resize_clip_position_embeddings",
    "seg_state_mask",
]


def __getattr__(name: str) -> Any:
    # The tokenizer lives in its own module (sentencepiece); import it on first use only.
    if name == "PixelLMTokenizer":
        from .tokenizer import PixelLMTokenizer

        return PixelLMTokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
