"""COCO segmentation <-> binary masks: polygons, uncompressed RLE, compressed RLE (MUSE's masks).

Polygons and compressed RLE are decoded by pycocotools (the reference implementation the MUSE
files were made with), imported when such a segmentation is met. Encoding writes UNCOMPRESSED
RLE — exact, and what ``pycocotools.mask.frPyObjects`` accepts, so the files also load in the
PixelLM research code's MUSE loader; decoding it is the inverse of ``encode_rle`` (run lengths
expanded in column-major order) and needs no pycocotools, so the world's own exports (all
uncompressed RLE) are read and scored on machines without it (the GPU training machine).

COCO RLE: the mask is read in column-major (Fortran) order; ``counts`` alternate run lengths
of 0s and 1s, starting with 0s (a leading 0 when the first pixel is set).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of a binary mask.

    Args:
        mask: (H, W) bool or 0/1.

    Returns:
        {"size": [H, W], "counts": [int, ...]} (JSON-serialisable).
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    # Run boundaries: positions where the value changes, framed by the start and the end.
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def _is_polygon_list(segmentation: Any) -> bool:
    return isinstance(segmentation, list) and all(
        isinstance(p, (list, tuple)) and all(isinstance(v, (int, float)) for v in p) for p in segmentation
    )


def _coco_mask() -> Any:
    """pycocotools.mask, imported on first use (only polygons and compressed RLE need it)."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError as error:  # pragma: no cover - depends on the machine
        raise ImportError(
            "decoding COCO polygons or compressed RLE needs pycocotools (pip install pycocotools); "
            "uncompressed RLE, which pixellm_ros writes, decodes without it"
        ) from error
    return coco_mask


def _is_uncompressed_rle(rle: Any) -> bool:
    return isinstance(rle, Mapping) and isinstance(rle.get("counts"), list) and "size" in rle


def decode_uncompressed_rle(rle: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """An uncompressed COCO RLE ({"size": [H, W], "counts": [int, ...]}) as a (H, W) bool mask:
    the inverse of ``encode_rle``. Raises ValueError for a size other than (height, width) or
    counts that do not add up to H * W."""
    h, w = (int(v) for v in rle["size"])
    if (h, w) != (height, width):
        raise ValueError(f"RLE size {(h, w)} does not match the image size {(height, width)}")
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any() or int(counts.sum()) != h * w:
        raise ValueError(f"RLE counts must be non-negative run lengths adding up to {h * w} pixels")
    values = np.arange(counts.size) % 2 == 1  # runs alternate 0s, 1s, starting with 0s
    return np.repeat(values, counts).reshape((h, w), order="F")


def _rle_objects(segmentation: Any, height: int, width: int) -> list[dict[str, Any]]:
    """pycocotools RLE objects (compressed) for any COCO segmentation form."""
    coco_mask = _coco_mask()
    if isinstance(segmentation, Mapping):
        segmentation = [segmentation]
    if _is_polygon_list(segmentation):
        # A polygon needs 3 points; degenerate ones (seen in real annotations) cover nothing.
        polygons = [list(map(float, p)) for p in segmentation if len(p) >= 6]
        return coco_mask.frPyObjects(polygons, height, width) if polygons else []
    if not isinstance(segmentation, Sequence):
        raise ValueError(f"unsupported segmentation type {type(segmentation).__name__}")
    out = []
    for rle in segmentation:
        if not isinstance(rle, Mapping) or "counts" not in rle or "size" not in rle:
            raise ValueError(f"not a COCO RLE: {rle!r:.80}")
        h, w = (int(v) for v in rle["size"])
        if (h, w) != (height, width):
            raise ValueError(f"RLE size {(h, w)} does not match the image size {(height, width)}")
        counts = rle["counts"]
        if isinstance(counts, list):
            out.append(coco_mask.frPyObjects({"size": [h, w], "counts": counts}, h, w))
        elif isinstance(counts, (str, bytes)):
            out.append({"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts})
        else:
            raise ValueError(f"RLE counts must be a list, str or bytes, got {type(counts).__name__}")
    return out


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation as a binary mask.

    Args:
        segmentation: polygons ``[[x0, y0, x1, y1, ...], ...]``, an RLE dict
            ``{"size": [H, W], "counts": [...] | "..."}`` (uncompressed or compressed), or a list
            of RLE dicts. Several parts are united.
        height, width: the image size.

    Returns:
        (height, width) bool.
    """
    parts = [segmentation] if isinstance(segmentation, Mapping) else segmentation
    if isinstance(parts, Sequence) and parts and all(_is_uncompressed_rle(p) for p in parts):
        mask = np.zeros((height, width), dtype=bool)
        for part in parts:
            mask |= decode_uncompressed_rle(part, height, width)
        return mask
    rles = _rle_objects(segmentation, height, width)
    if not rles:
        return np.zeros((height, width), dtype=bool)
    coco_mask = _coco_mask()
    merged = coco_mask.merge(rles) if len(rles) > 1 else rles[0]
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips numpy 2's __array__(copy=...) deprecation; harmless.
        warnings.filterwarnings("ignore", message=r"__array__ implementation", category=DeprecationWarning)
        return coco_mask.decode(merged).astype(bool)


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO box [x, y, w, h] tight around the set pixels; [0, 0, 0, 0] for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]
