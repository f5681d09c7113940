"""The inference engine: ``PixelLMEngine.segment(image, instruction) -> SegmentationResult``.

Plain Python, no ROS. See docs/architecture.md ("Engine contract").
"""

from __future__ import annotations

from .errors import (
    EngineError,
    InvalidImageError,
    InvalidInputError,
    InvalidInstructionError,
    InvalidOptionError,
)
from .result import SegmentationResult, Target

__all__ = [
    "BatchRequest",
    "BatchSession",
    "CLIP_CONFIG_FILES",
    "DECODE_MODES",
    "DTYPE_NAMES",
    "EngineError",
    "InvalidImageError",
    "InvalidInputError",
    "InvalidInstructionError",
    "InvalidOptionError",
    "LOAD_IN_CHOICES",
    "LoadOptionError",
    "LoadOptions",
    "MODEL_CONFIG_FILES",
    "PixelLMEngine",
    "SegmentationResult",
    "Target",
    "resolve_device",
    "resolve_dtype",
    "resolve_load_in",
    "resolve_load_options",
]

# Imported on first use: the engine and the load options pull in torch, transformers and the
# model; results and errors do not, so a consumer that only reads results (the ROS conversions)
# stays light. The load options are the model's (model/load_options.py), offered here so that
# layers above the engine (the ROS node's parameters) check device, dtype and load_in by the
# same rules as the loader without importing the model.
_LOAD_OPTIONS = frozenset({
    "DTYPE_NAMES", "LOAD_IN_CHOICES", "LoadOptionError", "LoadOptions",
    "resolve_device", "resolve_dtype", "resolve_load_in", "resolve_load_options",
})


def __getattr__(name: str) -> object:
    if name in ("PixelLMEngine", "DECODE_MODES", "MODEL_CONFIG_FILES", "CLIP_CONFIG_FILES"):
        from . import engine

        return getattr(engine, name)
    if name in _LOAD_OPTIONS:
        from pixellm_ros.model import load_options

        return getattr(load_options, name)
    if name in ("BatchRequest", "BatchSession"):
        from . import batching

        return getattr(batching, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
