"""Loading the engine for the node's settings, and giving its memory back (GPU memory included)."""

from __future__ import annotations

import gc
import math
from typing import TYPE_CHECKING

from .params import NodeSettings

if TYPE_CHECKING:
    from pixellm_ros.engine import PixelLMEngine


def probability_to_logit(probability: float) -> float:
    """The engine thresholds mask logits; the parameter is a probability in (0, 1)."""
    return math.log(probability / (1.0 - probability))


def load_engine(settings: NodeSettings) -> PixelLMEngine:
    """Build the engine the settings describe (model.path empty -> the embedded default model)."""
    from pixellm_ros.engine import PixelLMEngine  # torch and the model load here, not at import

    return PixelLMEngine.from_pretrained(
        model_dir=settings.model_path,
        clip_dir=settings.clip_path,
        device=settings.device,
        dtype=settings.dtype,
        load_in=settings.load_in,
        mask_threshold=probability_to_logit(settings.mask_threshold),
    )


def release_engine(engine: PixelLMEngine) -> None:
    """Free the model: the engine drops its weights and caches, then CUDA's allocator cache is emptied
    so that the memory shows as free to other processes (nvidia-smi), not only to this one."""
    engine.release()
    gc.collect()
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
