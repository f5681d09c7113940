"""Projections between the vision tower, the LLM and the pixel decoder.

Module layouts mirror the released checkpoint's keys:
``mm_projector.{0,2}``, ``out_mm_projector.{0,2}``, ``image_feature_neck.{0,1,3}`` (+ ``.2``, the
bias-free 3x3 conv) and ``text_hidden_fcs.0.{0,2}``.
"""

from __future__ import annotations

from torch import nn

from .layers import LayerNorm2d


def build_mm_projector(vision_dim: int, hidden_size: int, hidden_factor: int = 2) -> nn.Sequential:
    """Linear(C -> f*H), GELU, Linear(f*H -> H): vision features (..., C) -> LLM width (..., H)."""
    inner = hidden_factor * hidden_size
    return nn.Sequential(nn.Linear(vision_dim, inner), nn.GELU(), nn.Linear(inner, hidden_size))


def build_image_feature_neck(hidden_size: int, out_dim: int) -> nn.Sequential:
    """(B, H, G, G) -> (B, out, G, G): Conv1x1 (no bias), LayerNorm2d, Conv3x3 (no bias), LayerNorm2d."""
    return nn.Sequential(
        nn.Conv2d(hidden_size, out_dim, kernel_size=1, bias=False),
        LayerNorm2d(out_dim),
        nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_dim),
    )


def build_text_hidden_fcs(hidden_size: int, out_dim: int) -> nn.ModuleList:
    """LLM hidden state (..., H) -> seg embedding (..., out): one Sequential in a ModuleList
    (Linear(H,H), ReLU, Linear(H,out), Dropout(0)), as the released keys ``text_hidden_fcs.0.*`` need."""
    return nn.ModuleList(
        [nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, out_dim), nn.Dropout(0.0))]
    )
