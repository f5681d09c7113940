"""Writing the trained model as a model folder, optionally with half-precision weights.

The shipped model must stay small on disk; float16 halves it. ``load_pixellm`` converts every
floating tensor to the dtype it is asked for (float32 by default), so a float16 folder loads as
a float32 model whose weights are the float16-rounded ones.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from pixellm_ros.model.checkpoint import save_pixellm
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.model.tokenizer import PixelLMTokenizer

EXPORT_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}


def export_model(
    model: PixelLMForCausalLM, tokenizer: PixelLMTokenizer, folder: str | os.PathLike[str], dtype: str = "float16"
) -> Path:
    """Save ``model`` (left untouched) into ``folder`` with its floating weights in ``dtype``."""
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"export dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    copy_on_cpu = copy.deepcopy(model).to(device="cpu", dtype=EXPORT_DTYPES[dtype]).eval()
    return save_pixellm(copy_on_cpu, tokenizer, folder)
