"""Train a small sentencepiece model with LLaMA's normaliser settings (tests, the shipped small model).

LLaMA's ``tokenizer.model`` is a BPE model with: identity normalisation, no removal of extra
whitespace, a dummy "▁" prefix, digits split one by one, byte fallback for anything outside the
vocabulary, ``<unk>``/``<s>``/``</s>`` at ids 0/1/2 and no pad piece. A model trained with the same
settings behaves the same way under PixelLMTokenizer's slow-LLaMA rule, only with fewer pieces.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

# 3 control pieces + 256 byte pieces: a byte-fallback model needs more than this many pieces.
MIN_BYTE_FALLBACK_VOCAB = 259


def train_llama_style_sentencepiece(
    sentences: Iterable[str],
    model_path: str | os.PathLike[str],
    vocab_size: int,
    model_type: str = "bpe",
) -> Path:
    """Train on ``sentences`` (in memory) and write the model to ``model_path``.

    ``vocab_size`` is an upper bound (the corpus may not support that many merges); it must leave
    room beyond the 259 control and byte pieces.
    """
    if vocab_size <= MIN_BYTE_FALLBACK_VOCAB:
        raise ValueError(f"vocab_size must exceed {MIN_BYTE_FALLBACK_VOCAB} (control + byte pieces), got {vocab_size}")
    if model_type not in ("bpe", "unigram"):
        raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_writer=writer,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type=model_type,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    out = Path(model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(writer.getvalue())
    return out
