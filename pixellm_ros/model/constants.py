"""The token strings and ids that the prompt, the tokenizer, the model and the training data share.

The released checkpoints add N*L seg tokens ``[SEG0]..[SEG{N*L-1}]`` (a single ``[SEG]`` when
N*L = 1) and then ``<im_start>``, ``<im_end>`` to LLaMA's vocabulary. ``<image>`` is not a token:
the prompt is cut there and the cut marked with LLaVA's ``IMAGE_TOKEN_INDEX``, which the model
replaces with the image tokens.
"""

from __future__ import annotations

import re

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id, replaced by the g*g image tokens in the model
IM_START_TOKEN = "<im_start>"
IM_END_TOKEN = "<im_end>"
SEG_TOKEN_PATTERN = re.compile(r"^\[SEG(\d*)\]$")

# The released models: N = 3 seg tokens per scale x L = 2 scales, then <im_start>, <im_end>.
RELEASED_SEG_TOKENS = 6
RELEASED_ADDED_TOKENS = RELEASED_SEG_TOKENS + 2


def seg_token_names(num_seg_tokens: int) -> list[str]:
    """The seg tokens of a model with N*L = ``num_seg_tokens``: ``[SEG]`` alone, else ``[SEG0]..``."""
    if num_seg_tokens < 1:
        raise ValueError(f"num_seg_tokens must be >= 1, got {num_seg_tokens}")
    if num_seg_tokens == 1:
        return ["[SEG]"]
    return [f"[SEG{k}]" for k in range(num_seg_tokens)]


def seg_group_text(num_seg_tokens: int = RELEASED_SEG_TOKENS) -> str:
    """How an answer writes one target: all seg tokens in order, "[SEG0][SEG1]..[SEG5]"."""
    return "".join(seg_token_names(num_seg_tokens))


def added_token_names(num_seg_tokens: int, use_im_start_end: bool = True) -> list[str]:
    """The added vocabulary in the released order: the seg tokens, then <im_start>, <im_end>."""
    return seg_token_names(num_seg_tokens) + ([IM_START_TOKEN, IM_END_TOKEN] if use_im_start_end else [])
