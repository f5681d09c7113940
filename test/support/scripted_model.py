"""A tiny PixelLM whose weights are set so that its greedy answer is known: for the node tests.

A randomly initialised model answers with random tokens and almost never writes a complete seg
group, so a node test would see no targets. Here the tiny model is real (the engine runs every
layer) but a few rows of its weights are written by hand: the answer tokens get large, mutually
orthogonal input embeddings, which dominate the residual stream, and the output row of each
answer token's successor points along its predecessor's embedding. Greedy decoding therefore
walks a fixed chain

    <last prompt token> -> "the" "red" "cup" [SEG0] .. [SEG5] -> end of sequence

whatever the image and the instruction; the masks still come from the image through the real
vision tower and pixel decoder. ``loop=True`` replaces the end of sequence with "the" again,
so that an answer runs until max_new_tokens (for cancelling a long answer).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pixellm_ros.engine.prompt import build_prompt_ids
from pixellm_ros.model import PixelLMForCausalLM
from pixellm_ros.model.checkpoint import save_pixellm

from .tiny_models import tiny_config
from .tokenizers import build_tiny_tokenizer

ANSWER_TEXT = " the red cup"
EMBED_SCALE = 30.0   # residual stream dominated by the token's own embedding
LOGIT_SCALE = 8.0    # successor's logit margin over the random rows


def build_scripted_model(folder: Path, loop: bool = False, seed: int = 0, llm_layers: int | None = None,
                         max_positions: int | None = None) -> Path:
    """Write a tiny model (save_pixellm layout) answering "the red cup" + one seg group to ``folder``.

    llm_layers / max_positions: a deeper LLM with more positions, for an answer that runs for
    seconds (the node tests that need a request still running when something happens).
    """
    tokenizer = build_tiny_tokenizer(folder.parent / f"{folder.name}_spm", vocab_size=360)
    config = tiny_config(len(tokenizer))
    if llm_layers is not None:
        config.text.num_hidden_layers = llm_layers
    if max_positions is not None:
        config.text.max_position_embeddings = max_positions
    torch.manual_seed(seed)
    model = PixelLMForCausalLM(config).eval()

    last_prompt_token = build_prompt_ids(tokenizer, "anything", config.use_im_start_end)[-1]
    words = tokenizer.encode(ANSWER_TEXT, add_bos=False)
    chain = [last_prompt_token, *words, *tokenizer.seg_token_ids]
    successors = {chain[i]: chain[i + 1] for i in range(len(chain) - 1)}
    # [SEG5] ends the answer, or (loop) starts "the red cup" again: "the" then follows two tokens.
    successors[chain[-1]] = words[0] if loop else tokenizer.eos_id
    if len(set(chain)) != len(chain):
        raise ValueError(f"the scripted chain repeats a token: {chain}")

    language_model = model.language_model
    embeddings = language_model.get_input_embeddings().weight
    head = language_model.lm_head.weight
    directions = torch.linalg.qr(torch.randn(config.text.hidden_size, len(chain)))[0].T  # orthonormal rows
    with torch.no_grad():
        for direction, token in zip(directions, chain):
            embeddings[token] = EMBED_SCALE * direction
        for direction, token in zip(directions, chain):
            head[successors[token]] += LOGIT_SCALE * direction
    return save_pixellm(model, tokenizer, folder)
