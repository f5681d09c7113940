"""Depth images: uint16 millimetres or float32 metres, decoded to metres with validity.

A camera publishes depth as ``16UC1`` (uint16 millimetres, 0 = no reading) or ``32FC1``
(float32 metres, 0 / NaN / inf = no reading). Both are kept as they arrived and decoded only
where a target looks (``metres_at``), so a frame costs nothing until a target asks for depth.
Invalid readings come back as NaN; negative float depths are invalid too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MILLIMETRE = 0.001


class DepthError(ValueError):
    """A depth array that cannot be used; the text says why."""


@dataclass(frozen=True)
class DepthImage:
    """One depth frame: ``raw`` (H, W) uint16 millimetres or float32 metres, as received."""

    raw: np.ndarray

    def __post_init__(self) -> None:
        raw = self.raw
        if not isinstance(raw, np.ndarray) or raw.ndim != 2:
            shape = getattr(raw, "shape", None)
            raise DepthError(f"a depth image is a 2-D array (H, W), got shape {shape}")
        if raw.dtype not in (np.uint16, np.float32):
            raise DepthError(f"depth must be uint16 millimetres or float32 metres, got {raw.dtype}")
        if raw.shape[0] == 0 or raw.shape[1] == 0:
            raise DepthError(f"zero-size depth image {raw.shape[1]}x{raw.shape[0]}")

    @property
    def width(self) -> int:
        return int(self.raw.shape[1])

    @property
    def height(self) -> int:
        return int(self.raw.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return (self.width, self.height)

    @property
    def in_millimetres(self) -> bool:
        return self.raw.dtype == np.uint16

    def metres_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Depth in metres (float32) at integer pixel positions; NaN where there is no valid reading."""
        values = self.raw[rows, cols]
        if self.in_millimetres:
            metres = values.astype(np.float32) * np.float32(MILLIMETRE)
            metres[values == 0] = np.nan
            return metres
        metres = values.astype(np.float32, copy=True)
        metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
        return metres

    def to_metres(self) -> np.ndarray:
        """(H, W) float32 metres of the whole frame, NaN where invalid."""
        rows, cols = np.indices(self.raw.shape, sparse=True)
        return self.metres_at(rows, cols)

    def valid_fraction(self) -> float:
        """Share of pixels with a valid reading."""
        return float(np.isfinite(self.to_metres()).mean())
