"""The CLIP vision tower at the run size: two feature scales, padding masks, position-table resize.

Keys under the tower are those of a CLIP checkpoint's vision half (``vision_model.embeddings.*``,
``vision_model.pre_layrnorm.*``, ``vision_model.encoder.layers.N.*``, ``vision_model.post_layernorm.*``),
so an ``openai/clip-vit-large-patch14-336`` state dict loads with one prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel


if TYPE_CHECKING:
    from .config import PixelLMConfig


def resize_clip_position_embeddings(weight: torch.Tensor, new_grid: int) -> torch.Tensor:
    """Resize a CLIP position table the way the released PixelLM did: (g0*g0+1, C) -> (g1*g1+1, C).

    CLIP's table is class-first (row 0 = class, rows 1..P = patches, P = g0*g0). The research code
    instead took rows 0..P-1 as the g0 x g0 patch grid and row P as the class row, resized the grid
    bilinearly (align_corners=False) to g1 x g1 and appended row P at the end. The model then adds
    row p of this table to sequence position p (class token at 0, patch k at k+1), exactly as
    transformers' CLIPVisionEmbeddings does. Net effect, which the released weights were trained on:
    the class token gets the top-left corner of the resized grid, which for an upscale is exactly
    CLIP's own class row (bilinear clamps there); patch k gets row k+1 of the resized "grid",
    i.e. a grid shifted by one table row; the last patch gets CLIP's last patch row.
    Reproduced bit for bit, it differs from a correct class-first resize by up to ~1.8.
    """
    if weight.ndim != 2:
        raise ValueError(f"expected a (positions, C) table, got {tuple(weight.shape)}")
    old_grid = int(round((weight.shape[0] - 1) ** 0.5))
    if old_grid * old_grid + 1 != weight.shape[0]:
        raise ValueError(f"{weight.shape[0]} positions is not a square grid plus one")
    channels = weight.shape[1]
    grid_rows = weight[:-1].float().t().reshape(1, channels, old_grid, old_grid)
    resized = F.interpolate(grid_rows, size=(new_grid, new_grid), mode="bilinear", align_corners=False)
    resized = resized[0].flatten(1).t().to(weight.dtype)
    return torch.cat([resized, weight[-1:]], dim=0)


def patch_padding_mask(
    valid_hw: Sequence[tuple[int, int]], image_size: int, grid: int, device: torch.device | None = None
) -> torch.Tensor:
    """(B, G, G) bool: True for patches that hold image pixels, False for patches fully in padding.

    The image sits top-left in the S x S input, zero padding bottom/right. Like the research code,
    the pixel mask is resampled with nearest (patch r samples pixel row floor(r*S/G)), which marks a
    patch valid iff its first pixel row/column lies inside the image.
    """
    pixels = torch.zeros(len(valid_hw), 1, image_size, image_size, device=device)
    for index, (height, width) in enumerate(valid_hw):
        if not (0 < height <= image_size and 0 < width <= image_size):
            raise ValueError(f"valid size {(height, width)} does not fit in {image_size}x{image_size}")
        pixels[index, :, :height, :width] = 1.0
    return F.interpolate(pixels, size=(grid, grid), mode="nearest")[:, 0] > 0.5


def llm_token_mask(patch_mask: torch.Tensor, llm_grid: int) -> torch.Tensor:
    """(B, G, G) patch mask -> (B, g*g) bool: False for LLM image tokens that come from padding only.

    Nearest resampling of the patch mask, as in the research code: token row i is valid iff patch
    row floor(i*G/g) is, i.e. iff pixel row i*S/g lies inside the image. For a 3:2 landscape image
    at 448 (valid height 299), that is ceil(299/28) = 11 of 16 token rows.
    """
    small = F.interpolate(patch_mask[:, None].float(), size=(llm_grid, llm_grid), mode="nearest")[:, 0]
    return small.flatten(1) > 0.5


class CLIPVisionTower(nn.Module):
    """CLIP ViT run at the config size, returning the selected hidden states without the class token.

    ``vision_model`` is transformers' CLIPVisionModel; its public forward takes no attention mask,
    so the embeddings, pre-norm and encoder layers are driven here, with the padded patches
    key-masked (the class token never is) and only as many layers run as the deepest scale needs.
    """

    def __init__(self, config: CLIPVisionConfig, select_layers: Sequence[int]) -> None:
        super().__init__()
        self.vision_model = CLIPVisionModel(config)
        self.select_layers = tuple(int(i) for i in select_layers)
        num_states = config.num_hidden_layers + 1  # embeddings + one per layer
        self._state_indices = tuple(i if i >= 0 else num_states + i for i in self.select_layers)
        self.grid = config.image_size // config.patch_size

    @classmethod
    def from_config(cls, config: PixelLMConfig) -> CLIPVisionTower:
        """The tower of a PixelLM: ``config.vision`` at the run size, ``config.vision_select_layers``."""
        assert config.vision is not None, "a CLIP tower needs config.vision"
        return cls(config.vision, config.vision_select_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.vision_model.config.hidden_size)

    @property
    def state_indices(self) -> tuple[int, ...]:
        """The hidden-state index of each returned scale (0 = embeddings, n = after layer n)."""
        return self._state_indices

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the tower computes in (its patch embedding's)."""
        return self.vision_model.embeddings.patch_embedding.weight.dtype

    def forward(self, pixel_values: torch.Tensor, patch_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """pixel_values (B, 3, S, S), patch_mask (B, G, G) bool or None -> L tensors (B, G*G, C).

        The embeddings add position-table row p to sequence position p (class token at p = 0),
        which is what the released model ran with (see resize_clip_position_embeddings).
        """
        model = self.vision_model
        hidden = model.pre_layrnorm(model.embeddings(pixel_values))
        additive_mask = None
        if patch_mask is not None and not bool(patch_mask.all()):
            keep = torch.cat([torch.ones_like(patch_mask[:, :1, 0]), patch_mask.flatten(1)], dim=1)
            additive_mask = torch.zeros(keep.shape, dtype=hidden.dtype, device=hidden.device)
            additive_mask = additive_mask.masked_fill(~keep, torch.finfo(hidden.dtype).min)[:, None, None, :]
        states: dict[int, torch.Tensor] = {}
        if 0 in self._state_indices:
            states[0] = hidden
        for depth, layer in enumerate(model.encoder.layers[: max(self._state_indices)], start=1):
            hidden = layer(hidden, additive_mask)
            if depth in self._state_indices:
                states[depth] = hidden
        return [states[i][:, 1:] for i in self._state_indices]
