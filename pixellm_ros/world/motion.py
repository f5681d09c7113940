"""The tabletop world in motion: a camera on a slow path, objects pushed across the table, hiding
one another for a while, and the exact per-frame ground truth (visible masks, depth, object ids).

The objects live on the TABLE (``geometry``'s table frame at the first pose: metres, z up, x to
the image's right, y forward). The camera keeps the scene camera's height and pitch and moves in
the table's plane: it pans (turns about the vertical axis) and dollies (moves forward and back,
and a little sideways). Both leave the table plane where it was relative to the camera, so the
depth of every table pixel, and of every object pixel over its image footprint, is computed by
``geometry`` exactly as for a still scene; only where each object appears changes.

Each frame is a ``scene.Scene`` of the objects in view: an object's image centre is its table
position projected through the frame's pose, its pixel radius is its metric radius at that
depth (``SceneGeometry.object_radius_m`` reads it back exactly), its in-image angle the
projection of its heading on the table. The table's texture is drawn once in table coordinates
and seen through each pose (``cv2.remap``), so it moves with the table, not with the image; the
sensor noise is drawn anew for every frame.

    world = MovingWorld.sample(np.random.default_rng(0), size=(480, 640), duration_s=20.0)
    for frame in world.frames(rate_hz=30.0):
        frame.rgb, frame.masks, frame.object_ids, frame.depth_m, frame.visible_fraction

Pushes: each object is pushed now and then, a few centimetres in a smooth (minimum-jerk) motion
with a little turn; occlusions: a larger object is pushed in front of a smaller one (nearer to
the camera, so it is drawn over it), stays there ``hide_s`` seconds, and is pushed on. Everything
is drawn from the generator: the same state gives the same world, frame for frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import cv2
import numpy as np

from pixellm_ros.world.geometry import CameraModel, camera_model
from pixellm_ros.world.objects import SceneObject
from pixellm_ros.world.scene import CAMERA_SIZE, Scene, sample_scene
from pixellm_ros.world.surfaces import CameraSpec, SurfaceSpec, render_surface

TEXEL_M = 0.0015  # table texture resolution: about one image pixel at the image centre's depth (640x480)
SOLID_SHAPES = ("ball", "box", "cup", "cylinder", "wedge")  # shapes that hide what is behind them (no hole)


@dataclass(frozen=True)
class CameraPose:
    """Where the camera is at one time: its foot on the table (x_m, y_m; the first pose is
    (0, 0)) and its heading ``yaw_rad`` about the table's vertical (positive: turned to the left)."""

    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0


@dataclass(frozen=True)
class CameraPath:
    """A slow, smooth camera path: a pan of +-``pan_deg`` and a dolly of +-``dolly_m`` forward and
    +-``truck_m`` sideways, each a sine of its own period (all 0 at t = 0)."""

    pan_deg: float = 7.0
    pan_period_s: float = 13.0
    dolly_m: float = 0.07
    dolly_period_s: float = 17.0
    truck_m: float = 0.03
    truck_period_s: float = 23.0

    def pose(self, t: float) -> CameraPose:
        """The pose at ``t`` seconds."""
        return CameraPose(x_m=self.truck_m * math.sin(2 * math.pi * t / self.truck_period_s),
                          y_m=self.dolly_m * math.sin(2 * math.pi * t / self.dolly_period_s),
                          yaw_rad=math.radians(self.pan_deg) * math.sin(2 * math.pi * t / self.pan_period_s))

    @classmethod
    def still(cls) -> "CameraPath":
        """A camera that does not move."""
        return cls(pan_deg=0.0, dolly_m=0.0, truck_m=0.0)


def _min_jerk(tau: float) -> float:
    """Progress 0 -> 1 of a minimum-jerk motion at normalised time tau (clipped to [0, 1])."""
    tau = min(max(tau, 0.0), 1.0)
    return tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)


