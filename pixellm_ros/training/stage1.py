"""Stage 1: the object tokenizer and the pixel decoder, on the cached encoder maps.

What is trained: the feature pyramid, the detector heads (centre heat maps per colour class,
offset + radius, object embeddings), the attribute head (colour / shape / size, read by the LLM's
tokens), the pixel decoder and the prompt encoder's no-mask embedding; and a training aid, the
``PromptHead`` (object embedding -> the decoder's L prompts), whose prompts stage 2 teaches the
LLM's seg tokens to produce. The encoder stays frozen (ImageNet weights).

Losses: CenterNet's focal loss on Gaussian-splatted centres, L1 on offset and log radius at each
centre, cross-entropy of the attributes at each centre, and PixelLM's mask BCE (x2) + Dice (x0.5)
on ``masks_per_scene`` objects per scene, decoded from their prompt-head prompts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from pixellm_ros.model.object_tokens import sample_cells
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.model.weight_files import SAFETENSORS_FILE

from .export import PROMPT_HEAD_FILE
from .scenes import ScenePool

HEAT_STRIDE = 8


class PromptHead(nn.Module):
    """Object embedding (.., E) -> (.., L, D): the decoder prompts an object's seg tokens should give."""

    def __init__(self, embed_dim: int, num_scales: int, out_dim: int) -> None:
        super().__init__()
        self.num_scales, self.out_dim = num_scales, out_dim
        self.net = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, num_scales * out_dim))

    @classmethod
    def for_model(cls, model: PixelLMForCausalLM) -> PromptHead:
        cfg = model.config
        return cls(cfg.object_embed_dim, cfg.num_scales, cfg.out_dim)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.net(embeddings).unflatten(-1, (self.num_scales, self.out_dim))


def stage1_modules(model: PixelLMForCausalLM) -> list[nn.Module]:
    """The model's parts stage 1 trains."""
    tokenizer = model.object_tokenizer
    return [tokenizer.pyramid, tokenizer.heads, tokenizer.attributes, model.mask_decoder, model.prompt_encoder]


def stage1_head_file(folder: str | os.PathLike[str]) -> Path:
    """The prompt head file of a model folder that can give stage 1's parts (FileNotFoundError if none)."""
    head_file = Path(folder) / PROMPT_HEAD_FILE
    if not head_file.is_file():
        raise FileNotFoundError(f"{folder} has no {PROMPT_HEAD_FILE}: only a folder exported by `pixellm-ros train` "
                                "with its prompt head can give stage 1's parts")
    return head_file


def load_stage1_parts(folder: str | os.PathLike[str], model: PixelLMForCausalLM, prompt_head: PromptHead) -> int:
    """Load ``stage1_modules(model)`` and ``prompt_head`` from an exported model folder (its
    ``model.safetensors`` and ``PROMPT_HEAD_FILE``), strictly: a part missing or of another shape is
    an error. Returns the number of tensors loaded. A run given such a folder trains stage 2 only."""
    root = Path(folder)
    head_file = stage1_head_file(root)
    state = load_file(str(root / SAFETENSORS_FILE))
    names = {id(module): name for name, module in model.named_modules()}
    loaded = 0
    for module in stage1_modules(model):
        prefix = names[id(module)] + "."
        part = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}
        module.load_state_dict(part, strict=True)
        loaded += len(part)
    head = {k: v.float() for k, v in load_file(str(head_file)).items()}
    prompt_head.load_state_dict(head, strict=True)
    return loaded + len(head)


