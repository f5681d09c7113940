"""The training scenes: rendered once, encoded once by the frozen image encoder, kept on disk.

Both stages train on the encoder's maps, never on pixels (the encoder is frozen), so a scene costs
its rendering and one encoder pass, once per run. Scene ``i`` of a pool is drawn from its own
generator ``default_rng([seed, salt, i])``: any part of a pool can be rebuilt alone, and a stopped
run keeps the chunks it already wrote (``chunk_size`` scenes per file).

Per scene the pool keeps:
    maps         the encoder's stride 8 / 16 / 32 maps, float16 (C_s, S/s, S/s)
    valid_hw     the resized image inside the S x S canvas
    objects      (K, 6) float: centre x, y and radius in canvas pixels, colour, shape and size index
    masks        (K, M, M) float16: each object's share of every low-res mask cell (M = 4G)
    scene        the Scene itself (objects and layout: the questions are asked about it)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pixellm_ros.engine.preprocess import preprocess_image
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.world.ontology import COLOUR_NAMES, SHAPE_NAMES, SIZE_NAMES, Split
from pixellm_ros.world.scene import CAMERA_SIZE, Scene, sample_scene

SQUARE_SIZE = (224, 224)
WIDE_SIZE = CAMERA_SIZE
_SALT = {"train": 11, "heldout": 29}
OBJECT_FIELDS = ("x", "y", "radius", "colour", "shape", "size")


@dataclass
class ScenePool:
    maps: list[torch.Tensor] = field(default_factory=list)  # 3 tensors (N, C_s, h_s, w_s) float16
    valid_hw: list[tuple[int, int]] = field(default_factory=list)
    objects: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    scenes: list[Scene] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.scenes)

    def extend(self, other: ScenePool) -> None:
        self.maps = [torch.cat([a, b]) for a, b in zip(self.maps, other.maps)] if self.maps else list(other.maps)
        self.valid_hw += other.valid_hw
        self.objects += other.objects
        self.masks += other.masks
        self.scenes += other.scenes

    def batch_maps(self, indices: list[int]) -> list[torch.Tensor]:
        return [m[indices].float() for m in self.maps]


def scene_rng(seed: int, split: Split, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SALT[split], index])


def draw_scene(seed: int, split: Split, index: int, wide_share: float) -> Scene:
    rng = scene_rng(seed, split, index)
    size = WIDE_SIZE if rng.random() < wide_share else SQUARE_SIZE
    scene = sample_scene(rng, size, split=split)
    return Scene(scene.height, scene.width, scene.objects, scene.surface, scene.camera)  # no cached renders


def _encode_chunk(model: PixelLMForCausalLM, scenes: list[Scene]) -> ScenePool:
    cfg = model.config
    size, low = cfg.image_size, cfg.mask_resolution
    pixels, pool = [], ScenePool()
    for scene in scenes:
        rgb, masks = scene.render()
        pre = preprocess_image(rgb, size, cfg.pixel_mean, cfg.pixel_std)
        pixels.append(pre.pixel_values)
        h, w = pre.valid_hw
        scale = h / scene.height
        pool.valid_hw.append((h, w))
        pool.objects.append(torch.tensor([
            (o.center[0] * scale, o.center[1] * scale, o.radius * scale,
             COLOUR_NAMES.index(o.colour), SHAPE_NAMES.index(o.shape), SIZE_NAMES.index(o.size))
            for o in scene.objects
        ], dtype=torch.float32))
        canvas = torch.zeros(len(masks), 1, size, size)
        canvas[:, :, :h, :w] = F.interpolate(torch.from_numpy(masks).float()[:, None], size=(h, w), mode="bilinear", align_corners=False)
        pool.masks.append(F.adaptive_avg_pool2d(canvas, low)[:, 0].half())
        pool.scenes.append(scene)
    maps = model.encoder_maps(torch.cat(pixels).to(model.device))
    pool.maps = [m.half().cpu() for m in maps]
    return pool


def build_pool(
    model: PixelLMForCausalLM,
    count: int,
    split: Split,
    seed: int,
    wide_share: float,
    folder: str | os.PathLike[str] | None = None,
    chunk_size: int = 250,
    progress: bool = True,
) -> ScenePool:
    """``count`` scenes of ``split`` encoded by ``model``'s encoder; chunks cached in ``folder``."""
    pool = ScenePool()
    root = Path(folder) if folder is not None else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=count, desc=f"scenes ({split})", unit="scene", disable=not progress)
    for start in range(0, count, chunk_size):
        stop = min(count, start + chunk_size)
        path = root / f"{split}_{seed}_{start:06d}_{stop:06d}.pt" if root is not None else None
        if path is not None and path.is_file():
            chunk = torch.load(path, weights_only=False)
        else:
            scenes = [draw_scene(seed, split, i, wide_share) for i in range(start, stop)]
            chunk = ScenePool()
            for sub in range(0, len(scenes), 16):
                chunk.extend(_encode_chunk(model, scenes[sub : sub + 16]))
            if path is not None:
                tmp = path.with_suffix(".tmp")
                torch.save(chunk, tmp)
                os.replace(tmp, path)
        pool.extend(chunk)
        bar.update(stop - start)
    bar.close()
    return pool
