"""Draw a SegmentationResult over its image: coloured masks, outlines, boxes and names (OpenCV).

Shared by the CLI (overlay.png) and the ROS node (the debug image topic).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import cv2
import numpy as np

from .result import SegmentationResult

# Distinct, saturated RGB colours (tab10-like), cycled over targets.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def target_color(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def draw_overlay(image: np.ndarray, result: SegmentationResult, alpha: float = 0.5, draw_boxes: bool = True) -> np.ndarray:
    """A copy of ``image`` ((H, W, 3) uint8 RGB) with every target drawn on it.

    Masks are blended with ``alpha``, outlined, boxed, and labelled "name score" at the top-left
    of their box. Returns (H, W, 3) uint8 RGB.
    """
    return draw_targets(image, [DrawnTarget(t.mask, t.box, f"{t.name} {t.score:.2f}", index)
                                for index, t in enumerate(result.targets)], alpha, draw_boxes)


class DrawnTarget(NamedTuple):
    """One thing ``draw_targets`` draws: its (H, W) bool mask, (x0, y0, x1, y1) box, label, and the
    key its colour is chosen by (a target's index, a track's id: the same key, the same colour)."""

    mask: np.ndarray
    box: tuple[int, int, int, int]
    label: str
    key: int


def draw_targets(image: np.ndarray, targets: Sequence[DrawnTarget], alpha: float = 0.5,
                 draw_boxes: bool = True) -> np.ndarray:
    """A copy of ``image`` ((H, W, 3) uint8 RGB) with ``targets`` drawn on it (see ``draw_overlay``)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    canvas = image.copy()
    height, width = canvas.shape[:2]
    scale = max(0.4, min(height, width) / 640.0)
    thickness = max(1, int(round(2 * scale)))
    for index, target in enumerate(targets):
        if target.mask.shape != (height, width):
            raise ValueError(f"target {index} mask {target.mask.shape} does not match the image {(height, width)}")
        color = np.array(target_color(target.key), dtype=np.float32)
        region = target.mask
        canvas[region] = (canvas[region].astype(np.float32) * (1 - alpha) + color * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, target_color(target.key), thickness)
    for target in targets:
        if not target.mask.any():
            continue
        x0, y0, x1, y1 = target.box
        if draw_boxes:
            cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), target_color(target.key), thickness)
        _draw_label(canvas, target.label, (x0, y0), target_color(target.key), scale)
    return canvas


def _draw_label(canvas: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], scale: float) -> None:
    """White text on a filled box of the target's colour, kept inside the image."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = 0.5 * scale
    thickness = max(1, int(round(scale)))
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, thickness)
    height, width = canvas.shape[:2]
    x = int(min(max(corner[0], 0), max(width - text_w - 2, 0)))
    y = int(max(corner[1], text_h + baseline + 2))  # above the box when there is room, else inside
    cv2.rectangle(canvas, (x, y - text_h - baseline - 2), (x + text_w + 2, y), color, cv2.FILLED)
    cv2.putText(canvas, text, (x + 1, y - baseline - 1), font, font_scale, (255, 255, 255), thickness, cv2.LINE_AA)
