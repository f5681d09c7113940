"""Name prompts: a target named "colour shape" as a prompt vector, stage 1's stand-in for the LLM.

Stage 1 (``decoder_pretraining``) trains the vision tower and the decoder with these vectors as
seg prompts; stage 2 pulls the LLM's fused seg prompts towards the frozen vector of each target's
name (``prompt_distillation_loss``, a training aid of ``forward``). Not part of the shipped model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pixellm_ros.world.ontology import COLOUR_NAMES, SHAPE_NAMES


class NamePrompts(nn.Module):
    """Target name "colour shape" -> a prompt vector colour_vector + shape_vector, (T, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.colours = nn.Embedding(len(COLOUR_NAMES), dim)
        self.shapes = nn.Embedding(len(SHAPE_NAMES), dim)
        self._colour_index = {name: i for i, name in enumerate(COLOUR_NAMES)}
        self._shape_index = {name: i for i, name in enumerate(SHAPE_NAMES)}

    def forward(self, names: Sequence[str]) -> torch.Tensor:
        colour_ids, shape_ids = [], []
        for name in names:
            colour, shape = name.split(" ", 1)
            colour_ids.append(self._colour_index[colour])
            shape_ids.append(self._shape_index[shape])
        device = self.colours.weight.device
        return self.colours(torch.tensor(colour_ids, device=device)) + self.shapes(torch.tensor(shape_ids, device=device))


def prompt_distillation_loss(prompts: torch.Tensor, names: Sequence[str], name_prompts: NamePrompts) -> torch.Tensor:
    """prompts (T, L, D) fused seg vectors of T targets, their names -> mean squared distance to the
    frozen NamePrompts vector of each name (the same target vector for every scale)."""
    with torch.no_grad():
        target = name_prompts(names).to(prompts.dtype)
    return (prompts - target.unsqueeze(1)).pow(2).mean()