@dataclass(frozen=True)
class Push:
    """Object ``object_id`` slides by ``dx_m, dy_m`` (table frame) and turns by ``turn_rad`` between
    ``start_s`` and ``start_s + duration_s``; ``hides`` names the object it is pushed in front of
    (-1: none)."""

    object_id: int
    start_s: float
    duration_s: float
    dx_m: float
    dy_m: float
    turn_rad: float = 0.0
    hides: int = -1

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def progress(self, t: float) -> float:
        """0 before the push, 1 after it, minimum-jerk in between."""
        return _min_jerk((t - self.start_s) / self.duration_s)


@dataclass(frozen=True)
class TableObject:
    """An object at rest on the table: its attributes (``obj``: shape, colour, size, paint), its
    position ``xy_m`` in the table frame, its metric radius and its heading on the table."""

    obj: SceneObject
    xy_m: tuple[float, float]
    radius_m: float
    heading_rad: float


@dataclass(frozen=True)
class MotionSpec:
    """How much moves: pushes per object per minute, occlusions per minute, how long an occluder
    stays in front (``hide_s``), how far a push goes."""

    pushes_per_object_per_min: float = 3.0
    occlusions_per_min: float = 4.0
    push_s: tuple[float, float] = (0.8, 1.8)
    push_m: tuple[float, float] = (0.03, 0.09)
    turn_deg: float = 25.0
    hide_s: tuple[float, float] = (0.6, 1.6)
    path: CameraPath = field(default_factory=CameraPath)


@dataclass(frozen=True)
class WorldFrame:
    """One camera frame of the moving world with its exact ground truth.

    rgb: (H, W, 3) uint8. masks: (K, H, W) bool visible pixels of the K objects in view,
    pairwise disjoint; object_ids: (K,) int, the world's object ids (``MovingWorld.objects``
    index), stable over the sequence. visible_fraction: (K,) float, the share of each object's
    footprint inside the image that no nearer object hides. depth_m: (H, W) float64 optical-frame
    depth in metres; ``depth_image`` gives it as a camera publishes it. ``scene``: the frame's
    ``Scene`` (its ``objects[k]`` is ``object_ids[k]`` in view), whose ``geometry`` has the
    camera model and the 3D truth.
    """

    index: int
    time_s: float
    pose: CameraPose
    rgb: np.ndarray
    masks: np.ndarray
    object_ids: np.ndarray
    visible_fraction: np.ndarray
    scene: Scene

    @property
    def camera(self) -> CameraModel:
        return self.scene.geometry.camera

    @property
    def depth_m(self) -> np.ndarray:
        return self.scene.geometry.depth

    def depth_image(self, encoding: str = "16UC1") -> np.ndarray:
        """(H, W) uint16 mm ("16UC1") or float32 m ("32FC1")."""
        return self.scene.geometry.depth_image(encoding)

    def mask_of(self, object_id: int) -> np.ndarray | None:
        """(H, W) bool visible mask of world object ``object_id``, None when it is out of view."""
        hits = np.flatnonzero(self.object_ids == object_id)
        return self.masks[int(hits[0])] if hits.size else None


