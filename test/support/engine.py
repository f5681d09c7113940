"""Helpers of the engine tests: scripted answers (a logits hook), random images, and the node tests'
reference engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixellm_ros.engine.engine import PixelLMEngine
from pixellm_ros.engine.forcing import ScriptedTokens


def scripted(engine: PixelLMEngine, instruction: str, text_and_groups: list[str | int], suppress_eos: bool = False) -> ScriptedTokens:
    """A logits hook forcing an answer: strings are encoded, ints are taken as ids (e.g. eos)."""
    tok = engine.tokenizer
    ids: list[int] = []
    for part in text_and_groups:
        ids.extend([part] if isinstance(part, int) else tok.encode(part, add_bos=False))
    return ScriptedTokens(ids, len(engine.prompt_ids(instruction)), suppress=[tok.eos_id] if suppress_eos else ())


def rgb_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def reference_engine(model_dir: Path) -> PixelLMEngine:
    """The engine a node test compares the node's answers with: the node's model folder on the CPU,
    in this process (its torch on one thread, as the node processes run: the same floats)."""
    return PixelLMEngine.from_pretrained(model_dir, device="cpu")
