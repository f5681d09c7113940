"""A tabletop scene: objects on a surface under a camera, its rendering and its exact masks.

Depth: the camera looks down at the table at an angle, so an object lower in the image is
nearer and is drawn over the objects behind it. Objects are painted back to front with hard
edges; an instance mask is the set of pixels its object painted that no nearer object painted
over (the VISIBLE pixels). Shadows darken what lies under them but belong to no mask.
``scene.geometry`` (``geometry``) adds the 3D side: a metric camera, a depth image aligned with
the colour image and each object's exact ground-truth points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from pixellm_ros.world.geometry import SceneGeometry
from pixellm_ros.world.objects import SceneObject
from pixellm_ros.world.ontology import (
    ALL_COLOUR_SHAPE,
    COLOUR_BY_NAME,
    HELDOUT_COLOUR_SHAPE_SORTED,
    SIZE_BY_NAME,
    SIZE_NAMES,
    TRAIN_COLOUR_SHAPE,
    Split,
    is_heldout_pair,
)
from pixellm_ros.world.shapes import Footprint, appearance, footprint
from pixellm_ros.world.surfaces import (
    CameraSpec,
    SurfaceSpec,
    illumination,
    render_surface,
    sample_camera,
    sample_surface,
    sensor_noise,
)

CAMERA_SIZE = (480, 640)  # (height, width) of a camera's frames: moving worlds', a quarter of training's scenes (ros/camera_sim.py and ros/demo.py restate it as their parameters' defaults)
MIN_VISIBLE_FRACTION = 0.6  # an object at least this much visible stays recognisable
MIN_VISIBLE_PIXELS = 12
MIN_IMAGE_SIDE = 64
_PLACEMENT_TRIES = 40
_SHADOW_STRENGTH = 0.38


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image; ``objects[i].id == i``."""

    height: int
    width: int
    objects: tuple[SceneObject, ...]
    surface: SurfaceSpec
    camera: CameraSpec
    _footprints: dict[int, Footprint] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for i, obj in enumerate(self.objects):
            if obj.id != i:
                raise ValueError(f"object {i} has id {obj.id}; ids must be 0..K-1 in order")

    def footprint(self, obj: SceneObject) -> Footprint:
        """Pixels ``obj`` would cover with nothing in front of it (cached)."""
        if obj.id not in self._footprints:
            self._footprints[obj.id] = footprint(obj, self.height, self.width)
        return self._footprints[obj.id]

    @cached_property
    def depth_order(self) -> tuple[int, ...]:
        """Object ids from farthest (painted first) to nearest (painted last)."""
        return tuple(sorted(range(len(self.objects)), key=lambda i: (self.objects[i].center[1], i)))

    @cached_property
    def label_map(self) -> np.ndarray:
        """(H, W) int16: the id of the object seen at each pixel, -1 for the table."""
        labels = np.full((self.height, self.width), -1, dtype=np.int16)
        for i in self.depth_order:
            fp = self.footprint(self.objects[i])
            labels[fp.window][fp.mask] = i
        return labels

    @cached_property
    def visible_masks(self) -> np.ndarray:
        """(K, H, W) bool visible pixels of each object, in ``objects`` order."""
        ids = np.arange(len(self.objects), dtype=np.int16)
        return self.label_map[None, :, :] == ids[:, None, None]

    @cached_property
    def geometry(self) -> SceneGeometry:
        """The scene in 3D: camera model and pose, aligned depth image, ground-truth points."""
        return SceneGeometry(self)

    def visible_fraction(self, obj: SceneObject) -> float:
        """Share of the object's own footprint that is visible."""
        total = int(self.footprint(obj).mask.sum())
        return float(self.visible_masks[obj.id].sum()) / max(total, 1)

    def render(self, background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The camera image and the instance masks.

        Args:
            background: (H, W, 3) float32 RGB 0-255, the table as this camera sees it, to paint
                the objects onto instead of ``surface`` drawn in image coordinates (the moving
                world's table, fixed to the table while the camera moves: ``motion``).

        Returns:
            rgb: (H, W, 3) uint8.
            masks: (K, H, W) bool visible pixels per object, ``masks[i]`` for ``objects[i]``;
                pairwise disjoint.
        """
        if background is None:
            canvas = render_surface(self.surface, self.height, self.width)
        else:
            if background.shape != (self.height, self.width, 3):
                raise ValueError(f"background must be ({self.height}, {self.width}, 3), got {background.shape}")
            canvas = background.astype(np.float32, copy=True)
        light = self.camera.light_vector
        for i in self.depth_order:
            obj = self.objects[i]
            fp = self.footprint(obj)
            self._cast_shadow(canvas, obj, fp)
            colours = appearance(obj, fp, light)
            canvas[fp.window][fp.mask] = colours[fp.mask]
        return self._expose(canvas), self.visible_masks.copy()

    def render_background(self) -> np.ndarray:
        """The empty table under the same light and noise: (H, W, 3) uint8."""
        return self._expose(render_surface(self.surface, self.height, self.width))

    def _expose(self, canvas: np.ndarray) -> np.ndarray:
        gain = illumination(self.camera, self.height, self.width)
        noisy = canvas * gain + sensor_noise(self.camera, self.height, self.width)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    def _cast_shadow(self, canvas: np.ndarray, obj: SceneObject, fp: Footprint) -> None:
        """Darken the canvas where ``obj``'s soft shadow falls (away from the light)."""
        light = self.camera.light_vector
        horizontal = math.hypot(light[0], light[1])
        reach = 0.35 * obj.radius * horizontal / max(light[2], 0.2)
        dx = -round(reach * light[0] / max(horizontal, 1e-6))
        dy = -round(reach * light[1] / max(horizontal, 1e-6))
        sigma = max(1.0, 0.18 * obj.radius)
        pad = int(abs(dx) + abs(dy) + 3 * sigma + 2)
        h, w = fp.mask.shape
        y0, x0 = fp.y0 + dy - pad, fp.x0 + dx - pad
        local = np.zeros((h + 2 * pad, w + 2 * pad), dtype=np.float32)
        local[pad : pad + h, pad : pad + w] = fp.mask
        local = cv2.GaussianBlur(local, (0, 0), sigmaX=sigma)
        # Clip the shadow window to the image.
        ys0, xs0 = max(0, y0), max(0, x0)
        ys1, xs1 = min(self.height, y0 + local.shape[0]), min(self.width, x0 + local.shape[1])
        if ys1 <= ys0 or xs1 <= xs0:
            return
        part = local[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]
        canvas[ys0:ys1, xs0:xs1] *= (1.0 - _SHADOW_STRENGTH * part)[..., None]


def _sample_paint(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    info = COLOUR_BY_NAME[colour]
    jittered = type(info)(info.name, info.hue_deg + float(rng.uniform(-5.0, 5.0)))
    return jittered.rgb(saturation=float(rng.uniform(0.72, 0.95)), value=float(rng.uniform(0.8, 0.97)))


def _all_visible_enough(scene: Scene) -> bool:
    masks = scene.visible_masks
    for obj in scene.objects:
        visible = int(masks[obj.id].sum())
        if visible < MIN_VISIBLE_PIXELS or scene.visible_fraction(obj) < MIN_VISIBLE_FRACTION:
            return False
    return True


def _try_place(
    rng: np.random.Generator,
    placed: list[SceneObject],
    colour: str,
    shape: str,
    height: int,
    width: int,
    surface: SurfaceSpec,
    camera: CameraSpec,
) -> SceneObject | None:
    """An object of this colour and shape put where every object stays visible enough, or None."""
    size = SIZE_NAMES[int(rng.integers(len(SIZE_NAMES)))]
    info = SIZE_BY_NAME[size]
    radius = float(rng.uniform(info.min_fraction, info.max_fraction)) * min(height, width)
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    paint = _sample_paint(rng, colour)
    for _ in range(_PLACEMENT_TRIES):
        candidate = SceneObject(
            id=len(placed), shape=shape, colour=colour, size=size, radius=radius, center=(0.0, 0.0), angle=angle, rgb=paint
        )
        margin = candidate.extent + 1.0
        if 2 * margin >= min(height, width):
            return None
        cx = float(rng.uniform(margin, width - 1 - margin))
        cy = float(rng.uniform(margin, height - 1 - margin))
        candidate = SceneObject(
            id=len(placed), shape=shape, colour=colour, size=size, radius=radius, center=(cx, cy), angle=angle, rgb=paint
        )
        trial = Scene(height, width, tuple(placed) + (candidate,), surface, camera)
        if _all_visible_enough(trial):
            return candidate
    return None


def sample_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (224, 224),
    split: Split = "train",
    min_objects: int = 3,
    max_objects: int = 8,
) -> Scene:
    """A random tabletop scene.

    Args:
        rng: the only source of randomness (same generator state -> same scene).
        size: (height, width) in pixels, e.g. (224, 224) or (480, 640).
        split: "train" never uses a held-out colour x shape pair (``ontology``); "heldout"
            places one or two objects with held-out pairs first, then any pairs.
        min_objects, max_objects: how many objects to try to place (some may not fit when
            the image is crowded; at least one always does).

    Returns:
        The scene; render it with ``scene.render()``.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    height, width = int(size[0]), int(size[1])
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"image size {size} is too small (min side {MIN_IMAGE_SIDE})")
    surface = sample_surface(rng)
    camera = sample_camera(rng)
    count = int(rng.integers(min_objects, max_objects + 1))

    wanted: list[tuple[str, str]] = []
    if split == "heldout":
        for _ in range(int(rng.integers(1, 3))):
            wanted.append(HELDOUT_COLOUR_SHAPE_SORTED[int(rng.integers(len(HELDOUT_COLOUR_SHAPE_SORTED)))])
    pool = TRAIN_COLOUR_SHAPE if split == "train" else ALL_COLOUR_SHAPE
    while len(wanted) < count:
        wanted.append(pool[int(rng.integers(len(pool)))])

    placed: list[SceneObject] = []
    for colour, shape in wanted:
        obj = _try_place(rng, placed, colour, shape, height, width, surface, camera)
        if obj is not None:
            placed.append(obj)
    if not placed:
        raise RuntimeError(f"could not place any object in a {height}x{width} image")
    if split == "heldout" and not any(is_heldout_pair(o.colour, o.shape) for o in placed):
        raise RuntimeError(f"could not place a held-out object in a {height}x{width} image")
    return Scene(height, width, tuple(placed), surface, camera)
