"""Tiny LLaMA-style tokenizers trained here on ``corpus.TINY_CORPUS`` (no downloads)."""

from __future__ import annotations

from pathlib import Path

from pixellm_ros.model.constants import RELEASED_SEG_TOKENS
from pixellm_ros.model.sentencepiece_training import train_llama_style_sentencepiece
from pixellm_ros.model.tokenizer import PixelLMTokenizer

from .corpus import CORPUS_REPEATS, TINY_CORPUS


def train_tiny_sentencepiece(model_path: Path, vocab_size: int = 400, model_type: str = "bpe") -> Path:
    """A LLaMA-style sentencepiece model (byte fallback, ids 0/1/2 = unk/bos/eos) at ``model_path``."""
    return train_llama_style_sentencepiece(
        list(TINY_CORPUS) * CORPUS_REPEATS, model_path, vocab_size=vocab_size, model_type=model_type
    )


def build_tiny_tokenizer(
    folder: Path, vocab_size: int = 400, num_seg_tokens: int = RELEASED_SEG_TOKENS, model_type: str = "bpe"
) -> PixelLMTokenizer:
    """The released arrangement on a tiny base vocabulary: [SEG0]..[SEG5], <im_start>, <im_end>."""
    return PixelLMTokenizer.build(
        train_tiny_sentencepiece(Path(folder) / "tokenizer.model", vocab_size, model_type), num_seg_tokens
    )
