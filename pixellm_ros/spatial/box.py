"""3D boxes around point sets: axis-aligned in the camera optical frame, or oriented along the
points' principal axes.

A ``Box3D`` has the layout of ``vision_msgs/BoundingBox3D``: a centre pose (position + rotation)
and a size along the box's own x, y, z axes. ``rotation``'s columns are the box axes expressed
in the frame of the points.

Oriented boxes (``oriented_box``): the axes are the eigenvectors of the points' covariance,
largest variance first, made unique: the third axis points towards the camera (against the
viewing ray through the centre, so on a visible surface it reads as its outward normal), the
first has a non-negative optical x, and the frame is right-handed. With ``in_plane="min_area"``
the first two axes are turned, about the third, to the sides of the smallest-area rectangle
around (a spread of at most 600 of) the points projected on their plane, long side first. The
extent is the points' full min-max range along each axis, so every point is inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

# The containment test allows this much (metres) beyond the faces: the float32 points and the
# float64 box do not round alike.
CONTAINMENT_SLACK_M = 1e-6


@dataclass(frozen=True)
class Box3D:
    """centre (3,), rotation (3, 3) with the box axes as columns, size (3,) full edge lengths; metres."""

    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray

    @property
    def quaternion_xyzw(self) -> np.ndarray:
        """(4,) unit quaternion (x, y, z, w) of ``rotation`` (geometry_msgs/Quaternion's order)."""
        return Rotation.from_matrix(self.rotation).as_quat()

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    def contains(self, points: np.ndarray, slack: float = CONTAINMENT_SLACK_M) -> np.ndarray:
        """(N,) bool: which of the (N, 3) points lie inside the box (within ``slack`` metres)."""
        local = (np.asarray(points, dtype=np.float64) - self.center) @ self.rotation
        return np.all(np.abs(local) <= self.size / 2.0 + slack, axis=1)

    def corners(self) -> np.ndarray:
        """(8, 3) corner points."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        return self.center + (signs * self.size / 2.0) @ self.rotation.T


def aligned_box(points: np.ndarray) -> Box3D:
    """The tightest box with the frame's own axes around (N, 3) points, N >= 1."""
    return aligned_box_of_columns(_columns(points))


def oriented_box(points: np.ndarray, mean: np.ndarray | None = None, in_plane: str = "pca") -> Box3D:
    """The box along the (N, 3) points' principal axes holding all of them, N >= 1
    (in_plane: "pca" or "min_area", module docstring)."""
    return oriented_box_of_columns(_columns(points), mean, in_plane)


def principal_axes(points: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """(3, 3) rotation whose columns are the (N, 3) points' principal axes (module docstring's signs)."""
    columns = _columns(points)
    mean = columns.mean(axis=1, dtype=np.float64) if mean is None else np.asarray(mean, dtype=np.float64)
    return _principal_axes(columns - mean.astype(columns.dtype)[:, None], mean)


# The same on (3, N) coordinates (x, y, z rows, each contiguous): reductions along rows are
# several times faster than along the columns of (N, 3) arrays; the per-target code uses these.

def aligned_box_of_columns(xyz: np.ndarray) -> Box3D:
    """``aligned_box`` of (3, N) coordinates."""
    lo = xyz.min(axis=1).astype(np.float64)
    hi = xyz.max(axis=1).astype(np.float64)
    return Box3D(center=(lo + hi) / 2.0, rotation=np.eye(3), size=hi - lo)


def oriented_box_of_columns(xyz: np.ndarray, mean: np.ndarray | None = None, in_plane: str = "pca") -> Box3D:
    """``oriented_box`` of (3, N) coordinates."""
    if in_plane not in ("pca", "min_area"):
        raise ValueError(f"in_plane must be 'pca' or 'min_area', got {in_plane!r}")
    mean = xyz.mean(axis=1, dtype=np.float64) if mean is None else np.asarray(mean, dtype=np.float64)
    centred = xyz - mean.astype(xyz.dtype)[:, None]
    axes = _principal_axes(centred, mean)
    if in_plane == "min_area":
        axes = _min_area_in_plane(centred, axes)
    local = axes.T.astype(xyz.dtype) @ centred  # (3, N)
    lo, hi = local.min(axis=1).astype(np.float64), local.max(axis=1).astype(np.float64)
    return Box3D(center=mean + axes @ ((lo + hi) / 2.0), rotation=axes, size=hi - lo)


def _principal_axes(centred: np.ndarray, mean: np.ndarray) -> np.ndarray:
    covariance = (centred @ centred.T).astype(np.float64) / max(centred.shape[1], 1)
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    axes = vectors[:, ::-1].copy()
    if axes[:, 2] @ mean > 0:  # the third axis towards the camera at the origin
        axes[:, 2] = -axes[:, 2]
    if axes[0, 0] < 0:
        axes[:, 0] = -axes[:, 0]
    axes[:, 1] = _cross(axes[:, 2], axes[:, 0])  # right-handed: x cross y = z
    return axes


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b of two 3-vectors (np.cross's generality costs ~20 us a call)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _min_area_in_plane(centred: np.ndarray, axes: np.ndarray, max_points: int = 600) -> np.ndarray:
    step = max(1, centred.shape[1] // max_points)
    plane = (axes[:, :2].T.astype(centred.dtype) @ centred[:, ::step]).T  # (n, 2)
    (_, _), (w, h), angle = cv2.minAreaRect(np.ascontiguousarray(plane, dtype=np.float32))
    a = np.radians(angle + (90.0 if h > w else 0.0))  # the rectangle's long side first
    first = np.cos(a) * axes[:, 0] + np.sin(a) * axes[:, 1]
    out = axes.copy()
    out[:, 0] = first if first[0] >= 0 else -first
    out[:, 1] = _cross(out[:, 2], out[:, 0])
    return out


def _columns(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(f"points are (N, 3) with N >= 1, got shape {points.shape}")
    return np.ascontiguousarray(points.T)
