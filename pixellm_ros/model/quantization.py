"""Quantised loading of the language model's decoder layers (``load_in``, see load_options).

- "8bit" / "4bit": bitsandbytes' LLM.int8 and NF4 Linear modules (CUDA only), quantised on their
  way to the GPU;
- "int8_weight" / "int4_weight": torchao's weight-only quantisation (``quantize_``): int8 per
  output row (CPU and CUDA; fast on CUDA once the step is compiled, which fuses the dequantisation
  into the matrix-vector product) and int4 in groups of 128 along the input (64 or 32 where a
  width needs it; CUDA only, the tinygemm kernel, bfloat16), quantised on the device one layer at
  a time, so that a 7B model's bfloat16 layers are never all on the GPU at once.

lm_head, the embeddings, the vision tower and the PixelLM heads stay in ``dtype``. Fused
projections (fused_projections.py) are quantised as the one Linear they are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from .load_options import BITSANDBYTES_LOAD_IN, TORCHAO_LOAD_IN

if TYPE_CHECKING:
    from .pixellm import PixelLMForCausalLM

INT4_GROUP_SIZES = (128, 64, 32)  # the tinygemm kernel's group sizes, the largest that fits first


def quantize_language_model(
    model: PixelLMForCausalLM, mode: str, dtype: torch.dtype, device: torch.device | None = None
) -> None:
    """Quantise the LLaMA decoder layers' Linear modules in place (``mode`` from LOAD_IN_CHOICES).

    device: where the torchao modes quantise (each layer is moved there first; default: where it
    is). bitsandbytes' modules quantise when the model is moved to the GPU afterwards.
    """
    if mode in BITSANDBYTES_LOAD_IN:
        _bitsandbytes(model, mode, dtype)
    elif mode in TORCHAO_LOAD_IN:
        _torchao(model, mode, device)
    else:
        raise ValueError(f"unknown quantisation {mode!r}")


def _bitsandbytes(model: PixelLMForCausalLM, mode: str, dtype: torch.dtype) -> None:
    """bitsandbytes' documented route: build the quantised module, load the fp16/bf16 weights
    into it, and move it to the GPU."""
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


def _torchao(model: PixelLMForCausalLM, mode: str, device: torch.device | None) -> None:
    quantize_, config = _torchao_config(mode, model)
    for layer in model.language_model.model.layers:
        if device is not None:
            layer.to(device)
        quantize_(layer, config)  # every nn.Linear of the layer


def _torchao_config(mode: str, model: PixelLMForCausalLM):  # type: ignore[no-untyped-def]
    """(torchao.quantize_, its config for ``mode``). set_inductor_config=False: loading a model
    must not change the process-wide compiler settings (torchao's would turn on coordinate-descent
    autotuning for every later torch.compile)."""
    torchao_logger = logging.getLogger("torchao")
    level = torchao_logger.level
    # torchao warns at import about its CUDA extensions wherever they do not load (a CPU torch):
    # the weight-only configs used here do not need them.
    torchao_logger.setLevel(logging.ERROR)
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
    finally:
        torchao_logger.setLevel(level)
    if mode == "int8_weight":
        return quantize_, Int8WeightOnlyConfig(set_inductor_config=False)
    inputs = {m.in_features for m in model.language_model.model.layers.modules() if isinstance(m, nn.Linear)}
    group = next((g for g in INT4_GROUP_SIZES if all(n % g == 0 for n in inputs)), None)
    if group is None:
        raise ValueError(f"int4_weight needs Linear inputs divisible by one of {INT4_GROUP_SIZES}, got {sorted(inputs)}")
    return quantize_, Int4WeightOnlyConfig(
        group_size=group, int4_packing_format="tile_packed_to_4d", set_inductor_config=False
    )
