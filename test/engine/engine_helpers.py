"""Helpers of the engine tests: a tiny real model, scripted answers, random images."""

from __future__ import annotations

import numpy as np
import torch

from pixellm_ros.engine.engine import PixelLMEngine
from pixellm_ros.engine.forcing import ScriptedTokens
from pixellm_ros.model import PixelLMConfig, PixelLMForCausalLM


def build_tiny_model(vocab_size: int, seed: int = 0) -> PixelLMForCausalLM:
    """A real, randomly initialised tiny PixelLM whose masks are neither empty nor full.

    At the default init the seg embeddings are small next to the decoder's own tokens and the
    mask logits hover around 0, so every mask would be (almost) the whole image. Widening the seg
    head and the mask hypernetworks' output layer (still random weights, nothing scripted) makes
    masks depend visibly on image, prompt and target, which the tests need to tell them apart.
    """
    torch.manual_seed(seed)
    model = PixelLMForCausalLM(PixelLMConfig.tiny(vocab_size=vocab_size)).eval()
    with torch.no_grad():
        for layer in (model.text_hidden_fcs[0][0], model.text_hidden_fcs[0][2]):
            torch.nn.init.normal_(layer.weight, std=2.0 / layer.weight.shape[1] ** 0.5)
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20.0)
            mlp.layers[-1].bias.zero_()
    return model


def scripted(engine: PixelLMEngine, instruction: str, text_and_groups: list[str | int], suppress_eos: bool = False) -> ScriptedTokens:
    """A logits hook forcing an answer: strings are encoded, ints are taken as ids (e.g. eos)."""
    tok = engine.tokenizer
    ids: list[int] = []
    for part in text_and_groups:
        ids.extend([part] if isinstance(part, int) else tok.encode(part, add_bos=False))
    return ScriptedTokens(ids, len(engine.prompt_ids(instruction)), suppress=[tok.eos_id] if suppress_eos else ())


def rgb_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
