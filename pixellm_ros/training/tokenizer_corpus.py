"""The shipped model's tokenizer: a small sentencepiece model trained on the world's own text.

The corpus is what the model will read and write: the llava_v1 system prompt and role words, and
the instructions and answers of many training-split scenes (so no held-out colour x shape pair is
named in it; their words still appear separately). The model is trained with LLaMA's settings
(``model.sentencepiece_training``: BPE, byte fallback, split digits, identity normalisation), so
unseen text still encodes, byte by byte. PixelLMTokenizer.build then appends the N*L seg tokens
and <im_start>/<im_end>, in the released order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from pixellm_ros.engine.prompt import ASSISTANT_ROLE, SYSTEM_PROMPT, USER_ROLE
from pixellm_ros.model.sentencepiece_training import train_llama_style_sentencepiece
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from pixellm_ros.world import make_questions, sample_scene
from pixellm_ros.world.muse_export import scene_rng
from pixellm_ros.muse.schema import SEG_PLACEHOLDER
from pixellm_ros.world.phrasing import NO_TARGET_ANSWER

DEFAULT_VOCAB_SIZE = 640  # upper bound; 259 of it are control and byte pieces
DEFAULT_CORPUS_SCENES = 400
# The corpus uses its own seed, so its scenes are not the training stream's.
CORPUS_SEED = 7_000_003


def world_sentences(num_scenes: int, seed: int = CORPUS_SEED, progress: bool = False) -> Iterator[str]:
    """Instructions and answers (``{seg}`` removed) of ``num_scenes`` training-split scenes."""
    for index in tqdm(range(num_scenes), desc="tokenizer corpus", unit="scene", disable=not progress):
        rng = scene_rng(seed, "train", index)
        scene = sample_scene(rng, (224, 224), split="train")
        for question in make_questions(scene, rng, max_questions=8, split="train"):
            yield question.question
            # The answer as the model writes it, with the seg tokens cut out (they are added tokens).
            yield " ".join(question.answer.replace(SEG_PLACEHOLDER, " ").split())


def tokenizer_corpus(num_scenes: int = DEFAULT_CORPUS_SCENES, seed: int = CORPUS_SEED, progress: bool = False) -> list[str]:
    """The full corpus: template text (repeated so its words become whole pieces) + world text."""
    template = [SYSTEM_PROMPT, f"{USER_ROLE}:", f"{ASSISTANT_ROLE}:", NO_TARGET_ANSWER]
    return template * max(1, num_scenes // 4) + list(world_sentences(num_scenes, seed, progress))


def train_world_tokenizer(
    out_dir: str | os.PathLike[str],
    num_seg_tokens: int,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    num_scenes: int = DEFAULT_CORPUS_SCENES,
    seed: int = CORPUS_SEED,
    progress: bool = False,
) -> PixelLMTokenizer:
    """Train the sentencepiece model, add the seg/image tokens, save the tokenizer into ``out_dir``.

    Returns the tokenizer (``len(tok)`` = sentencepiece pieces + num_seg_tokens + 2).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    sp_path = folder / "world_sentencepiece.model"
    train_llama_style_sentencepiece(tokenizer_corpus(num_scenes, seed, progress), sp_path, vocab_size=vocab_size)
    tokenizer = PixelLMTokenizer.build(sp_path, num_seg_tokens=num_seg_tokens, use_im_start_end=True)
    sp_path.unlink()  # save_pretrained writes it again as tokenizer.model
    tokenizer.save_pretrained(folder)
    return tokenizer