def centre_targets(objects: torch.Tensor, classes: int, height: int, width: int) -> torch.Tensor:
    """(K, 6) objects -> (classes, h, w) heat-map targets: a Gaussian (sigma = radius / 3 cells, at
    least 0.7) per object in its colour's map, exactly 1 at its centre cell."""
    heat = torch.zeros(classes, height, width)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    for x, y, radius, colour, _, _ in objects.tolist():
        cx, cy = x / HEAT_STRIDE - 0.5, y / HEAT_STRIDE - 0.5
        sigma = max(radius / HEAT_STRIDE / 3.0, 0.7)
        blob = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
        ix, iy = min(max(int(x // HEAT_STRIDE), 0), width - 1), min(max(int(y // HEAT_STRIDE), 0), height - 1)
        blob[iy, ix] = 1.0
        heat[int(colour)] = torch.maximum(heat[int(colour)], blob)
    return heat


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the number of centres."""
    prob = logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos = torch.log(prob) * (1 - prob) ** 2 * positive
    neg = torch.log(1 - prob) * prob**2 * (1 - target) ** 4 * (1 - positive)
    return -(pos.sum() + neg.sum()) / positive.sum().clamp(min=1)


def mask_bce_dice(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel BCE and Dice (smoothed) of (T, M, M) logits against soft (T, M, M) targets."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target)
    prob, flat = logits.float().sigmoid().flatten(1), target.flatten(1)
    dice = 1 - (2 * (prob * flat).sum(1) + 1) / (prob.sum(1) + flat.sum(1) + 1)
    return bce, dice.mean()


@dataclass
class Stage1Losses:
    total: torch.Tensor
    heat: float
    box: float
    attributes: float
    mask_bce: float
    mask_dice: float


def stage1_loss(
    model: PixelLMForCausalLM, prompt_head: PromptHead, pool: ScenePool, indices: list[int],
    masks_per_scene: int, generator: torch.Generator,
) -> Stage1Losses:
    """The stage-1 loss of the scenes ``indices`` of ``pool``."""
    tokenizer = model.object_tokenizer
    p8, p16 = tokenizer.pyramid(pool.batch_maps(indices))
    heat, box, embedding = tokenizer.heads(p8)
    height, width = heat.shape[-2:]
    heat_target = torch.stack([centre_targets(pool.objects[i], heat.shape[1], height, width) for i in indices])
    l_heat = focal_loss(heat, heat_target)

    objects = [pool.objects[i] for i in indices]
    counts = [len(o) for o in objects]
    width_max = max(counts)
    centres = torch.zeros(len(indices), width_max, 2)
    for row, o in enumerate(objects):
        centres[row, : len(o)] = o[:, :2]
    valid = torch.arange(width_max)[None] < torch.tensor(counts)[:, None]
    emb = sample_cells(embedding, centres, HEAT_STRIDE)[valid]  # (T, E)
    box_at = sample_cells(box, torch.floor(centres / HEAT_STRIDE) * HEAT_STRIDE + HEAT_STRIDE / 2, HEAT_STRIDE)[valid]
    flat = torch.cat(objects)
    offset = flat[:, :2] / HEAT_STRIDE - 0.5 - torch.floor(flat[:, :2] / HEAT_STRIDE)
    l_box = F.l1_loss(box_at[:, :2], offset) + F.l1_loss(box_at[:, 2], torch.log(flat[:, 2] / HEAT_STRIDE))
    l_attr = sum(
        F.cross_entropy(logits, flat[:, 3 + g].long()) for g, logits in enumerate(tokenizer.attributes.groups(emb))
    )

    owner = torch.repeat_interleave(torch.arange(len(indices)), torch.tensor(counts))
    chosen = torch.cat([
        torch.nonzero(owner == row)[:, 0][torch.randperm(counts[row], generator=generator)[:masks_per_scene]]
        for row in range(len(indices))
    ])
    prompts = prompt_head(emb[chosen])  # (T, L, D): one prompt per decoder level
    logits = model.decode_masks([p16, p8], prompts, image_index=owner[chosen]).low_res_logits
    target = torch.cat([pool.masks[i].float() for i in indices])[chosen]
    bce, dice = mask_bce_dice(logits, target)
    total = l_heat + l_box + 0.5 * l_attr + 2.0 * bce + 0.5 * dice
    return Stage1Losses(total, *(float(x.detach()) for x in (l_heat, l_box, l_attr, bce, dice)))


def draw_batch(count: int, batch: int, seed: int, step: int) -> list[int]:
    """The scenes of step ``step``: a function of (seed, step) only, so a resumed run draws the same."""
    return np.random.default_rng([seed, 1, step]).choice(count, size=min(batch, count), replace=False).tolist()
