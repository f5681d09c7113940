"""Rasterising one object: its exact footprint and its shaded appearance.

Both are computed in a small window around the object. The footprint is the set of pixels the
object covers when nothing is in front of it; the renderer paints exactly these pixels (no
anti-aliasing), so the instance masks are exact by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pixellm_ros.world.objects import SceneObject

_POLY_SHIFT = 4  # cv2.fillPoly fixed-point bits: vertices at 1/16 pixel precision


@dataclass(frozen=True)
class Footprint:
    """Pixels an object covers: ``mask`` (h, w) bool placed at rows y0:y0+h, cols x0:x0+w."""

    y0: int
    x0: int
    mask: np.ndarray

    @property
    def window(self) -> tuple[slice, slice]:
        """Row and column slices of the window in the full image."""
        h, w = self.mask.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    def full(self, height: int, width: int) -> np.ndarray:
        """The footprint as an (height, width) bool image."""
        out = np.zeros((height, width), dtype=bool)
        out[self.window] = self.mask
        return out


@dataclass(frozen=True)
class _LocalFrame:
    """Pixel-centre coordinates of a window, relative to the object centre and rotated.

    ``u`` runs along the object's own x axis, ``v`` along its y axis; ``dx, dy`` are the
    un-rotated offsets (image axes), all (h, w) float arrays in pixels.
    """

    u: np.ndarray
    v: np.ndarray
    dx: np.ndarray
    dy: np.ndarray


def _window(obj: SceneObject, height: int, width: int) -> tuple[int, int, int, int]:
    reach = obj.extent + 2.0
    cx, cy = obj.center
    x0 = max(0, int(math.floor(cx - reach)))
    x1 = min(width, int(math.ceil(cx + reach)) + 1)
    y0 = max(0, int(math.floor(cy - reach)))
    y1 = min(height, int(math.ceil(cy + reach)) + 1)
    return y0, y1, x0, x1


def _local_frame(obj: SceneObject, y0: int, y1: int, x0: int, x1: int) -> _LocalFrame:
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx = xs - obj.center[0]
    dy = ys - obj.center[1]
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    return _LocalFrame(u=c * dx + s * dy, v=-s * dx + c * dy, dx=dx, dy=dy)


def _polygon_vertices(obj: SceneObject) -> np.ndarray:
    """(P, 2) vertices (u, v) of a polygonal shape, in pixels, in the object's own frame."""
    r = obj.radius
    if obj.shape == "box":
        h = 0.82 * r
        return np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    if obj.shape == "wedge":
        angles = np.deg2rad([-90.0, 30.0, 150.0])
        return 1.08 * r * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if obj.shape == "star":
        angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, 1.12 * r, 0.47 * r)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if obj.shape == "cross":
        a, b = r, 0.34 * r
        return np.array(
            [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
        )
    raise ValueError(f"{obj.shape} is not polygonal")


def _fill_polygon(obj: SceneObject, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    uv = _polygon_vertices(obj)
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    # Object frame -> image: x = cx + c u - s v, y = cy + s u + c v (inverse of _local_frame).
    xs = obj.center[0] + c * uv[:, 0] - s * uv[:, 1] - x0
    ys = obj.center[1] + s * uv[:, 0] + c * uv[:, 1] - y0
    pts = np.round(np.stack([xs, ys], axis=1) * (1 << _POLY_SHIFT)).astype(np.int32)
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=_POLY_SHIFT)
    return canvas.astype(bool)


def _capsule_distance(frame: _LocalFrame, half_length: float) -> np.ndarray:
    """Distance of each pixel to the segment u in [-half_length, half_length], v = 0."""
    du = np.clip(np.abs(frame.u) - half_length, 0.0, None)
    return np.hypot(du, frame.v)


def footprint(obj: SceneObject, height: int, width: int) -> Footprint:
    """The pixels ``obj`` covers in an (height, width) image when nothing occludes it."""
    y0, y1, x0, x1 = _window(obj, height, width)
    if obj.shape in ("box", "wedge", "star", "cross"):
        return Footprint(y0, x0, _fill_polygon(obj, y0, y1, x0, x1))
    f = _local_frame(obj, y0, y1, x0, x1)
    r = obj.radius
    dist = np.hypot(f.dx, f.dy)
    if obj.shape == "ball":
        mask = dist <= r
    elif obj.shape == "ring":
        mask = (dist <= r) & (dist >= 0.5 * r)
    elif obj.shape == "cylinder":
        mask = _capsule_distance(f, 0.62 * r) <= 0.5 * r
    elif obj.shape == "cup":
        handle = (f.u >= 0.8 * r) & (f.u <= 1.15 * r) & (np.abs(f.v) <= 0.2 * r)
        mask = (dist <= 0.9 * r) | handle
    else:
        raise ValueError(f"no footprint for shape {obj.shape!r}")
    return Footprint(y0, x0, mask)


def _lambert(nx: np.ndarray, ny: np.ndarray, nz: np.ndarray, light: np.ndarray) -> np.ndarray:
    return np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)


