"""The scene in 3D: a pinhole camera at a known pose over the table, objects with real heights,
the aligned depth image and every object's exact ground-truth points.

Camera (``camera_model``): a pinhole at ``CAMERA_HEIGHT_M`` above the table, looking forward and
down at ``CAMERA_PITCH_DEG`` below the horizontal, without roll, horizontal field of view
``HORIZONTAL_FOV_DEG``; square pixels, principal point at the image centre, no distortion. Pixel
centres are at integer coordinates (the OpenCV / ROS ``camera_info`` convention). Nothing about it
is random, so the scene sampler draws exactly what it drew before and a seed's colour image is
unchanged.

Frames. The camera OPTICAL frame (ROS REP 103): x right, y down, z forward along the optical axis,
metres. The TABLE frame: origin on the table right below the camera, z up, x to the image's right,
y forward (away from the camera). ``CameraModel.table_from_optical`` maps the one into the other.

Objects: each object's metric size is its pixel radius at the depth of the table point under its
centre (``object_radius_m``); its visible top surface is a height field over its IMAGE footprint
(``shapes.height_profile``, in units of that radius): the ray through each footprint pixel meets
the object at that height above the table. So every pixel of an object's visible mask shows that
object in colour, in the masks and in depth alike, and the depth of each pixel is exact. Only what
the camera sees is modelled: hidden sides and the parts of an object covered by another one have
no geometry, and where two objects overlap the nearer one (the one painted later) is the one seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, Sequence

import numpy as np

from pixellm_ros.world.shapes import height_profile


class Scene(Protocol):
    """What the geometry reads of a ``world.scene.Scene`` (a protocol: scene.py builds the geometry,
    so the geometry must not import scene.py back)."""

    height: int
    width: int
    objects: Sequence[Any]

    @property
    def label_map(self) -> np.ndarray: ...

    def footprint(self, obj: Any) -> Any: ...  # world.shapes.Footprint

    def visible_fraction(self, obj: Any) -> float: ...

CAMERA_HEIGHT_M = 0.75
CAMERA_PITCH_DEG = 70.0
HORIZONTAL_FOV_DEG = 60.0


@dataclass(frozen=True)
class CameraModel:
    """The scene camera: pinhole intrinsics (pixels) and its pose over the table."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    height_m: float  # camera centre above the table
    pitch_rad: float  # optical axis below the horizontal

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name
        """(3, 3) float64 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def table_from_optical(self) -> tuple[np.ndarray, np.ndarray]:
        """(R (3, 3), t (3,)): a point p in the optical frame is R @ p + t in the table frame."""
        s, c = math.sin(self.pitch_rad), math.cos(self.pitch_rad)
        # Columns: the optical x, y, z axes expressed in the table frame.
        rotation = np.array([[1.0, 0.0, 0.0], [0.0, -s, c], [0.0, -c, -s]])
        return rotation, np.array([0.0, 0.0, self.height_m])

    def depth_at_height(self, height_m: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Optical-frame depth (z, metres) where the rays of image rows ``v`` reach ``height_m``
        above the table (both broadcast; the depth does not depend on the column)."""
        s, c = math.sin(self.pitch_rad), math.cos(self.pitch_rad)
        y_n = (np.asarray(v, dtype=np.float64) - self.cy) / self.fy
        return (self.height_m - np.asarray(height_m, dtype=np.float64)) / (s + c * y_n)

    def back_project(self, u: np.ndarray, v: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(N, 3) optical-frame points of pixels (u, v) at ``depth`` (metres)."""
        z = np.asarray(depth, dtype=np.float64)
        x = (np.asarray(u, dtype=np.float64) - self.cx) / self.fx * z
        y = (np.asarray(v, dtype=np.float64) - self.cy) / self.fy * z
        return np.stack([x, y, z], axis=-1)


def camera_model(height: int, width: int) -> CameraModel:
    """The camera of every scene of this image size."""
    focal = (width / 2.0) / math.tan(math.radians(HORIZONTAL_FOV_DEG) / 2.0)
    pitch = math.radians(CAMERA_PITCH_DEG)
    bottom_ray = pitch + math.atan((height - 1) / 2.0 / focal)
    if bottom_ray >= math.pi or pitch - math.atan((height - 1) / 2.0 / focal) <= 0.0:
        raise ValueError(f"a {height}x{width} image would see above the horizon from this camera")
    return CameraModel(width=width, height=height, fx=focal, fy=focal, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0,
                       height_m=CAMERA_HEIGHT_M, pitch_rad=pitch)


class SceneGeometry:
    """Depth and ground truth of one scene (``scene.geometry``); everything computed on first use."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.camera = camera_model(scene.height, scene.width)

    def object_radius_m(self, obj_id: int) -> float:
        """Metric radius of object ``obj_id``: its pixel radius at the table depth under its centre."""
        obj = self.scene.objects[obj_id]
        depth = float(self.camera.depth_at_height(0.0, obj.center[1]))
        return obj.radius * depth / self.camera.fx

    @cached_property
    def height_map(self) -> np.ndarray:
        """(H, W) float64 metres above the table of the surface seen at each pixel (0 = table)."""
        heights = np.zeros((self.scene.height, self.scene.width))
        labels = self.scene.label_map
        for obj in self.scene.objects:
            fp = self.scene.footprint(obj)
            seen = labels[fp.window] == obj.id
            profile = height_profile(obj, fp) * self.object_radius_m(obj.id)
            heights[fp.window][seen] = profile[seen]
        return heights

    @cached_property
    def depth(self) -> np.ndarray:
        """(H, W) float64 optical-frame depth (z) in metres of every pixel, aligned with the colour image."""
        rows = np.arange(self.scene.height, dtype=np.float64)[:, None]
        return self.camera.depth_at_height(self.height_map, rows)

    def depth_image(self, encoding: str = "16UC1") -> np.ndarray:
        """The depth as a camera publishes it: "16UC1" (H, W) uint16 millimetres (rounded) or
        "32FC1" (H, W) float32 metres."""
        if encoding == "16UC1":
            return np.rint(self.depth * 1000.0).astype(np.uint16)
        if encoding == "32FC1":
            return self.depth.astype(np.float32)
        raise ValueError(f"depth encoding must be '16UC1' (uint16 mm) or '32FC1' (float32 m), got '{encoding}'")

    def object_points(self, obj_id: int) -> np.ndarray:
        """(N, 3) float64 optical-frame points (metres) of the object's visible pixels, exact:
        the ground truth a depth camera would sample."""
        v, u = np.nonzero(self.scene.label_map == obj_id)
        return self.camera.back_project(u, v, self.depth[v, u])

    def object_centroid(self, obj_id: int) -> np.ndarray:
        """(3,) mean of ``object_points``: the ground-truth centroid of what the camera sees."""
        return self.object_points(obj_id).mean(axis=0)

    def object_axis(self, obj_id: int) -> np.ndarray:
        """(3,) unit vector, optical frame: the object's own x axis (its in-plane ``angle``) lying
        on the table; a cylinder's long axis, a cup's handle direction."""
        obj = self.scene.objects[obj_id]
        rotation, _ = self.camera.table_from_optical
        # The image direction (cos a, sin a) at the object's centre, carried onto the table.
        u0, v0 = obj.center
        step = 1.0
        ends = []
        for sign in (-1.0, 1.0):
            u = u0 + sign * step * math.cos(obj.angle)
            v = v0 + sign * step * math.sin(obj.angle)
            depth = self.camera.depth_at_height(0.0, v)
            ends.append(rotation @ self.camera.back_project(u, v, depth))
        along_table = ends[1] - ends[0]
        along_table[2] = 0.0
        axis = rotation.T @ along_table
        return axis / np.linalg.norm(axis)

    def fully_visible(self, obj_id: int) -> bool:
        """Nothing covers any part of the object (and the placement kept it inside the image)."""
        return self.scene.visible_fraction(self.scene.objects[obj_id]) >= 1.0
