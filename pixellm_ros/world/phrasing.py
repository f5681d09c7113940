"""The world's answer forms (the instruction phrasing is MUSE's: ``muse.instruction``).

Answers carry one ``{seg}`` placeholder right after each target's phrase (MUSE's
``text_answers`` convention); training replaces it with the real seg token string with
``fill_seg``. Answers are kept short and regular for a small language model:

- no target:  "There is no such object."
- one:        "The red ball {seg}."
- several:    "The red ball {seg}, the blue box {seg} and the green star {seg}."
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pixellm_ros.muse.schema import SEG_PLACEHOLDER
from pixellm_ros.world.ontology import HELDOUT_COLOUR_SHAPE, plural

NO_TARGET_ANSWER = "There is no such object."


def compose_answer(phrases: Sequence[str]) -> str:
    """The answer naming each target (in order), each followed by ``{seg}``.

    Args:
        phrases: one noun phrase per target without article, e.g. ["red ball", "blue box"].
    """
    if not phrases:
        return NO_TARGET_ANSWER
    parts = [f"the {p} {SEG_PLACEHOLDER}" for p in phrases]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return body[0].upper() + body[1:] + "."


def count_placeholders(answer: str) -> int:
    """How many targets an answer with ``{seg}`` placeholders names."""
    return answer.count(SEG_PLACEHOLDER)


def fill_seg(answer: str, seg_text: str) -> str:
    """Replace every ``{seg}`` with ``seg_text`` (e.g. "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]")."""
    return answer.replace(SEG_PLACEHOLDER, seg_text)


_HELDOUT_PATTERNS = tuple(
    re.compile(rf"\b{colour} (?:{shape}|{plural(shape)})\b", re.IGNORECASE) for colour, shape in HELDOUT_COLOUR_SHAPE
)


def mentions_heldout_pair(text: str) -> bool:
    """Whether ``text`` names a held-out colour x shape pair ("red star", "red stars")."""
    return any(p.search(text) for p in _HELDOUT_PATTERNS)
