"""Projections between the vision tower, the LLM and the pixel decoder, built from the config.

Module layouts mirror the released checkpoint's keys:
``mm_projector.{0,2}``, ``out_mm_projector.{0,2}``, ``image_feature_neck.{0,1,3}`` (+ ``.2``, the
bias-free 3x3 conv) and ``text_hidden_fcs.0.{0,2}``. C = the vision width, H = the LLM width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .layers import LayerNorm2d

if TYPE_CHECKING:
    from .config import PixelLMConfig


def build_mm_projector(config: PixelLMConfig) -> nn.Sequential:
    """Linear(C -> f*H), GELU, Linear(f*H -> H): vision features (..., C) -> LLM width (..., H).

    f = ``projector_hidden_factor``; ``mm_projector`` and ``out_mm_projector`` are both this.
    """
    vision_dim, hidden = int(config.vision.hidden_size), config.hidden_size
    inner = config.projector_hidden_factor * hidden
    return nn.Sequential(nn.Linear(vision_dim, inner), nn.GELU(), nn.Linear(inner, hidden))


def build_image_feature_neck(config: PixelLMConfig) -> nn.Sequential:
    """(B, H, G, G) -> (B, out, G, G): Conv1x1 (no bias), LayerNorm2d, Conv3x3 (no bias), LayerNorm2d."""
    out_dim = config.out_dim
    return nn.Sequential(
        nn.Conv2d(config.hidden_size, out_dim, kernel_size=1, bias=False),
        LayerNorm2d(out_dim),
        nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_dim),
    )


def build_text_hidden_fcs(config: PixelLMConfig) -> nn.ModuleList:
    """LLM hidden state (..., H) -> seg embedding (..., out): one Sequential in a ModuleList
    (Linear(H,H), ReLU, Linear(H,out), Dropout(0)), as the released keys ``text_hidden_fcs.0.*`` need."""
    hidden = config.hidden_size
    return nn.ModuleList(
        [nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, config.out_dim), nn.Dropout(0.0))]
    )
