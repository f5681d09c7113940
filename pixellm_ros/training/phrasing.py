"""Phrasing augmentation for training: the world's questions asked in other words, same targets.

A model trained only on the world's few templates learns the templates. Each training question is
therefore, with probability ``rate``, re-worded by light, meaning-preserving edits: a request frame
("can you ...", "please ..."), lower case or no final punctuation, PixelLM's "Please respond with
segmentation mask." dropped, word swaps from ``WORD_SWAPS`` (including shape and colour words the
world never uses), with probability ``rewrite_rate`` the whole sentence in another form of the same
meaning (``REWORDINGS``: other word orders, terse and elliptic requests) and, with probability
``typo_rate``, one typo (``misspell``). The evaluation's
paraphrase set (``evaluation.paraphrase``) is written apart from this one, with other words and
sentence forms; this module never imports it.
"""

from __future__ import annotations

import re

import numpy as np

from pixellm_ros.muse.instruction import INSTRUCTION_TEMPLATE
from pixellm_ros.world.questions import read_sentence

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

# The world's meanings (``world.questions.SENTENCE_TEMPLATES``' keys) in other sentence forms, over
# the same slots. Written apart from the evaluation's rewrites (a test checks none of theirs comes out).
REWORDINGS: dict[str, tuple[str, ...]] = {
    "colour": ("tag everything coloured {colour}", "just the {colour} pieces", "which pieces have the colour {colour}?",
               "locate whatever is {colour} here", "{colour} things: all of them"),
    "shape": ("tag each {shape} in the scene", "just the {shapes}", "how about the {shapes}, where are they?",
              "locate any {shape} here", "every single {shape}, please"),
    "colour_shape": ("tag each {colour} {shape} in the scene", "just the {colour} {shapes}", "locate any {colour} {shape} here",
                     "{colour} {shapes}: where are they?"),
    "colour_shape_single": ("where can I find the {colour} {shape}?", "locate the {colour} {shape}",
                            "the {colour} {shape}: which one is it?"),
    "size": ("which pieces count as {size}?", "just the {size} things", "tag every {size} piece"),
    "size_colour": ("the {colour} pieces that are {size}", "which {colour} things are {size}?", "tag the {size} {colour} pieces"),
    "superlative": ("which {group} is the {adj} one?", "locate the {adj} {group} here", "tag the {adj} {group}"),
    "extreme_leftmost": ("the {group} at the left end", "which {group} is on the extreme left?",
                         "locate the {group} nearest the left edge"),
    "extreme_rightmost": ("the {group} at the right end", "which {group} is on the extreme right?",
                          "locate the {group} nearest the right edge"),
    "extreme_farthest": ("which {group} is deepest in the scene?", "the {group} at the back end",
                         "locate the {group} with the greatest distance from the camera"),
    "extreme_nearest": ("the {group} at the front end", "locate the {group} nearest the camera lens",
                        "which {group} is first in line from the camera?"),
    "relation_left": ("anything on the left of the {ref}", "tag what lies left of the {ref}",
                      "which pieces are placed left of the {ref}?"),
    "relation_right": ("anything on the right of the {ref}", "tag what lies right of the {ref}",
                       "which pieces are placed right of the {ref}?"),
    "relation_behind": ("tag what stands behind the {ref}", "which pieces are placed behind the {ref}?",
                        "anything past the {ref}, seen from the camera"),
    "relation_front": ("tag what stands in front of the {ref}", "which pieces are placed in front of the {ref}?",
                       "anything between the camera and the {ref}"),
    "closest": ("what is beside the {ref}?", "the {ref}'s nearest neighbour", "which piece is by the {ref}?",
                "tag the neighbour of the {ref}", "locate what is closest to the {ref}"),
    "half_left": ("tag all on the table's left half", "the left half of the table: what is there?",
                  "everything in the table's left half"),
    "half_right": ("tag all on the table's right half", "the right half of the table: what is there?",
                   "everything in the table's right half"),
    "half_behind": ("tag all on the table's far half", "the half of the table away from the camera: what is there?",
                    "everything in the half farther from the camera"),
    "half_front": ("tag all on the table's near half", "the half of the table by the camera: what is there?",
                   "everything in the half closer to the camera"),
    "affordance_rolls": ("which pieces are round enough to roll?", "what would roll away on a tilt?", "tag whatever can roll"),
    "affordance_stackable": ("which pieces stack well?", "what can go one on top of another?", "tag whatever I could stack"),
    "affordance_pointy": ("which pieces have points?", "what here is pointy?", "tag whatever could prick me"),
    "affordance_container": ("what could I put water in?", "which piece is a container?", "tag whatever could hold water"),
    "affordance_has_hole": ("what has a hole in the middle?", "which piece could go onto a peg?",
                            "tag whatever I could thread on a stick"),
    "affordance_stays_put": ("which pieces cannot roll?", "what would stay where it is on a tilt?",
                             "tag whatever would not move if tilted"),
    "affordance_colour_rolls": ("which {colour} pieces could roll?", "tag the {colour} things that roll"),
    "affordance_colour_stackable": ("which {colour} pieces stack?", "tag the {colour} things I could stack"),
    "affordance_colour_pointy": ("which {colour} pieces have points?", "tag the {colour} things that are pointy"),
    "affordance_colour_container": ("which {colour} piece could take water?", "tag the {colour} thing that holds water"),
    "affordance_colour_has_hole": ("which {colour} piece has a hole in it?", "tag the {colour} thing with a hole"),
    "affordance_colour_stays_put": ("which {colour} pieces cannot roll?", "tag the {colour} things that would not roll"),
    "negation_colour": ("all but the {colour} things", "tag everything not coloured {colour}",
                        "which pieces are some colour other than {colour}?"),
    "negation_shape": ("all but the {shapes}", "tag every piece that is no {shape}", "which pieces are not a {shape}?"),
    "everything": ("tag every piece on the table", "what can you find on the table?", "all the pieces, please"),
}


def reword(sentence: str, rng: np.random.Generator) -> str:
    """``sentence`` in one of its meaning's ``REWORDINGS`` (drawn by ``rng``), first letter in capitals;
    itself where the world's templates do not read it."""
    read = read_sentence(sentence)
    if read is None:
        return sentence
    meaning, slots = read
    forms = REWORDINGS[meaning]
    text = forms[int(rng.integers(len(forms)))].format(**slots)
    return text[0].upper() + text[1:]


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


def augment_instruction(
    sentence: str, rng: np.random.Generator, rate: float = 0.5, typo_rate: float = 0.0, rewrite_rate: float = 0.0
) -> str:
    """The instruction for a world ``sentence``: PixelLM's "{sentence} Please respond with
    segmentation mask." with probability 1 - rate, otherwise a re-worded form (see the module doc):
    in another sentence form with probability ``rewrite_rate``, given one typo with probability
    ``typo_rate`` (either 0: the draws of a run without it)."""
    if rng.random() >= rate:
        return f"{sentence} {_SUFFIX}"
    if rewrite_rate > 0.0 and rng.random() < rewrite_rate:
        sentence = reword(sentence, rng)

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
