"""Dense optical flow on a region of interest at reduced resolution, and the rigid motion of a set
of pixels read from it.

``RoiFlow`` runs OpenCV's DIS optical flow (Kroeger et al., ECCV 2016) between two grey images
already scaled by ``scale``, only inside one rectangle (the union of the tracks' boxes plus a
margin): most of a 640x480 frame holds no track. ``FlowField.displacement`` reads the flow at
full-resolution points; ``fit_similarity`` turns displacements into one similarity transform
(rotation, uniform scale, translation: an object sliding and turning on a table, and the zoom of a
camera moving towards it) with RANSAC, so the pixels of an occluder or of the background that the
flow smears over an object's edge do not bend its motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FlowField:
    """Flow from one frame to the next inside ``roi`` (x0, y0, x1, y1, full-resolution pixels).

    flow: (h, w, 2) float32 in SCALED pixels (the grid of ``roi`` times ``scale``).
    """

    roi: Box
    scale: float
    flow: np.ndarray

    def displacement(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution displacement (N, 2) of full-resolution points (N, 2) (x, y), and which
        of them lie inside the field (N,) bool (the others read 0)."""
        x0, y0, x1, y1 = self.roi
        inside = (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
        h, w = self.flow.shape[:2]
        cols = np.clip(((points[:, 0] - x0) * self.scale).astype(np.int64), 0, w - 1)
        rows = np.clip(((points[:, 1] - y0) * self.scale).astype(np.int64), 0, h - 1)
        moved = self.flow[rows, cols].astype(np.float64) / self.scale
        moved[~inside] = 0.0
        return moved, inside


class RoiFlow:
    """DIS optical flow between scaled grey frames, inside a region of interest."""

    def __init__(self, preset: str = "fast", scale: float = 0.5) -> None:
        if preset not in PRESETS:
            raise ValueError(f"flow preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if not 0.1 <= scale <= 1.0:
            raise ValueError(f"flow scale must be in [0.1, 1], got {scale}")
        self.scale = scale
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])

    def shrink(self, grey: np.ndarray) -> np.ndarray:
        """The grey frame (H, W) uint8 at the flow's scale."""
        if self.scale == 1.0:
            return grey
        h, w = grey.shape
        size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)

    def compute(self, previous: np.ndarray, current: np.ndarray, roi: Box) -> FlowField:
        """Flow from ``previous`` to ``current`` (both scaled grey frames from ``shrink``) inside
        ``roi`` (full-resolution box); the box is snapped outwards to the scaled grid."""
        h, w = previous.shape
        s = self.scale
        c0, r0 = int(np.floor(roi[0] * s)), int(np.floor(roi[1] * s))
        c1, r1 = min(w, int(np.ceil(roi[2] * s))), min(h, int(np.ceil(roi[3] * s)))
        c0, r0 = max(0, min(c0, c1 - 8)), max(0, min(r0, r1 - 8))  # DIS wants a few pixels
        flow = self._dis.calc(np.ascontiguousarray(previous[r0:r1, c0:c1]),
                              np.ascontiguousarray(current[r0:r1, c0:c1]), None)
        snapped = (round(c0 / s), round(r0 / s), round(c1 / s), round(r1 / s))
        return FlowField(roi=snapped, scale=s, flow=flow)


def fit_similarity(points: np.ndarray, moved: np.ndarray, threshold_px: float = 1.5) -> np.ndarray | None:
    """(2, 3) similarity taking ``points`` (N, 2) to ``points + moved``, by RANSAC; None with fewer
    than 3 points or when no consistent motion is found. 3 to 5 points: their median translation."""
    if len(points) < 3:
        return None
    if len(points) < 6:
        shift = np.median(moved, axis=0)
        return np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    transform, inliers = cv2.estimateAffinePartial2D(
        points.astype(np.float32), (points + moved).astype(np.float32), method=cv2.RANSAC,
        ransacReprojThreshold=threshold_px, maxIters=100, confidence=0.99, refineIters=5)
    if transform is None or inliers is None or int(np.count_nonzero(inliers)) < 3:
        return None
    return transform.astype(np.float64)


def compose(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """(2, 3) affine ``after`` applied after ``before`` (both (2, 3))."""
    return after[:, :2] @ before + np.concatenate([np.zeros((2, 2)), after[:, 2:]], axis=1)


def union_box(boxes: list[Box], margin: int, width: int, height: int) -> Box | None:
    """The smallest box around ``boxes`` grown by ``margin``, clipped to the image; None for no boxes."""
    if not boxes:
        return None
    a = np.asarray(boxes)
    x0 = max(0, int(a[:, 0].min()) - margin)
    y0 = max(0, int(a[:, 1].min()) - margin)
    x1 = min(width, int(a[:, 2].max()) + margin)
    y1 = min(height, int(a[:, 3].max()) + margin)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
