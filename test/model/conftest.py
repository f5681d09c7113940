"""Shared fixtures for the model tests: tiny sentencepiece models trained here, no downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixellm_ros.model.tokenizer import PixelLMTokenizer
from support.tokenizers import train_tiny_sentencepiece


@pytest.fixture(scope="session")
def tiny_sp_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaMA-style BPE sentencepiece model (byte fallback, ids 0/1/2 = unk/bos/eos), ~400 pieces."""
    return train_tiny_sentencepiece(tmp_path_factory.mktemp("spm") / "tokenizer.model", vocab_size=400)


@pytest.fixture(scope="session")
def tiny_unigram_sp_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same corpus as a unigram model (the tokenizer must not depend on the model type)."""
    out = tmp_path_factory.mktemp("spm_unigram") / "tokenizer.model"
    return train_tiny_sentencepiece(out, vocab_size=400, model_type="unigram")


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
