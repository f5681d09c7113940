"""Phrasing augmentation for training: the world's questions asked in other words, same targets.

A model trained only on the world's few templates learns the templates. Each training question is
therefore, with probability ``rate``, re-worded by light, meaning-preserving edits: a request frame
("can you ...", "please ..."), lower case or no final punctuation, PixelLM's "Please respond with
segmentation mask." dropped, word swaps from ``WORD_SWAPS`` (including shape and colour words the
world never uses) and, with probability ``typo_rate``, one typo (``misspell``). The evaluation's
paraphrase set (``evaluation.paraphrase``) is written apart from this one, with other words and
sentence forms; this module never imports it.
"""

from __future__ import annotations

import re

import numpy as np

from pixellm_ros.muse.instruction import INSTRUCTION_TEMPLATE

_SUFFIX = INSTRUCTION_TEMPLATE.split("{sent}")[1].strip()

FRAMES: tuple[str, ...] = ("can you tell me: {q}", "please answer: {q}", "hey, {q}", "{q} thanks", "quick question - {q}")

# word -> alternatives (whole words, case-insensitive on the first letter). Several words per shape
# and colour, so the model learns to map a word it was not shown in the tags onto the tag's word;
# none of them is a word of the evaluation's paraphrases.
_SHAPE_SWAPS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {  # (singular, plural) -> alternatives
    ("ball", "balls"): (("orb", "orbs"), ("globe", "globes"), ("bead", "beads"), ("marble", "marbles")),
    ("box", "boxes"): (("block", "blocks"), ("brick", "bricks"), ("crate", "crates")),
    ("wedge", "wedges"): (("ramp", "ramps"), ("slope", "slopes"), ("doorstop", "doorstops")),
    ("ring", "rings"): (("hoop", "hoops"), ("loop", "loops"), ("torus", "tori"), ("bagel", "bagels")),
    ("cylinder", "cylinders"): (("can", "cans"), ("drum", "drums"), ("barrel", "barrels"), ("pipe", "pipes")),
    ("star", "stars"): (("pentagram", "pentagrams"), ("starburst", "starbursts")),
    ("cross", "crosses"): (("x-shape", "x-shapes"), ("saltire", "saltires")),
    ("cup", "cups"): (("beaker", "beakers"), ("tumbler", "tumblers"), ("goblet", "goblets")),
}
_COLOUR_SWAPS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet"),
    "orange": ("tangerine", "amber"),
    "yellow": ("lemon", "golden"),
    "green": ("emerald", "lime"),
    "blue": ("azure", "navy"),
    "purple": ("lilac", "lavender", "mauve"),
}
WORD_SWAPS: dict[str, tuple[str, ...]] = {
    **{singular: tuple(a for a, _ in alts) for (singular, _), alts in _SHAPE_SWAPS.items()},
    **{plural: tuple(b for _, b in alts) for (_, plural), alts in _SHAPE_SWAPS.items()},
    **_COLOUR_SWAPS,
    "objects": ("things", "pieces"),
    "object": ("thing", "piece"),
    "Segment": ("Select", "Mark"),
    "Find": ("Locate", "Get"),
    "table": ("desk",),
}
_WORD = re.compile(r"[A-Za-z]+")


def misspell(text: str, rng: np.random.Generator) -> str:
    """``text`` with one typo in one word of 4+ letters: a letter swapped with the next one (a
    different one), dropped or doubled."""
    words = list(re.finditer(r"[A-Za-z]{4,}", text))
    if not words:
        return text
    word = words[int(rng.integers(len(words)))]
    w, i = word.group(0), int(rng.integers(1, len(word.group(0)) - 1))
    kind = int(rng.integers(3))
    if kind == 0 and w[i] == w[i + 1]:  # swapping two equal letters would change nothing
        kind = 1
    broken = (w[:i] + w[i + 1] + w[i] + w[i + 2:], w[:i] + w[i + 1:], w[:i] + w[i] + w[i:])[kind]
    return text[: word.start()] + broken + text[word.end():]


def augment_instruction(sentence: str, rng: np.random.Generator, rate: float = 0.5, typo_rate: float = 0.0) -> str:
    """The instruction for a world ``sentence``: PixelLM's "{sentence} Please respond with
    segmentation mask." with probability 1 - rate, otherwise a re-worded form (see the module doc),
    given one typo with probability ``typo_rate`` (0: the draws of a run without typos)."""
    if rng.random() >= rate:
        return f"{sentence} {_SUFFIX}"

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        options = WORD_SWAPS.get(word)
        if options is None or rng.random() < 0.6:
            return word
        return options[int(rng.integers(len(options)))]

    text = _WORD.sub(swap, sentence)
    if rng.random() < 0.4:
        body = text[0].lower() + text[1:]
        text = FRAMES[int(rng.integers(len(FRAMES)))].format(q=body)
    if rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.3:
        text = text.rstrip(".?!")
    suffix = rng.random() < 0.25
    if typo_rate > 0.0 and rng.random() < typo_rate:
        text = misspell(text, rng)
    return f"{text} {_SUFFIX}" if suffix else text
