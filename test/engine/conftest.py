"""Fixtures for the engine tests: a tiny tokenizer trained here and a tiny random PixelLM (no downloads)."""

from __future__ import annotations

import pytest
import torch

from pixellm_ros.engine.engine import PixelLMEngine
from pixellm_ros.model import PixelLMForCausalLM
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from support.tiny_models import build_tiny_model
from support.tokenizers import build_tiny_tokenizer


@pytest.fixture(autouse=True, scope="session")
def _single_thread() -> None:
    # The test machine's cores are shared; tiny models gain nothing from more threads.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def engine_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PixelLMTokenizer:
    """LLaMA-style BPE model (~320 pieces) + [SEG0]..[SEG5], <im_start>, <im_end> after it."""
    return build_tiny_tokenizer(tmp_path_factory.mktemp("engine_spm"), vocab_size=320)


@pytest.fixture(scope="module")
def tiny_model(engine_tokenizer: PixelLMTokenizer) -> PixelLMForCausalLM:
    return build_tiny_model(len(engine_tokenizer))


@pytest.fixture()
def engine(tiny_model: PixelLMForCausalLM, engine_tokenizer: PixelLMTokenizer) -> PixelLMEngine:
    """A fresh engine (empty feature cache) over the module's tiny model."""
    return PixelLMEngine(tiny_model, engine_tokenizer)