class MovingWorld:
    """Objects on a table, pushed now and then, seen by a camera on a slow path."""

    def __init__(self, size: tuple[int, int], objects: tuple[TableObject, ...], pushes: tuple[Push, ...],
                 path: CameraPath, surface: SurfaceSpec, camera: CameraSpec) -> None:
        self.height, self.width = int(size[0]), int(size[1])
        self.objects = objects
        self.pushes = tuple(sorted(pushes, key=lambda p: p.start_s))
        self.path = path
        self.surface = surface
        self.camera_spec = camera
        self.camera = camera_model(self.height, self.width)
        self._rotation, self._translation = self.camera.table_from_optical
        # Every pixel's ray meets the table at the same point of the camera's own table frame
        # whatever the pose (the height and the pitch never change): computed once.
        rows, cols = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        on_table = self.camera.back_project(cols, rows, self.camera.depth_at_height(0.0, rows))
        local = on_table @ self._rotation.T + self._translation
        self._table_x = local[..., 0].astype(np.float32)
        self._table_y = local[..., 1].astype(np.float32)
        self._texture, self._texture_origin = self._table_texture()

    # ------------------------------------------------------------------ building a world
    @classmethod
    def sample(cls, rng: np.random.Generator, size: tuple[int, int] = CAMERA_SIZE, duration_s: float = 30.0,
               motion: MotionSpec | None = None, min_objects: int = 4, max_objects: int = 7) -> "MovingWorld":
        """A random world: a tabletop scene (``sample_scene``) at the first pose, its objects put on
        the table, and pushes and occlusions drawn over ``duration_s`` seconds."""
        motion = motion or MotionSpec()
        scene = sample_scene(rng, size, min_objects=min_objects, max_objects=max_objects)
        geo = scene.geometry
        rotation, translation = geo.camera.table_from_optical
        objects = []
        for obj in scene.objects:
            depth = geo.camera.depth_at_height(0.0, obj.center[1])
            on_table = rotation @ geo.camera.back_project(obj.center[0], obj.center[1], depth) + translation
            axis = rotation @ geo.object_axis(obj.id)
            objects.append(TableObject(obj=obj, xy_m=(float(on_table[0]), float(on_table[1])),
                                       radius_m=geo.object_radius_m(obj.id),
                                       heading_rad=math.atan2(axis[1], axis[0])))
        pushes = _draw_pushes(rng, tuple(objects), duration_s, motion)
        return cls(size, tuple(objects), pushes, motion.path, scene.surface, scene.camera)

    def replaced(self, pushes: tuple[Push, ...] | None = None, path: CameraPath | None = None) -> "MovingWorld":
        """The same objects and table with other pushes and / or another camera path."""
        return MovingWorld((self.height, self.width), self.objects, self.pushes if pushes is None else pushes,
                           self.path if path is None else path, self.surface, self.camera_spec)

    # ------------------------------------------------------------------ where things are
    def object_pose(self, object_id: int, t: float) -> tuple[float, float, float]:
        """(x_m, y_m, heading_rad) of an object on the table at ``t`` seconds."""
        base = self.objects[object_id]
        x, y = base.xy_m
        heading = base.heading_rad
        for push in self.pushes:
            if push.object_id == object_id and t > push.start_s:
                s = push.progress(t)
                x, y, heading = x + s * push.dx_m, y + s * push.dy_m, heading + s * push.turn_rad
        return x, y, heading

    def project(self, pose: CameraPose, xy: np.ndarray) -> np.ndarray:
        """(N, 2) image (u, v) of table points ``xy`` (N, 2) seen from ``pose``; NaN behind the camera."""
        c, s = math.cos(pose.yaw_rad), math.sin(pose.yaw_rad)
        d = np.asarray(xy, dtype=np.float64) - np.array([pose.x_m, pose.y_m])
        local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], np.zeros(len(d))], axis=1)
        optical = (local - self._translation) @ self._rotation  # R^T (p - t), row-wise
        z = optical[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(z > 1e-6, self.camera.fx * optical[:, 0] / z + self.camera.cx, np.nan)
            v = np.where(z > 1e-6, self.camera.fy * optical[:, 1] / z + self.camera.cy, np.nan)
        return np.stack([u, v], axis=1)

    def scene_at(self, t: float, frame_index: int = 0) -> tuple[Scene, np.ndarray, CameraPose]:
        """The frame's ``Scene`` of the objects in view, their world ids (K,), and the pose."""
        pose = self.path.pose(t)
        poses = np.array([self.object_pose(i, t) for i in range(len(self.objects))])
        centres = self.project(pose, poses[:, :2])
        step = 0.01
        ahead = self.project(pose, poses[:, :2] + step * np.stack([np.cos(poses[:, 2]), np.sin(poses[:, 2])], axis=1))
        in_view: list[SceneObject] = []
        ids: list[int] = []
        for i, base in enumerate(self.objects):
            u, v = centres[i]
            if not np.isfinite(u) or not np.isfinite(v):
                continue
            depth = float(self.camera.depth_at_height(0.0, v))
            if depth <= 0:
                continue
            radius = base.radius_m * self.camera.fx / depth
            obj = replace(base.obj, id=len(in_view), center=(float(u), float(v)), radius=float(radius),
                          angle=math.atan2(ahead[i, 1] - v, ahead[i, 0] - u))
            reach = obj.extent + 2.0
            if u + reach < 0 or v + reach < 0 or u - reach > self.width - 1 or v - reach > self.height - 1:
                continue
            in_view.append(obj)
            ids.append(i)
        # The light stays where it is in the room: seen from a camera turned by yaw, it comes from
        # an image direction turned the other way; the sensor noise is new in every frame.
        spec = replace(self.camera_spec, light_azimuth=self.camera_spec.light_azimuth + pose.yaw_rad,
                       seed=(self.camera_spec.seed + 7919 * frame_index) % 2**31)
        scene = Scene(self.height, self.width, tuple(in_view), self.surface, spec)
        return scene, np.asarray(ids, dtype=np.int64), pose

    # ------------------------------------------------------------------ rendering
    def frame(self, index: int, rate_hz: float = 30.0) -> WorldFrame:
        """Frame ``index`` of a camera at ``rate_hz`` (time index / rate_hz)."""
        t = index / rate_hz
        scene, ids, pose = self.scene_at(t, index)
        rgb, masks = scene.render(background=self.table_view(pose))
        visible = np.array([masks[k].sum() / max(int(scene.footprint(o).mask.sum()), 1)
                            for k, o in enumerate(scene.objects)], dtype=np.float64)
        return WorldFrame(index=index, time_s=t, pose=pose, rgb=rgb, masks=masks, object_ids=ids,
                          visible_fraction=visible, scene=scene)

    def frames(self, rate_hz: float = 30.0, duration_s: float | None = None, start: int = 0) -> Iterator[WorldFrame]:
        """Frames at ``rate_hz`` from frame ``start``, for ``duration_s`` seconds (None: forever)."""
        index = start
        while duration_s is None or index / rate_hz < duration_s:
            yield self.frame(index, rate_hz)
            index += 1

    def table_view(self, pose: CameraPose) -> np.ndarray:
        """(H, W, 3) float32 the table's texture as the camera at ``pose`` sees it."""
        c, s = math.cos(pose.yaw_rad), math.sin(pose.yaw_rad)
        x = pose.x_m + c * self._table_x - s * self._table_y
        y = pose.y_m + s * self._table_x + c * self._table_y
        map_x = ((x - self._texture_origin[0]) / TEXEL_M).astype(np.float32)
        map_y = ((y - self._texture_origin[1]) / TEXEL_M).astype(np.float32)
        return cv2.remap(self._texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def _table_texture(self) -> tuple[np.ndarray, tuple[float, float]]:
        """The surface drawn once over the table the path can see (texels of ``TEXEL_M``)."""
        path = self.path
        reach = math.hypot(path.truck_m, path.dolly_m)
        yaw = math.radians(path.pan_deg)
        corners = []
        for angle in (-yaw, 0.0, yaw):
            c, s = math.cos(angle), math.sin(angle)
            corners.append(np.stack([c * self._table_x - s * self._table_y, s * self._table_x + c * self._table_y]))
        extent = np.concatenate([k.reshape(2, -1) for k in corners], axis=1)
        lo = extent.min(axis=1) - reach - 0.05
        hi = extent.max(axis=1) + reach + 0.05
        cols = int(math.ceil((hi[0] - lo[0]) / TEXEL_M))
        rows = int(math.ceil((hi[1] - lo[1]) / TEXEL_M))
        return render_surface(self.surface, rows, cols), (float(lo[0]), float(lo[1]))


def _draw_pushes(rng: np.random.Generator, objects: tuple[TableObject, ...], duration_s: float,
                 motion: MotionSpec) -> tuple[Push, ...]:
    """Pushes and occlusions over the sequence; one motion at a time per object."""
    busy_until = [0.5] * len(objects)  # nothing moves in the first half second
    where = [list(o.xy_m) for o in objects]
    pushes: list[Push] = []
    events: list[tuple[float, str]] = []
    minutes = duration_s / 60.0
    for _ in range(int(rng.poisson(motion.occlusions_per_min * minutes * 1.0)) + (1 if duration_s >= 8 else 0)):
        events.append((float(rng.uniform(0.5, max(0.6, duration_s - 4.0))), "hide"))
    for _ in range(int(rng.poisson(motion.pushes_per_object_per_min * minutes * len(objects)))):
        events.append((float(rng.uniform(0.5, max(0.6, duration_s - 1.0))), "push"))
    for start, kind in sorted(events):
        if kind == "hide":
            pair = _occlusion_pair(rng, objects, start, busy_until)
            if pair is None:
                continue
            a, b = pair
            approach = float(rng.uniform(*motion.push_s)) + 0.4
            hide = float(rng.uniform(*motion.hide_s))
            leave = float(rng.uniform(*motion.push_s))
            away = float(rng.uniform(*motion.push_m)) + objects[a].radius_m + objects[b].radius_m
            side = 1.0 if rng.uniform() < 0.5 else -1.0
            turns = [math.radians(float(rng.uniform(-motion.turn_deg, motion.turn_deg))) for _ in range(2)]
            there, back = occlusion(objects, a, b, tuple(where[a]), tuple(where[b]), start, approach, hide, leave,
                                    (side * away, float(rng.uniform(-0.3, 0.3)) * away),
                                    float(rng.uniform(-0.2, 0.2)), (turns[0], turns[1]))
            pushes += [there, back]
            where[a] = [where[a][0] + there.dx_m + back.dx_m, where[a][1] + there.dy_m + back.dy_m]
            end = back.end_s
            busy_until[a] = end
            busy_until[b] = end
        else:
            i = int(rng.integers(len(objects)))
            if busy_until[i] > start:
                continue
            length = float(rng.uniform(*motion.push_m))
            direction = float(rng.uniform(0.0, 2.0 * math.pi))
            duration = float(rng.uniform(*motion.push_s))
            dx, dy = length * math.cos(direction), length * math.sin(direction)
            pushes.append(Push(i, start, duration, dx, dy,
                               math.radians(float(rng.uniform(-motion.turn_deg, motion.turn_deg)))))
            where[i] = [where[i][0] + dx, where[i][1] + dy]
            busy_until[i] = start + duration
    return tuple(pushes)


def occlusion(objects: tuple[TableObject, ...], occluder: int, hidden: int, occluder_xy: tuple[float, float],
              hidden_xy: tuple[float, float], start_s: float, approach_s: float, hide_s: float, leave_s: float,
              away_m: tuple[float, float], sideways: float = 0.0,
              turns_rad: tuple[float, float] = (0.0, 0.0)) -> tuple[Push, Push]:
    """The two pushes of an occlusion: ``occluder`` (now at ``occluder_xy``) pushed in front of
    ``hidden`` (at ``hidden_xy``: nearer the camera, smaller table y, by a third of their difference
    in radius, ``sideways`` times that to the side) over ``approach_s``, left there ``hide_s``, then
    pushed on by ``away_m`` (dx, dy) over ``leave_s``."""
    gap = 0.35 * (objects[occluder].radius_m - objects[hidden].radius_m)
    target = (hidden_xy[0] + sideways * gap, hidden_xy[1] - gap)
    there = Push(occluder, start_s, approach_s, target[0] - occluder_xy[0], target[1] - occluder_xy[1],
                 turns_rad[0], hides=hidden)
    back = Push(occluder, start_s + approach_s + hide_s, leave_s, away_m[0], away_m[1], turns_rad[1])
    return there, back


def _occlusion_pair(rng: np.random.Generator, objects: tuple[TableObject, ...], start: float,
                    busy_until: list[float]) -> tuple[int, int] | None:
    """(occluder, hidden): a free solid object at least 1.3 times as large as a free other one."""
    pairs = [(a, b) for a in range(len(objects)) for b in range(len(objects))
             if a != b and busy_until[a] <= start and busy_until[b] <= start
             and objects[a].obj.shape in SOLID_SHAPES and objects[a].radius_m >= 1.3 * objects[b].radius_m]
    if not pairs:
        return None
    return pairs[int(rng.integers(len(pairs)))]
