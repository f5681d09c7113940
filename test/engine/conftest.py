"""Fixtures for the engine tests: a tiny tokenizer trained here and a tiny random PixelLM (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine_helpers import build_tiny_model
from pixellm_ros.engine.engine import PixelLMEngine
from pixellm_ros.model import PixelLMForCausalLM
from pixellm_ros.model.sentencepiece_training import train_llama_style_sentencepiece
from pixellm_ros.model.tokenizer import PixelLMTokenizer

# Prompt and answer sentences in PixelLM's style, enough for a few hundred BPE merges.
ENGINE_CORPUS: tuple[str, ...] = (
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: Segment the red cup on the table. Please respond with segmentation mask. ASSISTANT: Sure, it is the red cup.",
    "USER: What can I use to drink hot coffee? ASSISTANT: You can use the mug on the left, next to the bowl.",
    "Where is the apple? Sure, the apple is near 3 bananas and 12 oranges.",
    "Find every bottle on the shelf. There are 2 bottles and 1 glass.",
    "The robot should pick up the blue block and place it in the tray.",
    "Show me the tools: a hammer, a screwdriver and a wrench.",
)


@pytest.fixture(autouse=True, scope="session")
def _single_thread() -> None:
    # The test machine's cores are shared; tiny models gain nothing from more threads.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def engine_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PixelLMTokenizer:
    """LLaMA-style BPE model (~320 pieces) + [SEG0]..[SEG5], <im_start>, <im_end> after it."""
    out: Path = tmp_path_factory.mktemp("engine_spm") / "tokenizer.model"
    train_llama_style_sentencepiece(list(ENGINE_CORPUS) * 8, out, vocab_size=320, model_type="bpe")
    return PixelLMTokenizer.build(out, num_seg_tokens=6)


@pytest.fixture(scope="module")
def tiny_model(engine_tokenizer: PixelLMTokenizer) -> PixelLMForCausalLM:
    return build_tiny_model(len(engine_tokenizer))


@pytest.fixture()
def engine(tiny_model: PixelLMForCausalLM, engine_tokenizer: PixelLMTokenizer) -> PixelLMEngine:
    """A fresh engine (empty feature cache) over the module's tiny model."""
    return PixelLMEngine(tiny_model, engine_tokenizer)
