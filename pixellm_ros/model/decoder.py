"""PixelLM's multi-scale mask decoder: one two-way transformer per feature scale, no SAM encoder.

For T targets (all decoded in one batch; the image features are shared):

* level 0 works on the G x G scale-0 features: tokens = [iou token, K mask tokens, prompt_0], each
  plus ``level_embed[0]``; the transformed image tokens are upscaled once (transposed conv to
  ``decoder_upscale_channels``) to 2G x 2G and the mask-0 hypernetwork gives the level-0 logits.
* level l >= 1 upsamples its scale's features 2x (``upsample_2x``), multiplies them by
  (sigmoid(mean over masks of level l-1) + 1), uses its own random positional encoding ``pe1``,
  and predicts 4G x 4G logits.
* final logits = sum_l (1/L) * bilinear(level l, 4G): 0.5 / 0.5 for L = 2 (fixed, never saved).

Keys: ``transformer.{l}.*``, ``iou_token``, ``mask_tokens``, ``output_upscaling.{0,1}``,
``upsample_2x.{0,1}``, ``pe1.positional_encoding_gaussian_matrix``,
``output_hypernetworks_mlps.{k}.layers.{0,1,2}``, ``iou_prediction_head.layers.*``, ``level_embed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MLP, LayerNorm2d
from .prompt_encoder import PositionEmbeddingRandom
from .two_way_transformer import TwoWayTransformer

if TYPE_CHECKING:
    from .config import PixelLMConfig


class MultiScaleMaskDecoder(nn.Module):
    def __init__(
        self,
        transformer_dim: int,
        num_scales: int,
        depth: int,
        mlp_dim: int,
        num_heads: int,
        attention_downsample_rate: int,
        num_mask_tokens: int,
        upscale_channels: int,
        iou_head_depth: int,
        iou_head_hidden_dim: int,
        upsample_scales: bool = True,
    ) -> None:
        super().__init__()
        # True (released): every scale arrives at G x G and levels >= 1 upsample theirs 2x with
        # ``upsample_2x``. False: level l's features already arrive at 2G x 2G (a CNN's stride-8 map
        # beside its stride-16 one), so they are used as they are and ``upsample_2x`` is not built.
        self.upsample_scales = upsample_scales
        self.transformer_dim = transformer_dim
        self.num_scales = num_scales
        self.num_mask_tokens = num_mask_tokens
        self.transformer = nn.ModuleList(
            TwoWayTransformer(depth, transformer_dim, num_heads, mlp_dim, attention_downsample_rate)
            for _ in range(num_scales)
        )
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, upscale_channels, kernel_size=2, stride=2),
            LayerNorm2d(upscale_channels),
            nn.GELU(),
        )
        if upsample_scales:
            self.upsample_2x = nn.Sequential(
                nn.ConvTranspose2d(transformer_dim, transformer_dim, kernel_size=2, stride=2),
                LayerNorm2d(transformer_dim),
                nn.GELU(),
            )
        self.pe1 = PositionEmbeddingRandom(transformer_dim // 2)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, upscale_channels, 3) for _ in range(num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, num_mask_tokens, iou_head_depth)
        self.level_embed = nn.Embedding(num_scales, transformer_dim)

    @classmethod
    def from_config(cls, config: PixelLMConfig) -> MultiScaleMaskDecoder:
        """The decoder of a PixelLM: width ``out_dim``, one level per scale, the ``decoder_*`` sizes."""
        return cls(
            transformer_dim=config.out_dim,
            num_scales=config.num_scales,
            depth=config.decoder_depth,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_num_heads,
            attention_downsample_rate=config.decoder_attention_downsample,
            num_mask_tokens=config.num_mask_tokens,
            upscale_channels=config.decoder_upscale_channels,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
            upsample_scales=config.decoder_upsample_scales,
        )

    def forward(
        self,
        image_features: Sequence[torch.Tensor],
        image_pe: torch.Tensor,
        dense_embedding: torch.Tensor,
        prompts: torch.Tensor,
        image_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one mask per target.

        image_features: L tensors (I, D, G, G), the neck outputs of I images (I = 1 without image_index);
                        with ``upsample_scales`` False, scales l >= 1 are (I, D, 2G, 2G).
        image_pe:       (1, D, G, G) the prompt encoder's dense positional encoding.
        dense_embedding:(1, D, G, G) the "no mask" dense prompt.
        prompts:        (T, L, D) the fused seg vector of each target per scale.
        image_index:    (T,) long, the image of each target (batched answers); None: all of image 0.
        Returns low-res logits (T, 4G, 4G) and the last level's mask-0 IoU prediction (T,).
        """
        if len(image_features) != self.num_scales or prompts.shape[1] != self.num_scales:
            raise ValueError(f"expected {self.num_scales} scales, got {len(image_features)} maps / {tuple(prompts.shape)}")
        num_targets = prompts.shape[0]
        grid = image_features[0].shape[-1]
        out_size = 4 * grid
        fused = None
        previous = None
        iou = prompts.new_zeros(num_targets)
        for level in range(self.num_scales):
            logits, iou = self._decode_level(level, image_features[level], image_pe, dense_embedding, prompts, previous, image_index)
            previous = logits
            resized = F.interpolate(logits.float(), size=(out_size, out_size), mode="bilinear", align_corners=False)
            term = (1.0 / self.num_scales) * resized.to(logits.dtype)
            fused = term if fused is None else fused + term
        assert fused is not None
        return fused[:, 0], iou

    def _decode_level(
        self,
        level: int,
        features: torch.Tensor,
        image_pe: torch.Tensor,
        dense_embedding: torch.Tensor,
        prompts: torch.Tensor,
        previous: torch.Tensor | None,
        image_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One level for all targets -> mask-0 logits (T, 1, h', w') and IoU (T,)."""
        num_targets = prompts.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(num_targets, -1, -1), prompts[:, level : level + 1]], dim=1)
        tokens = tokens + self.level_embed.weight[level]

        # Image-side work that does not depend on the target runs once per image.
        src = features
        pos = image_pe
        dense = dense_embedding
        if level > 0 and self.upsample_scales:
            src = self.upsample_2x(src)
        if image_index is not None:
            src = src.index_select(0, image_index)  # (T, D, h, w): each target's own image
        if level > 0:
            height, width = src.shape[-2:]
            pos = self.pe1((height, width)).unsqueeze(0)
            dense = F.interpolate(dense.float(), size=(height, width), mode="bilinear", align_corners=False).to(dense.dtype)
            assert previous is not None
            gate = previous.mean(dim=1, keepdim=True)
            if gate.shape[-2:] != (height, width):  # only for L > 2, which no released model has
                gate = F.interpolate(gate.float(), size=(height, width), mode="bilinear", align_corners=False).to(gate.dtype)
            src = (gate.sigmoid() + 1) * src  # (T, D, h, w): the previous level's mask gates the features
        src = src + dense
        height, width = src.shape[-2:]
        src = src.expand(num_targets, -1, -1, -1)
        pos = pos.expand(num_targets, -1, -1, -1)

        hs, image_tokens = self.transformer[level](src, pos, tokens)
        iou_token_out = hs[:, 0]
        mask_token_0 = hs[:, 1]

        image_map = image_tokens.transpose(1, 2).reshape(num_targets, self.transformer_dim, height, width)
        upscaled = self.output_upscaling(image_map)  # (T, c, 2h, 2w)
        # single-mask output: only mask token 0's hypernetwork is needed
        hyper = self.output_hypernetworks_mlps[0](mask_token_0)  # (T, c)
        channels, up_h, up_w = upscaled.shape[1:]
        logits = torch.bmm(hyper.unsqueeze(1), upscaled.reshape(num_targets, channels, up_h * up_w))
        iou = self.iou_prediction_head(iou_token_out)[:, 0]
        return logits.view(num_targets, 1, up_h, up_w), iou
