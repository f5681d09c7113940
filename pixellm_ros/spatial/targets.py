"""Per-target 3D from a mask, an aligned depth image and the camera's intrinsics.

``AlignedDepth`` prepares one frame (once per result): the depth, the intrinsics at the COLOUR
image's size, and how colour pixels map onto depth pixels. ``AlignedDepth.target`` then turns one
mask (full frame, or cropped with its offset) into a ``Target3D``:

1. the mask's pixels inside its box; a CORE of them: the mask eroded by ``erode_px`` (a square
   (2e+1)^2 kernel, the mask's outside counts as background), so the pixels a segmenter bleeds
   over the object's edge onto the background are not used for the statistics and the centroid
   (when erosion leaves fewer than ``min_points`` valid pixels, the whole mask is the core:
   ``Target3D.eroded`` is False);
2. depth at each pixel (nearest depth pixel when the depth has another resolution than colour);
   0 / NaN / inf readings are dropped;
3. depth outliers: with ``mad_k`` set, pixels whose depth is more than
   ``max(mad_k * 1.4826 * MAD, band_extent * lateral size, min_band_m)`` from the core's median
   depth are dropped (MAD: the core's median absolute deviation, 1.4826 MAD estimates a
   Gaussian's sigma; lateral size: the mask box's larger side at the median depth). The floor
   keeps objects with two depth levels (a cup's rim and its floor) whole: MAD alone, taken where
   most pixels see the floor, cut the rim off;
4. each remaining pixel back-projected along its (undistorted) ray: x = z * (x_n, y_n, 1);
5. centroid: mean of the core's points; boxes: axis-aligned and oriented (``box``) around the
   points of the WHOLE mask that survived step 3, so the box keeps the object's rim that the
   erosion left out. The oriented box's third axis is the points' least-spread principal axis
   (the visible surface's normal, towards the camera); its first two axes are those of the
   smallest-area rectangle around the points projected on that plane, long side first
   (``box_in_plane="min_area"``; "pca" keeps the principal axes, which are arbitrary for square
   and round footprints: measured, the rectangle's box is 28% smaller for the world's boxes, median).

Fewer than ``min_points`` valid points: ``ok`` is False and ``reason`` says why; nothing else is
computed. The defaults are the choices ``benchmarks/spatial_choices.py`` measured on the world's
ground truth (see ``Targets3DOptions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import cv2
import numpy as np

from pixellm_ros.spatial.box import Box3D, aligned_box_of_columns, oriented_box_of_columns
from pixellm_ros.spatial.depth import DepthImage
from pixellm_ros.spatial.intrinsics import IntrinsicsError, PinholeIntrinsics, check_same_aspect

MAD_TO_SIGMA = 1.4826
MAD_SAMPLES = 2048

BoxKind = Literal["oriented", "aligned"]


@dataclass(frozen=True)
class Targets3DOptions:
    """How masks become 3D; the defaults are measured (``benchmarks/spatial_choices.py``)."""

    erode_px: int = 2  # core = mask eroded by this many pixels (0 = no erosion)
    mad_k: float | None = 3.0  # depth outlier band in robust sigmas around the core's median; None = off
    band_extent: float = 1.0  # ... nor narrower than this times the target's lateral size (0 = no floor)
    min_band_m: float = 0.02  # ... nor than this (flat surfaces have a MAD near 0)
    min_points: int = 30  # fewer valid points than this: no 3D
    box: BoxKind = "oriented"  # which box ``Target3D.box`` is (both are computed)
    box_points: Literal["mask", "core"] = "mask"  # the boxes hold the whole mask's inliers, or the core's
    box_in_plane: Literal["pca", "min_area"] = "min_area"  # oriented box's in-plane axes: PCA | min-area rectangle
    keep_points: bool = True  # keep the points (N, 3) for point clouds

    def __post_init__(self) -> None:
        if self.erode_px < 0:
            raise ValueError(f"erode_px must be >= 0, got {self.erode_px}")
        if self.mad_k is not None and self.mad_k <= 0:
            raise ValueError(f"mad_k must be > 0 or None, got {self.mad_k}")
        if self.band_extent < 0:
            raise ValueError(f"band_extent must be >= 0, got {self.band_extent}")
        if self.min_band_m < 0:
            raise ValueError(f"min_band_m must be >= 0, got {self.min_band_m}")
        if self.min_points < 1:
            raise ValueError(f"min_points must be >= 1, got {self.min_points}")
        if self.box_points not in ("mask", "core"):
            raise ValueError(f"box_points must be 'mask' or 'core', got {self.box_points!r}")
        if self.box_in_plane not in ("pca", "min_area"):
            raise ValueError(f"box_in_plane must be 'pca' or 'min_area', got {self.box_in_plane!r}")
        if self.box not in ("oriented", "aligned"):
            raise ValueError(f"box must be 'oriented' or 'aligned', got {self.box!r}")


@dataclass(frozen=True)
class Target3D:
    """One target in 3D, camera optical frame, metres. ``ok`` False: only the counts and ``reason``."""

    ok: bool
    reason: str  # "" when ok
    num_points: int  # valid depth points the centroid used (the core's inliers)
    num_box_points: int  # points the boxes hold (the whole mask's inliers)
    num_mask_pixels: int  # pixels of the mask
    num_valid: int  # mask pixels with a valid depth reading (before outlier rejection)
    eroded: bool = False  # the core is the eroded mask (False: the whole mask)
    centroid: np.ndarray | None = None  # (3,) float64
    box: Box3D | None = None  # the kind ``Targets3DOptions.box`` names
    aligned_box: Box3D | None = None
    oriented_box: Box3D | None = None
    points: np.ndarray | None = field(default=None, repr=False)  # (num_box_points, 3) float32

    @staticmethod
    def failed(reason: str, mask_pixels: int = 0, valid: int = 0) -> Target3D:
        return Target3D(ok=False, reason=reason, num_points=0, num_box_points=0, num_mask_pixels=mask_pixels,
                        num_valid=valid)


class AlignedDepth:
    """A depth frame aligned with a colour image of ``image_size`` (width, height), with intrinsics.

    Args:
        depth: the depth frame; its size may differ from the colour image's if the aspect ratio is
            the same (each colour pixel reads its nearest depth pixel).
        intrinsics: the camera's (from camera_info), for any size of the colour image's aspect
            ratio; scaled to the colour image.
        image_size: (width, height) of the colour image the masks belong to.

    Raises:
        IntrinsicsError: aspect ratios that differ (intrinsics vs colour, depth vs colour).
    """

    def __init__(self, depth: DepthImage, intrinsics: PinholeIntrinsics, image_size: tuple[int, int]) -> None:
        width, height = int(image_size[0]), int(image_size[1])
        self.depth = depth
        self.image_size = (width, height)
        self.intrinsics = intrinsics.scaled_to(width, height)
        if depth.size != (width, height):
            check_same_aspect(depth.size, (width, height), "the depth image", "the colour image")
            # Colour pixel centre (u + 0.5) / W of the way across -> the depth pixel holding it.
            self._col_map = np.minimum(((np.arange(width) + 0.5) * depth.width / width).astype(np.intp),
                                       depth.width - 1)
            self._row_map = np.minimum(((np.arange(height) + 0.5) * depth.height / height).astype(np.intp),
                                       depth.height - 1)
        else:
            self._col_map = self._row_map = None
        if self.intrinsics.is_distorted:
            self._grid = self.intrinsics.normalised_grid()
            self._x_n = self._y_n = None
        else:
            self._grid = None
            self._x_n, self._y_n = self.intrinsics.normalised_columns_rows()

    def targets(self, masks: Sequence[np.ndarray], boxes: Sequence[Sequence[int] | None] | None = None,
                options: Targets3DOptions = Targets3DOptions()) -> list[Target3D]:
        """``target`` for each full-frame mask (with its box (x0, y0, x1, y1) when known)."""
        boxes = boxes if boxes is not None else [None] * len(masks)
        return [self.target(m, box=b, options=options) for m, b in zip(masks, boxes)]

    def target(self, mask: np.ndarray, offset: tuple[int, int] = (0, 0), box: Sequence[int] | None = None,
               options: Targets3DOptions = Targets3DOptions()) -> Target3D:
        """One mask in 3D (module docstring).

        Args:
            mask: (h, w) bool (or 0/non-0): the full frame (h, w = the colour image's height and
                width, offset (0, 0)) or a crop whose pixel (0, 0) is colour pixel ``offset``.
            offset: (x, y) of the mask's pixel (0, 0) in the colour image.
            box: optional (x0, y0, x1, y1) colour-image box (exclusive ends) holding every mask
                pixel, e.g. the engine target's box: saves finding it for a full-frame mask.
            options: erosion, outlier band, minimum points, box kind.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"a mask is (h, w), got shape {mask.shape}")
        if mask.dtype != np.bool_:
            mask = mask != 0
        ox, oy = int(offset[0]), int(offset[1])
        width, height = self.image_size
        if ox < 0 or oy < 0 or ox + mask.shape[1] > width or oy + mask.shape[0] > height:
            raise ValueError(f"a {mask.shape[1]}x{mask.shape[0]} mask at offset ({ox}, {oy}) does not fit in the"
                             f" {width}x{height} colour image")
        # The window (mask coordinates) holding every mask pixel.
        if box is not None:
            x0, y0, x1, y1 = (int(v) for v in box)
            x0, x1 = max(x0 - ox, 0), min(x1 - ox, mask.shape[1])
            y0, y1 = max(y0 - oy, 0), min(y1 - oy, mask.shape[0])
        else:
            x0, y0, bw, bh = cv2.boundingRect(mask.view(np.uint8))
            x1, y1 = x0 + bw, y0 + bh
        if x1 <= x0 or y1 <= y0:
            return Target3D.failed("the mask is empty")
        window = np.ascontiguousarray(mask[y0:y1, x0:x1])
        ys, xs = np.nonzero(window)
        if ys.size == 0:
            return Target3D.failed("the mask is empty")
        if options.erode_px > 0:
            kernel = np.ones((2 * options.erode_px + 1, 2 * options.erode_px + 1), np.uint8)
            core_window = cv2.erode(window.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
            in_core = core_window[ys, xs].view(np.bool_)
        else:
            in_core = np.ones(ys.size, dtype=bool)
        rows = ys + (y0 + oy)  # colour-image coordinates
        cols = xs + (x0 + ox)

        if self._row_map is None:
            z = self.depth.metres_at(rows, cols)
        else:
            z = self.depth.metres_at(self._row_map[rows], self._col_map[cols])
        valid = np.isfinite(z)
        num_valid = int(np.count_nonzero(valid))
        if num_valid < options.min_points:
            return Target3D.failed(_too_few_reason(num_valid, ys.size, options.min_points), ys.size, num_valid)
        if num_valid < ys.size:
            rows, cols, z, in_core = rows[valid], cols[valid], z[valid], in_core[valid]
        eroded = options.erode_px > 0 and int(np.count_nonzero(in_core)) >= options.min_points
        if not eroded:
            in_core = np.ones(z.size, dtype=bool)

        if options.mad_k is not None:
            core_z = z[in_core]
            # The statistics from an even spread of at most MAD_SAMPLES core pixels: the same
            # median to well under a millimetre, at a fraction of the cost on large masks.
            core_z = core_z[:: max(1, core_z.size // MAD_SAMPLES)]
            median = np.median(core_z)
            mad = np.median(np.abs(core_z - median))
            # The target's lateral size at its median depth: a rigid object's visible surface spans
            # about that much in depth, a background behind it usually more.
            extent = max((x1 - x0) / self.intrinsics.fx, (y1 - y0) / self.intrinsics.fy) * float(median)
            band = max(options.mad_k * MAD_TO_SIGMA * float(mad), options.band_extent * extent, options.min_band_m)
            keep = np.abs(z - median) <= band
            if not keep.all():
                rows, cols, z, in_core = rows[keep], cols[keep], z[keep], in_core[keep]
            num_core = int(np.count_nonzero(in_core))
            if num_core < options.min_points:
                return Target3D.failed(
                    f"only {num_core} depth points within {band * 100:.1f} cm of the median depth {median:.3f} m"
                    f" (need {options.min_points})", ys.size, num_valid)
        else:
            num_core = int(np.count_nonzero(in_core))

        if self._grid is None:
            x_n, y_n = self._x_n[cols], self._y_n[rows]
        else:
            ray = self._grid[rows, cols]
            x_n, y_n = ray[:, 0], ray[:, 1]
        xyz = np.empty((3, z.size), dtype=np.float32)  # rows x, y, z: contiguous for the reductions
        np.multiply(x_n, z, out=xyz[0])
        np.multiply(y_n, z, out=xyz[1])
        xyz[2] = z

        core = xyz if in_core.all() else xyz[:, in_core]
        centroid = core.mean(axis=1, dtype=np.float64)
        if options.box_points == "core":
            xyz = core
        aligned = aligned_box_of_columns(xyz)
        oriented = oriented_box_of_columns(xyz, in_plane=options.box_in_plane)
        return Target3D(
            ok=True, reason="", num_points=num_core, num_box_points=int(xyz.shape[1]), num_mask_pixels=int(ys.size),
            num_valid=num_valid, eroded=eroded, centroid=centroid,
            box=oriented if options.box == "oriented" else aligned, aligned_box=aligned, oriented_box=oriented,
            points=np.ascontiguousarray(xyz.T) if options.keep_points else None)


def _too_few_reason(num_valid: int, num_pixels: int, min_points: int) -> str:
    if num_valid == 0:
        return f"no valid depth (0, NaN or inf) under any of the mask's {num_pixels} pixels"
    return (f"only {num_valid} of the mask's {num_pixels} pixels have a valid depth (need {min_points}): too few"
            " points for a position")


__all__ = ["AlignedDepth", "IntrinsicsError", "Target3D", "Targets3DOptions"]
