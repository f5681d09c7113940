"""The seg codebook: which hidden states become seg embeddings, how they group, how they fuse.

Each target in an answer is written as N*L added tokens [SEG0]..[SEG{N*L-1}]; tokens 0..N-1 serve
scale 0 and N..2N-1 scale 1. The embedding of a seg token is the LLM's last hidden state at the
position just BEFORE it (the state that predicts it), passed through ``text_hidden_fcs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .config import PixelLMConfig


def seg_state_mask(token_ids: torch.Tensor, seg_token_ids: Sequence[int]) -> torch.Tensor:
    """(B, T) ids -> (B, T) bool, True at position p when token p+1 is a seg token.

    Those are the positions whose hidden states predict a seg token (the last position is never one).
    """
    seg_ids = torch.as_tensor(list(seg_token_ids), dtype=token_ids.dtype, device=token_ids.device)
    next_is_seg = torch.isin(token_ids[:, 1:], seg_ids)
    return torch.cat([next_is_seg, torch.zeros_like(next_is_seg[:, :1])], dim=1)


def group_seg_embeddings(seg: torch.Tensor, num_scales: int, tokens_per_scale: int) -> torch.Tensor:
    """(K, D) seg embeddings in generation order -> (T, L, N, D), T = K / (L*N) targets.

    Raises ValueError when K is not a multiple of L*N (the research code drops all masks then;
    callers decide what to do).
    """
    per_target = num_scales * tokens_per_scale
    if seg.ndim != 2 or seg.shape[0] % per_target != 0:
        raise ValueError(f"{tuple(seg.shape)} seg embeddings do not form groups of {per_target}")
    return seg.view(seg.shape[0] // per_target, num_scales, tokens_per_scale, seg.shape[1])


class SegTokenFusion(nn.Module):
    """Fuse the N tokens of each scale into one prompt vector: (T, L, N, D) -> (T, L, D).

    ``released_constant``: the released checkpoints were run with N*L plain float scalars, each
    1/(N*L), of which only the first N multiply the N tokens; they were never registered as
    parameters, so they are neither trained nor saved. The fused vector is therefore
    (e0 + ... + e_{N-1}) / (N*L), e.g. (e0 + e1 + e2) / 6: half the mean for L = 2. Reproduced as a
    constant so released weights see exactly what they were trained with.

    ``learned``: the paper's learnable linear projection of the N concatenated tokens
    (``projection``: Linear(N*D -> D)), initialised to the plain mean. For new models only.
    """

    def __init__(self, tokens_per_scale: int, num_scales: int, dim: int, mode: str = "released_constant") -> None:
        super().__init__()
        self.tokens_per_scale = tokens_per_scale
        self.num_scales = num_scales
        self.mode = mode
        if mode == "released_constant":
            self.projection = None
            self.constant_weight = 1.0 / (tokens_per_scale * num_scales)
        elif mode == "learned":
            self.projection = nn.Linear(tokens_per_scale * dim, dim)
            with torch.no_grad():
                eye = torch.eye(dim) / tokens_per_scale
                self.projection.weight.copy_(torch.cat([eye] * tokens_per_scale, dim=1))
                self.projection.bias.zero_()
        else:
            raise ValueError(f"unknown fusion mode {mode!r}")

    @classmethod
    def from_config(cls, config: PixelLMConfig) -> SegTokenFusion:
        """The fusion of a PixelLM: N tokens per scale, L scales, width ``out_dim``, ``config.fusion``."""
        return cls(config.seg_tokens_per_scale, config.num_scales, config.out_dim, config.fusion)

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        if groups.ndim != 4 or groups.shape[1:3] != (self.num_scales, self.tokens_per_scale):
            raise ValueError(
                f"expected (T, {self.num_scales}, {self.tokens_per_scale}, D) seg groups, got {tuple(groups.shape)}"
            )
        if self.projection is None:
            # term by term, in the released order, so rounding matches the reference
            fused = groups[:, :, 0] * 0
            for index in range(self.tokens_per_scale):
                fused = fused + self.constant_weight * groups[:, :, index]
            return fused
        return self.projection(groups.flatten(2))
