"""Loading the engine for the node's settings (``PixelLMEngine.release`` gives its memory back)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .params import NodeSettings

if TYPE_CHECKING:
    from pixellm_ros.engine import PixelLMEngine


def load_engine(settings: NodeSettings) -> PixelLMEngine:
    """Build the engine the settings describe (model.path empty -> the embedded default model)."""
    from pixellm_ros.engine import PixelLMEngine  # torch and the model load here, not at import

    engine = PixelLMEngine.from_pretrained(
        model_dir=settings.model_path,
        clip_dir=settings.clip_path,
        device=settings.device,
        dtype=settings.dtype,
        load_in=settings.load_in,
        decode_mode=settings.decode_mode,
        mask_threshold=settings.mask_threshold,
    )
    if settings.max_batch > 1:  # static / CUDA-graph modes: every batch on one row count, one graph
        engine.static_batch_rows = settings.max_batch
    return engine
