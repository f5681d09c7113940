"""Logits hooks that script the answer: for benchmarks (fixed token counts) and tests.

They plug into the engine's ``logits_processor`` hook (transformers' LogitsProcessor signature),
so the model still runs every step for real; only the choice of the next token is dictated.
"""

from __future__ import annotations

from typing import Sequence

import torch


class ScriptedTokens:
    """Force the first ``len(tokens)`` generated tokens to ``tokens``, then let the model choose.

    prompt_length: the number of prompt ids P (as ``PixelLMEngine.prompt_ids`` returns them); the
    hook's ``input_ids`` hold P + t ids at step t. ``suppress`` ids (e.g. the end-of-sequence) are
    never chosen after the script, so a run can be made to last exactly max_new_tokens.
    """

    def __init__(self, tokens: Sequence[int], prompt_length: int, suppress: Sequence[int] = ()) -> None:
        self.tokens = [int(t) for t in tokens]
        self.prompt_length = int(prompt_length)
        self.suppress = [int(t) for t in suppress]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = int(input_ids.shape[1]) - self.prompt_length
        if step < 0:
            raise ValueError(f"ScriptedTokens got {input_ids.shape[1]} ids, fewer than its prompt of {self.prompt_length}")
        if step < len(self.tokens):
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.tokens[step]] = 0.0
            return forced
        if self.suppress:
            scores = scores.clone()
            scores[:, self.suppress] = float("-inf")
        return scores
