"""Shared fixtures for the model tests: tiny sentencepiece models trained here, no downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixellm_ros.model.sentencepiece_training import train_llama_style_sentencepiece
from pixellm_ros.model.tokenizer import PixelLMTokenizer

# Instruction / answer sentences in the style of PixelLM's training data (MUSE, referring
# segmentation): enough words for a few hundred BPE merges.
TINY_CORPUS: tuple[str, ...] = (
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: Segment the red cup on the table. Please respond with segmentation mask. ASSISTANT: Sure, it is the red cup.",
    "USER: What can I use to drink hot coffee? Please respond with segmentation mask.",
    "ASSISTANT: You can use the mug on the left, next to the bowl.",
    "Where is the apple? Sure, the apple is near 3 bananas and 12 oranges.",
    "Find every bottle on the shelf. There are 2 bottles and 1 glass.",
    "The dog is playing with the frisbee, and the cat is sleeping on the sofa.",
    "Which object could hold the flowers? The vase behind the book.",
    "Please segment the person riding the bicycle (the one wearing a helmet).",
    "It is the small green box; the large box is empty!",
    "Show me the tools: a hammer, a screwdriver and a wrench.",
    "The robot should pick up the blue block and place it in the tray.",
)


@pytest.fixture(scope="session")
def tiny_sp_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaMA-style BPE sentencepiece model (byte fallback, ids 0/1/2 = unk/bos/eos), ~400 pieces."""
    out = tmp_path_factory.mktemp("spm") / "tokenizer.model"
    return train_llama_style_sentencepiece(list(TINY_CORPUS) * 8, out, vocab_size=400, model_type="bpe")


@pytest.fixture(scope="session")
def tiny_unigram_sp_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same corpus as a unigram model (the tokenizer must not depend on the model type)."""
    out = tmp_path_factory.mktemp("spm_unigram") / "tokenizer.model"
    return train_llama_style_sentencepiece(list(TINY_CORPUS) * 8, out, vocab_size=400, model_type="unigram")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_sp_model_path: Path) -> PixelLMTokenizer:
    """The released arrangement: [SEG0]..[SEG5], <im_start>, <im_end> after the base vocabulary."""
    return PixelLMTokenizer.build(tiny_sp_model_path, num_seg_tokens=6)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tiny_tokenizer: PixelLMTokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_tokenizer`` saved in the released file layout."""
    folder = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer.save_pretrained(folder)
    return folder