def _edge_band(mask: np.ndarray, width_px: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width_px`` of its border (the object's bevel)."""
    kernel = np.ones((2 * width_px + 1, 2 * width_px + 1), dtype=np.uint8)
    inner = cv2.erode(mask.astype(np.uint8), kernel, borderValue=0).astype(bool)
    return mask & ~inner


def appearance(obj: SceneObject, fp: Footprint, light: np.ndarray) -> np.ndarray:
    """Shaded colour of ``obj`` over its footprint window.

    Args:
        obj: the object.
        fp: its footprint (the window the colours are computed for).
        light: (3,) unit vector towards the light; x right, y down, z out of the table.

    Returns:
        (h, w, 3) float32 RGB in 0-255 over the footprint window (meaningful where fp.mask).
    """
    h, w = fp.mask.shape
    f = _local_frame(obj, fp.y0, fp.y0 + h, fp.x0, fp.x0 + w)
    r = obj.radius
    base = np.asarray(obj.rgb, dtype=np.float64)
    dist = np.hypot(f.dx, f.dy)
    specular = np.zeros((h, w))
    # Flat-topped objects facing up: a soft gradient across the face towards the light.
    facing = 0.5 + 0.5 * light[2]
    flat_gradient = np.clip(facing + 0.12 * (f.dx * light[0] + f.dy * light[1]) / max(r, 1.0), 0.3, 1.1)

    if obj.shape == "ball":
        rho = np.clip(dist / r, 0.0, 1.0)
        nz = np.sqrt(1.0 - rho**2)
        nx, ny = f.dx / r, f.dy / r
        intensity = 0.3 + 0.75 * _lambert(nx, ny, nz, light)
        half = light + np.array([0.0, 0.0, 1.0])
        half /= np.linalg.norm(half)
        specular = 0.55 * _lambert(nx, ny, nz, half) ** 24
    elif obj.shape == "ring":
        # A torus seen from above: the surface normal tilts in/out across the band.
        t = np.clip((dist - 0.75 * r) / (0.25 * r), -1.0, 1.0)
        radial_x = f.dx / np.maximum(dist, 1e-6)
        radial_y = f.dy / np.maximum(dist, 1e-6)
        nz = np.sqrt(1.0 - t**2)
        intensity = 0.3 + 0.75 * _lambert(t * radial_x, t * radial_y, nz, light)
    elif obj.shape == "cylinder":
        # Lying on its side: curved across v, with rounded ends along u.
        c, s = math.cos(obj.angle), math.sin(obj.angle)
        du = np.clip(np.abs(f.u) - 0.62 * r, 0.0, None) * np.sign(f.u)
        nu, nv = du / (0.5 * r), np.clip(f.v / (0.5 * r), -1.0, 1.0)
        nz = np.sqrt(np.clip(1.0 - nu**2 - nv**2, 0.0, 1.0))
        nx, ny = c * nu - s * nv, s * nu + c * nv
        intensity = 0.3 + 0.75 * _lambert(nx, ny, nz, light)
    elif obj.shape == "cup":
        # Rim, darker inside (its inner wall shades the far side), handle slightly darker.
        inside = dist <= 0.68 * r
        intensity = np.where(inside, 0.62 - 0.18 * (f.dx * light[0] + f.dy * light[1]) / r, flat_gradient)
        intensity = np.where(dist > 0.9 * r, 0.85 * flat_gradient, intensity)
    else:
        intensity = flat_gradient
    if obj.shape in ("box", "wedge", "star", "cross"):
        bevel = _edge_band(fp.mask, max(1, int(round(0.08 * r))))
        intensity = np.where(bevel, intensity * 0.78, intensity)

    rgb = base[None, None, :] * intensity[..., None]
    rgb = rgb + (255.0 - rgb) * specular[..., None]
    return np.clip(rgb, 0.0, 255.0).astype(np.float32)


# Height of each shape's visible top surface above the table, in units of the object's radius
# (ball: a sphere of that radius, seen from above down to its equator; box: a cube of side 1.64 r
# with a chamfered rim; wedge: a ramp rising towards its apex; ring: a torus of tube radius 0.25 r;
# cylinder: lying on its side, radius 0.5 r; star, cross: plates; cup: rim 1.3 r high, its floor
# seen through the opening, the handle at mid height).
SHAPE_HEIGHT: dict[str, float] = {
    "ball": 2.0, "box": 1.64, "wedge": 1.0, "ring": 0.5, "cylinder": 1.0, "star": 0.35, "cross": 0.45, "cup": 1.3,
}


def height_profile(obj: SceneObject, fp: Footprint) -> np.ndarray:
    """Height of ``obj``'s top surface over its footprint window, in units of its radius.

    The surface is a height field over the object's IMAGE footprint: the camera ray through
    each footprint pixel meets the object at this height above the table (``geometry``), so
    colour, masks and depth agree pixel for pixel.

    Returns:
        (h, w) float64, meaningful where ``fp.mask`` (0 elsewhere), at most ``SHAPE_HEIGHT``.
    """
    h, w = fp.mask.shape
    f = _local_frame(obj, fp.y0, fp.y0 + h, fp.x0, fp.x0 + w)
    r = max(obj.radius, 1e-6)
    rho = np.hypot(f.dx, f.dy) / r
    top = SHAPE_HEIGHT[obj.shape]
    if obj.shape == "ball":
        height = 1.0 + np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0))
    elif obj.shape == "ring":
        tube = 0.25
        height = tube + np.sqrt(np.clip(tube**2 - (rho - 0.75) ** 2, 0.0, None))
    elif obj.shape == "cylinder":
        across = _capsule_distance(f, 0.62 * r) / r
        height = 0.5 + np.sqrt(np.clip(0.25 - across**2, 0.0, None))
    elif obj.shape == "cup":
        handle = rho > 0.9
        height = np.where(rho <= 0.68, 0.15, top)
        height = np.where(handle, 0.5 * top, height)
    else:  # box, wedge, star, cross: flat tops with a chamfer over the bevel band
        if obj.shape == "wedge":  # apex at v = -1.08 r, base edge at v = +0.54 r
            along = np.clip((0.54 * r - f.v) / (1.62 * r), 0.0, 1.0)
            height = top * (0.25 + 0.75 * along)
        else:
            height = np.full((h, w), top)
        bevel = max(1.0, 0.08 * r)
        inside = cv2.distanceTransform(np.pad(fp.mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        height = height * (1.0 - 0.12 * np.clip(1.0 - inside / bevel, 0.0, 1.0))
    return np.where(fp.mask, height, 0.0)
