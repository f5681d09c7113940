"""The inference engine: ``PixelLMEngine.segment(image, instruction) -> SegmentationResult``.

Plain Python, no ROS. See docs/architecture.md ("Engine contract").
"""

from __future__ import annotations

from .errors import EngineError, InvalidInputError
from .result import SegmentationResult, Target

__all__ = [
    "BatchRequest", "BatchSession", "EngineError", "InvalidInputError", "PixelLMEngine", "SegmentationResult", "Target",
]


def __getattr__(name: str) -> object:
    # The engine pulls in torch, transformers and the model; results and errors do not, so a
    # consumer that only reads results (the ROS conversions) stays light.
    if name == "PixelLMEngine":
        from .engine import PixelLMEngine

        return PixelLMEngine
    if name in ("BatchRequest", "BatchSession"):
        from . import batching

        return getattr(batching, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
