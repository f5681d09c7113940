"""Pinhole intrinsics: the camera matrix, the image size it belongs to, and lens distortion.

Conventions: pixel centres at integer coordinates (OpenCV and ROS ``camera_info``), the camera
optical frame x right, y down, z forward (REP 103). A pixel (u, v) looks along the ray
``(x_n, y_n, 1)`` in normalised coordinates; a depth z (along the optical axis) puts it at
``z * (x_n, y_n, 1)``.

Distortion: ``coefficients`` all zero (or none) is a plain pinhole, whatever the model's name.
Non-zero coefficients are handled for ``plumb_bob`` and ``rational_polynomial`` (OpenCV's
k1, k2, p1, p2, k3[, k4, k5, k6], through ``cv2.undistortPoints``) and ``equidistant`` (fisheye
k1..k4, ``cv2.fisheye.undistortPoints``): the depth image is taken to be registered to the
DISTORTED colour image (as camera drivers publish aligned depth), so each pixel's ray is
undistorted, never the image. Any other model with non-zero coefficients is refused
(``IntrinsicsError``): rectify the images and publish zero distortion instead.

Another resolution: ``scaled_to`` rescales the intrinsics to another image size of the same
aspect ratio (a camera's binned or resized stream); a different aspect ratio (a cropped stream)
is refused, because no scaling maps the one onto the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# Relative difference of width/height ratios still taken as the same aspect (integer sizes:
# 640x480 vs 1280x960 exactly, 848x480 vs 424x240 exactly, 1280x720 vs 640x360 exactly; odd
# halvings such as 1281x721 -> 640x360 differ by ~1e-3).
ASPECT_TOLERANCE = 2e-3

DISTORTION_MODELS: tuple[str, ...] = ("plumb_bob", "rational_polynomial", "equidistant")


class IntrinsicsError(ValueError):
    """Intrinsics that cannot be used (or scaled); the text says what to fix."""


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Camera matrix entries (pixels) for an image of ``width`` x ``height`` pixels, plus distortion."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion_model: str = ""
    coefficients: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise IntrinsicsError(f"intrinsics need a positive image size, got {self.width}x{self.height}")
        if not (np.isfinite([self.fx, self.fy, self.cx, self.cy]).all() and self.fx > 0 and self.fy > 0):
            raise IntrinsicsError(
                f"focal lengths must be finite and > 0 (got fx={self.fx}, fy={self.fy}, cx={self.cx}, cy={self.cy});"
                " is the camera_info's K all zero (an uncalibrated camera)?")
        if self.is_distorted and self.distortion_model not in DISTORTION_MODELS:
            raise IntrinsicsError(
                f"distortion model '{self.distortion_model}' with non-zero coefficients {list(self.coefficients)} is"
                f" not supported; supported: {', '.join(DISTORTION_MODELS)} (or publish rectified images with zero"
                " distortion)")
        if self.is_distorted and self.distortion_model == "equidistant" and len(self.coefficients) != 4:
            raise IntrinsicsError(f"equidistant distortion needs 4 coefficients (k1..k4), got {len(self.coefficients)}")
        if self.is_distorted and self.distortion_model != "equidistant" and len(self.coefficients) not in (4, 5, 8):
            raise IntrinsicsError(
                f"{self.distortion_model} distortion needs 4, 5 or 8 coefficients, got {len(self.coefficients)}")

    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int, distortion_model: str = "",  # noqa: N803
                    coefficients: object = ()) -> PinholeIntrinsics:
        """From a 3x3 camera matrix (or its 9 entries, row-major, as in ``camera_info.k``)."""
        k = np.asarray(K, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise IntrinsicsError(f"a camera matrix has 9 entries, got {k.size}")
        if abs(k[1]) > 1e-9 * max(abs(k[0]), 1.0):
            raise IntrinsicsError(f"skewed camera matrices (K[0][1] = {k[1]}) are not supported")
        coeffs = tuple(float(c) for c in np.asarray(coefficients, dtype=np.float64).reshape(-1))
        return cls(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]), width=int(width),
                   height=int(height), distortion_model=str(distortion_model).strip(), coefficients=coeffs)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name
        """(3, 3) float64 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (self.width, self.height)

    @property
    def is_distorted(self) -> bool:
        """Any non-zero distortion coefficient."""
        return any(c != 0.0 for c in self.coefficients)

    def scaled_to(self, width: int, height: int) -> PinholeIntrinsics:
        """The same camera at another resolution of the same aspect ratio.

        Pixel centres stay at integer coordinates: c' = (c + 0.5) * s - 0.5. Distortion
        coefficients act on normalised coordinates and carry over unchanged.
        Raises IntrinsicsError when the aspect ratio differs.
        """
        width, height = int(width), int(height)
        if (width, height) == self.size:
            return self
        check_same_aspect(self.size, (width, height), "the camera_info", "the image")
        sx, sy = width / self.width, height / self.height
        return PinholeIntrinsics(fx=self.fx * sx, fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                                 cy=(self.cy + 0.5) * sy - 0.5, width=width, height=height,
                                 distortion_model=self.distortion_model, coefficients=self.coefficients)

    def normalised_columns_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Undistorted only: (W,) x_n of every column and (H,) y_n of every row, float32."""
        if self.is_distorted:
            raise IntrinsicsError("distorted intrinsics have no separable rays; use normalised_grid()")
        return _separable_rays(self)

    def normalised_grid(self) -> np.ndarray:
        """(H, W, 2) float32 normalised (x_n, y_n) of every pixel's ray, distortion removed
        (computed once per intrinsics and cached)."""
        return _ray_grid(self)


def check_same_aspect(size_a: tuple[int, int], size_b: tuple[int, int], name_a: str, name_b: str) -> None:
    """Raise IntrinsicsError unless (width, height) sizes a and b have the same aspect ratio."""
    (wa, ha), (wb, hb) = size_a, size_b
    ratio_a, ratio_b = wa / ha, wb / hb
    if abs(ratio_a - ratio_b) > ASPECT_TOLERANCE * ratio_a:
        raise IntrinsicsError(
            f"{name_a} is {wa}x{ha} but {name_b} is {wb}x{hb}: the aspect ratios differ ({ratio_a:.4f} vs"
            f" {ratio_b:.4f}), so no scaling maps one onto the other (a cropped stream?); publish them at the"
            " same size or the same aspect ratio")


@lru_cache(maxsize=8)
def _separable_rays(intr: PinholeIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    x_n = ((np.arange(intr.width, dtype=np.float64) - intr.cx) / intr.fx).astype(np.float32)
    y_n = ((np.arange(intr.height, dtype=np.float64) - intr.cy) / intr.fy).astype(np.float32)
    x_n.flags.writeable = False
    y_n.flags.writeable = False
    return x_n, y_n


@lru_cache(maxsize=4)
def _ray_grid(intr: PinholeIntrinsics) -> np.ndarray:
    vs, us = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    if not intr.is_distorted:
        grid = np.stack([(us - intr.cx) / intr.fx, (vs - intr.cy) / intr.fy], axis=-1).astype(np.float32)
    else:
        pixels = np.stack([us.ravel(), vs.ravel()], axis=-1)[:, None, :]
        coeffs = np.asarray(intr.coefficients, dtype=np.float64)
        if intr.distortion_model == "equidistant":
            undistorted = cv2.fisheye.undistortPoints(pixels, intr.K, coeffs)
        else:
            # Enough iterations for strong lenses; the default (5) leaves pixel-level errors at the corners.
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
            if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
                undistorted = cv2.undistortPointsIter(pixels, intr.K, coeffs, None, None, criteria)
            else:  # OpenCV 5 folded it into undistortPoints
                undistorted = cv2.undistortPoints(pixels, intr.K, coeffs, criteria=criteria)
        grid = undistorted.reshape(intr.height, intr.width, 2).astype(np.float32)
    grid.flags.writeable = False
    return grid
