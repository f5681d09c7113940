"""SAM-style prompt encoder, as far as PixelLM uses it.

PixelLM prompts the decoder with no points, boxes or masks: the sparse prompt is the fused seg
vector itself and the dense prompt is ``no_mask_embed`` everywhere. The point, box and mask-input
modules (``point_embeddings.0-3``, ``not_a_point_embed``, ``mask_downscaling.*``) are still built
because the released checkpoint holds them and a strict loader maps every key; nothing reads them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .layers import LayerNorm2d

if TYPE_CHECKING:
    from .config import PixelLMConfig


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier positional encoding of a (h, w) grid: -> (2F, h, w).

    Buffer ``positional_encoding_gaussian_matrix`` (2, F) is saved with the checkpoint.
    """

    def __init__(self, num_pos_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        height, width = size
        matrix = self.positional_encoding_gaussian_matrix
        grid = torch.ones((height, width), device=matrix.device, dtype=matrix.dtype)
        # pixel centres normalised to [0, 1], then to [-1, 1]
        y_embed = (grid.cumsum(dim=0) - 0.5) / height
        x_embed = (grid.cumsum(dim=1) - 0.5) / width
        coords = 2 * torch.stack([x_embed, y_embed], dim=-1) - 1
        coords = 2 * math.pi * (coords @ matrix)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Dense positional encoding of the G x G image embedding and the "no mask" dense prompt."""

    def __init__(self, embed_dim: int, image_embedding_size: int, input_image_size: int, mask_in_chans: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = (image_embedding_size, image_embedding_size)
        self.input_image_size = (input_image_size, input_image_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # Unused by PixelLM, kept for key parity with the released checkpoint (see module doc).
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, embed_dim) for _ in range(4)])
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    @classmethod
    def from_config(cls, config: PixelLMConfig) -> PromptEncoder:
        """The prompt encoder of a PixelLM: width ``out_dim`` over the G x G grid of an S x S input."""
        return cls(config.out_dim, config.vision_grid, config.image_size, config.mask_in_chans)

    def dense_positional_encoding(self) -> torch.Tensor:
        """(1, D, G, G): the positional encoding matching the image embedding."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def no_mask_dense_embedding(self) -> torch.Tensor:
        """(1, D, G, G): ``no_mask_embed`` broadcast over the image embedding grid."""
        height, width = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, height, width)
