"""Instructions phrased outside the world's templates, for evaluation only.

The world asks its questions in a few fixed templates (``world.questions``); a model trained on them
may have learnt the templates rather than the language. This module rewrites a world question into
an instruction a person might type instead, with the SAME targets: other word orders, synonyms the
world never uses ("sphere", "cube", "violet", "items"), polite and terse requests, and typos. The
rewrite is deterministic for a given ``rng``.

Kept apart from training: nothing under ``pixellm_ros.training`` imports this module (a test checks
it), and the training's own phrasing augmentation (``training.phrasing``) uses other words and forms
(a test checks that none of these paraphrases can come out of it).
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from pixellm_ros.muse.instruction import format_instruction
from pixellm_ros.world.ontology import SHAPE_BY_NAME
from pixellm_ros.world.questions import read_sentence

# Words the world never uses for its shapes / colours (the templates use the left-hand names).
SHAPE_SYNONYMS: dict[str, tuple[str, str]] = {  # singular, plural
    "ball": ("sphere", "spheres"),
    "box": ("cube", "cubes"),
    "wedge": ("triangular block", "triangular blocks"),
    "ring": ("donut", "donuts"),
    "cylinder": ("tube", "tubes"),
    "star": ("star shape", "star shapes"),
    "cross": ("plus sign", "plus signs"),
    "cup": ("mug", "mugs"),
}
COLOUR_SYNONYMS: dict[str, str] = {"purple": "violet"}

# Each of the world's meanings (``world.questions.SENTENCE_TEMPLATES``' keys) in a person's words:
# str.format templates over the sentence's slots (``read_sentence``) and the derived ones of ``_slots``.
_COLOUR_SHAPE = ("I need the {c2} {syn}, where is it?", "{colour} {syn_pl} please", "could you outline any {colour} {shapes}?",
                 "the {c2} {shapes}: mark them")
REWRITES: dict[str, tuple[str, ...]] = {
    "colour": ("could you show me everything that is {colour}?", "{colour} items please", "I'm looking for anything {colour}.",
               "mark all {colour} stuff on the table"),
    "shape": ("show me each {syn_pl} you can see", "{syn_pl}?", "please highlight the {shapes} for me",
              "can you pick out all of the {syn_pl}"),
    "colour_shape": _COLOUR_SHAPE,
    "colour_shape_single": _COLOUR_SHAPE,
    "size": ("show me the {size} items", "which of these are {size}?", "everything {size}, please"),
    "size_colour": ("any {size} {c2} items?", "please mark the {size} ones that are {colour}"),
    "superlative": ("of all the {group_pl}, which one is the {adj}?", "{adj} {group} please", "point out the {adj} {group} for me"),
    "extreme_leftmost": ("the {group} that is most to the left", "which {group} sits farthest left?"),
    "extreme_rightmost": ("the {group} that is most to the right", "which {group} sits farthest right?"),
    "extreme_farthest": ("which {group} is the most distant from me?", "the {group} furthest away please"),
    "extreme_nearest": ("which {group} is nearest to me?", "the {group} closest to where I stand"),
    "relation_left": ("what do you see on the left side of the {ref}?", "things left of the {ref} please"),
    "relation_right": ("what do you see on the right side of the {ref}?", "things right of the {ref} please"),
    "relation_behind": ("what is further back than the {ref}?", "items beyond the {ref}, please"),
    "relation_front": ("what is nearer to me than the {ref}?", "items before the {ref}, please"),
    "closest": ("what sits right next to the {ref}?", "the item nearest the {ref} please"),
    "half_left": ("what is on the left side of the table?", "left half, everything there"),
    "half_right": ("what is on the right side of the table?", "right half, everything there"),
    "half_behind": ("what lies on the back half of the table?", "everything in the back half please"),
    "half_front": ("what lies on the front half of the table?", "everything in the front half please"),
    "affordance_rolls": ("which items might roll away?", "show me what can roll"),
    "affordance_stackable": ("which items could I pile up?", "what can be stacked?"),
    "affordance_pointy": ("which items are sharp?", "anything with sharp tips?"),
    "affordance_container": ("which item could I fill with water?", "something to hold liquid please"),
    "affordance_has_hole": ("which item has a hole through it?", "something I could put on a hook"),
    "affordance_stays_put": ("which items would not roll?", "what stays in place on a slope?"),
    "affordance_colour_rolls": ("any {c2} items that might roll?",),
    "affordance_colour_stackable": ("which {c2} items could I pile up?",),
    "affordance_colour_pointy": ("any {c2} items with sharp tips?",),
    "affordance_colour_container": ("which {c2} item could I fill with water?",),
    "affordance_colour_has_hole": ("which {c2} item has a hole through it?",),
    "affordance_colour_stays_put": ("which {c2} items would not roll?",),
    "negation_colour": ("everything that isn't {colour}, please", "show me all items apart from the {colour} ones"),
    "negation_shape": ("everything that isn't a {syn}, please", "show me all items apart from the {shapes}"),
}  # "everything" (training only, never asked by the evaluation) has none


def _slots(slots: dict[str, str]) -> dict[str, str]:
    """The sentence's slots with the derived ones: the shape's synonyms, the colour's, the group's plural."""
    slots = dict(slots)
    if "shape" in slots:
        slots["syn"], slots["syn_pl"] = SHAPE_SYNONYMS[slots["shape"]]
    if "colour" in slots:
        slots["c2"] = COLOUR_SYNONYMS.get(slots["colour"], slots["colour"])
    if "group" in slots:
        group = slots["group"]
        slots["group_pl"] = (
            "objects" if group == "object" else group + "s" if group.endswith(" object") else SHAPE_BY_NAME[group].plural
        )
    return slots


def _typo(text: str, rng: np.random.Generator) -> str:
    """One typo in one word of 4+ letters: two neighbouring letters swapped, or one dropped."""
    words = [m for m in re.finditer(r"[A-Za-z]{4,}", text)]
    if not words:
        return text
    word = words[int(rng.integers(len(words)))]
    w = word.group(0)
    i = int(rng.integers(1, len(w) - 1))
    broken = w[:i] + w[i + 1] + w[i] + w[i + 2 :] if rng.random() < 0.5 else w[:i] + w[i + 1 :]
    return text[: word.start()] + broken + text[word.end() :]


STYLES: tuple[str, ...] = ("plain", "typo", "capitalised", "with_suffix")


def paraphrase(sentence: str, rng: np.random.Generator) -> str | None:
    """A paraphrased instruction for the world ``sentence`` (same targets), or None when no rule knows
    the sentence. Styles, drawn by ``rng``: as written, with a typo, capitalised with a full stop, or
    followed by PixelLM's "Please respond with segmentation mask."."""
    read = read_sentence(sentence)
    if read is None:
        return None
    meaning, slots = read
    rewrites = REWRITES.get(meaning)
    if rewrites is None:
        return None
    text = rewrites[int(rng.integers(len(rewrites)))].format(**_slots(slots))
    style = STYLES[int(rng.integers(len(STYLES)))]
    if style == "typo":
        text = _typo(text, rng)
    elif style == "capitalised":
        text = text[0].upper() + text[1:]
        if text[-1] not in ".?!":
            text += "."
    elif style == "with_suffix":
        text = format_instruction(text[0].upper() + text[1:] + ("" if text[-1] in ".?!" else "."))
    return text


def paraphrased_instruction(image_name: str, sentence: str) -> str:
    """The paraphrase of ``sentence`` asked about ``image_name``: drawn from a generator seeded by the
    pair, so every evaluation asks the same words (``evaluator.evaluate``'s ``instruction_for``). A
    sentence no rule knows keeps the world's phrasing (none do today: a test checks it)."""
    rng = np.random.default_rng(zlib.crc32(f"{image_name}\n{sentence}".encode("utf-8")))
    text = paraphrase(sentence, rng)
    return text if text is not None else format_instruction(sentence)
