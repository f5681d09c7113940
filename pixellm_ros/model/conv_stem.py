"""The convolutional stem of a ``vision_stem: "conv"`` tower: stride-1 convolutions before the patch embedding.

A from-scratch ViT's patch convolution sees each 7 x 7 (or 14 x 14) patch as one flat vector, and
everything about an object's outline has to be learned by attention between patches. A few
3 x 3 convolutions at full resolution in front of it give every patch token local edge and corner
detectors first (the "early convolutions" of Xiao et al., 2021); the patch convolution then
reads ``channels[-1]`` channels instead of RGB. Measured on the tabletop world with the tower
alone (docs/embedded_model_experiments.md): it names held-out objects' shapes sooner per step.

Keys, under the tower: ``stem.layers.{2i}.weight`` / ``.bias`` (the i-th convolution; the odd
indices are the parameter-free GELUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .config import PixelLMConfig


class ConvStem(nn.Module):
    """(B, in_channels, S, S) -> (B, channels[-1], S, S): conv (same padding) + GELU per width."""

    def __init__(self, in_channels: int, channels: Sequence[int], kernel_size: int = 3) -> None:
        super().__init__()
        if not channels:
            raise ValueError("a conv stem needs at least one convolution")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size padding), got {kernel_size}")
        layers: list[nn.Module] = []
        previous = int(in_channels)
        for width in channels:
            layers += [nn.Conv2d(previous, int(width), kernel_size, padding=kernel_size // 2), nn.GELU()]
            previous = int(width)
        self.layers = nn.Sequential(*layers)
        self.out_channels = previous

    @classmethod
    def from_config(cls, config: PixelLMConfig) -> ConvStem:
        """The stem of a ``vision_stem: "conv"`` config: RGB in, ``vision_stem_channels`` wide."""
        return cls(int(config.vision.num_channels), config.vision_stem_channels, config.vision_stem_kernel)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layers(pixel_values)
