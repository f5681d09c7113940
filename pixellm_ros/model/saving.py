"""Our own model folder: ``pixellm_config.json`` (PixelLMConfig.to_dict()), ``model.safetensors``
(the whole network, vision tower included) and the tokenizer files. ``load_pixellm`` reads it back
bit for bit; the released layout is written by ``released_layout.save_released_layout``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import save_file

from .fused_projections import SAVE_REFUSAL, has_fused_projections
from .strict_loading import CheckpointError
from .tokenizer import check_tokenizer_fits
from .weight_files import SAFETENSORS_FILE

if TYPE_CHECKING:
    from .config import PixelLMConfig
    from .pixellm import PixelLMForCausalLM
    from .tokenizer import PixelLMTokenizer

OUR_CONFIG_FILE = "pixellm_config.json"


def save_pixellm(
    model: PixelLMForCausalLM, tokenizer: PixelLMTokenizer, folder: str | os.PathLike[str]
) -> Path:
    """Write our own folder: ``pixellm_config.json``, ``model.safetensors`` and the tokenizer files.

    A model with fused projections is refused (CheckpointError): unfuse it first."""
    if has_fused_projections(model):
        raise CheckpointError(SAVE_REFUSAL)
    config: PixelLMConfig = model.config
    check_tokenizer_fits(tokenizer, config, CheckpointError)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().to("cpu").contiguous() for key, tensor in model.state_dict().items()}
    save_file(state, str(root / SAFETENSORS_FILE), metadata={"format": "pt"})
    (root / OUR_CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(root)
    return root
