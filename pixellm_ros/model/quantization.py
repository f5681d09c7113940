"""Quantised loading of the language model (bitsandbytes, CUDA only): ``load_in="8bit" | "4bit"``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .pixellm import PixelLMForCausalLM


def quantize_language_model(model: PixelLMForCausalLM, mode: str, dtype: torch.dtype) -> None:
    """Swap the LLaMA decoder layers' Linear modules for bitsandbytes ones (quantised on .to(cuda)).

    bitsandbytes' documented route: build the quantised module, load the fp16/bf16 weights into
    it, and move it to the GPU. lm_head, the embeddings and the PixelLM heads stay in ``dtype``.
    """
    import bitsandbytes as bnb

    compute_dtype = torch.float16 if dtype == torch.float32 else dtype
    for parent in list(model.language_model.model.layers.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            has_bias = child.bias is not None
            if mode == "8bit":
                quantized = bnb.nn.Linear8bitLt(
                    child.in_features, child.out_features, bias=has_bias, has_fp16_weights=False, threshold=6.0
                )
                weights_dtype = torch.float16
            else:
                quantized = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, bias=has_bias, compute_dtype=compute_dtype, quant_type="nf4"
                )
                weights_dtype = compute_dtype
            quantized.load_state_dict({k: v.to(weights_dtype) for k, v in child.state_dict().items()})
            quantized.requires_grad_(False)
            setattr(parent, name, quantized)
