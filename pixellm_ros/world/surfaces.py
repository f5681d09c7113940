"""Table surfaces (wood, cloth, tiles, stone, plain) and the camera: lighting and sensor noise.

Surfaces are deliberately low in saturation so the objects' colour names stay unambiguous.
Everything is drawn from a ``SurfaceSpec`` / ``CameraSpec`` plus a seed, so a scene renders the
same way every time.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

SURFACE_KINDS: tuple[str, ...] = ("wood", "cloth", "tiles", "stone", "plain")


@dataclass(frozen=True)
class SurfaceSpec:
    """How the table top looks: ``kind`` and its two colours (0-255 RGB), pattern ``scale`` in px."""

    kind: str
    base_rgb: tuple[int, int, int]
    accent_rgb: tuple[int, int, int]
    scale: float
    angle: float
    seed: int


@dataclass(frozen=True)
class CameraSpec:
    """Illumination and sensor: light direction, gradient/vignette strength, noise level.

    ``light_azimuth`` is the image-plane direction the light comes FROM (radians, 0 = from the
    right, pi/2 = from below); ``light_elevation`` its angle above the table.
    """

    light_azimuth: float
    light_elevation: float
    gradient_strength: float
    vignette_strength: float
    warmth: float
    noise_sigma: float
    seed: int

    @property
    def light_vector(self) -> np.ndarray:
        """(3,) unit vector towards the light (x right, y down, z up from the table)."""
        ce = math.cos(self.light_elevation)
        return np.array(
            [ce * math.cos(self.light_azimuth), ce * math.sin(self.light_azimuth), math.sin(self.light_elevation)]
        )


def _muted_rgb(rng: np.random.Generator, hue_range: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]) -> tuple[int, int, int]:
    h = rng.uniform(*hue_range) % 360.0
    r, g, b = colorsys.hsv_to_rgb(h / 360.0, rng.uniform(*sat), rng.uniform(*val))
    return (round(r * 255), round(g * 255), round(b * 255))


def sample_surface(rng: np.random.Generator) -> SurfaceSpec:
    """A random table surface."""
    kind = SURFACE_KINDS[int(rng.integers(len(SURFACE_KINDS)))]
    if kind == "wood":
        base = _muted_rgb(rng, (25, 40), (0.18, 0.35), (0.55, 0.78))
        accent = tuple(int(c * 0.72) for c in base)
    elif kind == "cloth":
        base = _muted_rgb(rng, (0, 360), (0.05, 0.22), (0.5, 0.8))
        accent = tuple(int(c * 0.85) for c in base)
    elif kind == "tiles":
        base = _muted_rgb(rng, (0, 360), (0.0, 0.12), (0.68, 0.9))
        accent = _muted_rgb(rng, (0, 360), (0.0, 0.08), (0.35, 0.55))
    elif kind == "stone":
        base = _muted_rgb(rng, (0, 360), (0.0, 0.08), (0.5, 0.72))
        accent = _muted_rgb(rng, (0, 360), (0.0, 0.08), (0.25, 0.45))
    else:
        base = _muted_rgb(rng, (0, 360), (0.0, 0.15), (0.55, 0.85))
        accent = tuple(int(c * 0.92) for c in base)
    return SurfaceSpec(
        kind=kind,
        base_rgb=base,
        accent_rgb=accent,  # type: ignore[arg-type]
        scale=float(rng.uniform(0.6, 1.4)),
        angle=float(rng.uniform(0, math.pi)),
        seed=int(rng.integers(2**31)),
    )


def sample_camera(rng: np.random.Generator) -> CameraSpec:
    """A random light and sensor."""
    return CameraSpec(
        light_azimuth=float(rng.uniform(0, 2 * math.pi)),
        light_elevation=float(rng.uniform(math.radians(35), math.radians(70))),
        gradient_strength=float(rng.uniform(0.05, 0.25)),
        vignette_strength=float(rng.uniform(0.0, 0.2)),
        warmth=float(rng.uniform(-0.04, 0.04)),
        noise_sigma=float(rng.uniform(1.0, 5.0)),
        seed=int(rng.integers(2**31)),
    )


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """(height, width) float noise in about [-1, 1] varying over ``cells`` cells per side."""
    grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _mix(base: tuple[int, int, int], accent: tuple[int, int, int], t: np.ndarray) -> np.ndarray:
    b = np.asarray(base, dtype=np.float32)
    a = np.asarray(accent, dtype=np.float32)
    t = np.clip(t, 0.0, 1.0)[..., None]
    return b * (1.0 - t) + a * t


def render_surface(spec: SurfaceSpec, height: int, width: int) -> np.ndarray:
    """The table top.

    Returns:
        (height, width, 3) float32 RGB in 0-255.
    """
    rng = np.random.default_rng(spec.seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    side = float(min(height, width))
    c, s = math.cos(spec.angle), math.sin(spec.angle)
    along = (c * xs + s * ys) / side
    across = (-s * xs + c * ys) / side
    mottling = _smooth_noise(rng, height, width, 4)
    fine = rng.normal(0.0, 1.0, size=(height, width)).astype(np.float32)

    if spec.kind == "wood":
        # Grain: bands across the boards, warped by low-frequency noise; plank seams.
        warp = _smooth_noise(rng, height, width, 3) * 0.08
        freq = 14.0 / spec.scale
        grain = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (across + warp))
        grain = grain**3 + 0.15 * cv2.GaussianBlur(fine, (0, 0), sigmaX=1.5, sigmaY=6.0)
        plank_width = 0.33 * spec.scale
        seam = np.abs(((across / plank_width) % 1.0) - 0.5) > 0.485
        t = 0.55 * grain + 0.15 * mottling + np.where(seam, 0.9, 0.0)
        rgb = _mix(spec.base_rgb, spec.accent_rgb, t)
    elif spec.kind == "cloth":
        # Woven threads: two crossing sinusoids plus fuzz.
        period = max(2.5, 4.0 * spec.scale * side / 224.0)
        weave = np.sin(2 * math.pi * xs / period) * np.sin(2 * math.pi * ys / period)
        t = 0.5 + 0.3 * weave + 0.25 * mottling + 0.12 * fine
        rgb = _mix(spec.base_rgb, spec.accent_rgb, t)
    elif spec.kind == "tiles":
        tile = max(12.0, 0.2 * spec.scale * side)
        grout = max(1.0, tile * 0.06)
        u = xs % tile
        v = ys % tile
        is_grout = (u < grout) | (v < grout)
        tile_id = (xs // tile) * 7 + (ys // tile) * 13
        tile_shade = (np.sin(tile_id * 12.9898) * 43758.5453) % 1.0  # per-tile brightness
        t = np.where(is_grout, 1.0, 0.08 * tile_shade + 0.05 * mottling + 0.03 * fine)
        rgb = _mix(spec.base_rgb, spec.accent_rgb, t)
    elif spec.kind == "stone":
        speckle = cv2.GaussianBlur(fine, (0, 0), sigmaX=0.8)
        veins = np.abs(np.sin(2 * math.pi * (3.0 * along + 1.5 * _smooth_noise(rng, height, width, 5))))
        t = 0.3 + 0.35 * speckle + 0.2 * mottling + 0.25 * (veins < 0.08)
        rgb = _mix(spec.base_rgb, spec.accent_rgb, t)
    elif spec.kind == "plain":
        t = 0.5 + 0.5 * mottling + 0.05 * fine
        rgb = _mix(spec.base_rgb, spec.accent_rgb, t)
    else:
        raise ValueError(f"unknown surface kind {spec.kind!r}; known: {SURFACE_KINDS}")
    return rgb.astype(np.float32)


def illumination(spec: CameraSpec, height: int, width: int) -> np.ndarray:
    """Multiplicative light field: brighter towards the light, darker in the corners.

    Returns:
        (height, width, 3) float32 gains around 1 (the warmth tints red up and blue down).
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    nx = (xs - width / 2.0) / max(width, height)
    ny = (ys - height / 2.0) / max(width, height)
    towards_light = nx * math.cos(spec.light_azimuth) + ny * math.sin(spec.light_azimuth)
    gain = 1.0 + 2.0 * spec.gradient_strength * towards_light
    gain *= 1.0 - spec.vignette_strength * (nx**2 + ny**2) * 2.0
    tint = np.array([1.0 + spec.warmth, 1.0, 1.0 - spec.warmth], dtype=np.float32)
    return gain[..., None] * tint[None, None, :]


def sensor_noise(spec: CameraSpec, height: int, width: int) -> np.ndarray:
    """Additive Gaussian read noise, (height, width, 3) float32, fixed by the camera's seed."""
    rng = np.random.default_rng(spec.seed)
    return rng.normal(0.0, spec.noise_sigma, size=(height, width, 3)).astype(np.float32)
