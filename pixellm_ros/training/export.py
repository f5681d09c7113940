"""Writing the trained embedded model as a delta folder (``model.base_parts``), in float16.

The folder keeps the new parts whole and, of the pretrained LLM, only the adapters (scale folded
into B) and the added tokens' rows; the encoder and the base LLM come from their packages at load
time. ``load_pixellm`` reads it back (adapters merged), as the engine does. Beside it, for training
only, ``prompt_head.safetensors``: stage 1's ``PromptHead``, which a later run needs to train stage 2
again on this folder's stage-1 parts (``train(stage1_from=...)``); inference never reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from safetensors.torch import save_file

from pixellm_ros.model.base_parts import ADDED_EMBEDDINGS, ENCODER_PREFIX, LLM_PREFIX, LORA_A, LORA_B
from pixellm_ros.model.bpe_tokenizer import BPETokenizer
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.model.saving import OUR_CONFIG_FILE
from pixellm_ros.model.weight_files import SAFETENSORS_FILE

ADAPTER = "default"
PROMPT_HEAD_FILE = "prompt_head.safetensors"


def delta_state(model: PixelLMForCausalLM, tokenizer: BPETokenizer) -> dict[str, torch.Tensor]:
    """The tensors a delta folder holds of ``model`` (adapters injected by ``stage2.add_adapters``)."""
    out = {k: v for k, v in model.state_dict().items() if not k.startswith(ENCODER_PREFIX) and not k.startswith(LLM_PREFIX)}
    added = None
    for path, module in model.language_model.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            scale = float(module.scaling[ADAPTER])
            out[LLM_PREFIX + path + LORA_A] = module.lora_A[ADAPTER].weight.detach()
            out[LLM_PREFIX + path + LORA_B] = module.lora_B[ADAPTER].weight.detach() * scale
        elif isinstance(module, TrainableTokensLayer) and added is None and ADAPTER in module.trainable_tokens_delta:
            indices = list(module.token_indices[ADAPTER])
            if indices != list(tokenizer.added_tokens.values()):
                raise ValueError(f"trainable token rows {indices} are not the added tokens {tokenizer.added_tokens}")
            added = module.trainable_tokens_delta[ADAPTER].detach()
    if added is None:
        raise ValueError("the model has no trainable added-token rows: train it with stage2.add_adapters first")
    out[ADDED_EMBEDDINGS] = added
    return out


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state.items()}


def export_embedded(
    model: PixelLMForCausalLM, tokenizer: BPETokenizer, folder: str | os.PathLike[str], dtype: torch.dtype = torch.float16,
    prompt_head: torch.nn.Module | None = None,
) -> Path:
    """Write ``folder``: pixellm_config.json, model.safetensors (the deltas, ``dtype``), the tokenizer,
    and with ``prompt_head`` its ``PROMPT_HEAD_FILE`` (``dtype``, as the stage-1 parts it belongs to)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    save_file(_cast(delta_state(model, tokenizer), dtype), str(root / SAFETENSORS_FILE), metadata={"format": "pt"})
    if prompt_head is not None:
        save_file(_cast(prompt_head.state_dict(), dtype), str(root / PROMPT_HEAD_FILE), metadata={"format": "pt"})
    (root / OUR_CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(root)
    return root
