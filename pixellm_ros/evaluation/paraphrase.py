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
from dataclasses import dataclass

import numpy as np

from pixellm_ros.muse.instruction import format_instruction
from pixellm_ros.world.ontology import COLOUR_NAMES, SHAPE_BY_NAME, SHAPE_NAMES, SIZE_NAMES

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

_C = "(?P<c>" + "|".join(COLOUR_NAMES) + ")"
_S = "(?P<s>" + "|".join(SHAPE_NAMES) + ")"
_SS = "(?P<ss>" + "|".join(SHAPE_BY_NAME[s].plural for s in SHAPE_NAMES) + ")"
_Z = "(?P<z>" + "|".join(SIZE_NAMES) + ")"
_REF = r"(?P<ref>(?:(?:small|medium|large) )?(?:(?:" + "|".join(COLOUR_NAMES) + r") )?(?:" + "|".join(SHAPE_NAMES) + "))"
_GROUP = r"(?P<group>object|(?:" + "|".join(COLOUR_NAMES) + r") object|" + "|".join(SHAPE_NAMES) + ")"


@dataclass(frozen=True)
class _Rule:
    patterns: tuple[re.Pattern[str], ...]  # the world's templates of one meaning
    rewrites: tuple[str, ...]  # str.format templates over the patterns' groups + derived slots


def _rule(patterns: str | tuple[str, ...], *rewrites: str) -> _Rule:
    patterns = (patterns,) if isinstance(patterns, str) else patterns
    return _Rule(tuple(re.compile("^" + p + "$") for p in patterns), rewrites)


_RULES: tuple[_Rule, ...] = (
    # colour
    _rule((rf"Segment every {_C} thing\.", rf"Find all the {_C} objects\.", rf"Which objects are {_C}\?"),
          "could you show me everything that is {c}?", "{c} items please", "I'm looking for anything {c}.",
          "mark all {c} stuff on the table"),
    # shape
    _rule((rf"Segment all the {_SS}\.", rf"Where are the {_SS}\?", rf"Find every {_S} on the table\."),
          "show me each {syn_pl} you can see", "{syn_pl}?", "please highlight the {pl} for me",
          "can you pick out all of the {syn_pl}"),
    # colour + shape
    _rule((rf"Find every {_C} {_S}\.", rf"Segment all the {_C} {_SS}\.", rf"Where is the {_C} {_S}\?"),
          "I need the {c2} {syn}, where is it?", "{c} {syn_pl} please", "could you outline any {c} {pl}?",
          "the {c2} {pl}: mark them"),
    # size
    _rule((rf"Segment all the {_Z} objects\.", rf"Which things on the table are {_Z}\?"),
          "show me the {z} items", "which of these are {z}?", "everything {z}, please"),
    _rule((rf"Find the {_Z} {_C} things\.", rf"Segment every {_Z} {_C} object\."),
          "any {z} {c2} items?", "please mark the {z} ones that are {c}"),
    # superlative
    _rule(rf"(?:Segment the|Which is the) (?P<adj>largest|biggest|smallest) {_GROUP}[.?]",
          "of all the {group_pl}, which one is the {adj}?", "{adj} {group} please", "point out the {adj} {group} for me"),
    # extreme
    _rule((rf"Segment the leftmost {_GROUP}\.", rf"Which {_GROUP} is furthest to the left\?"),
          "the {group} that is most to the left", "which {group} sits farthest left?"),
    _rule((rf"Segment the rightmost {_GROUP}\.", rf"Which {_GROUP} is furthest to the right\?"),
          "the {group} that is most to the right", "which {group} sits farthest right?"),
    _rule((rf"Find the {_GROUP} farthest from the camera\.", rf"Which {_GROUP} is at the very back\?"),
          "which {group} is the most distant from me?", "the {group} furthest away please"),
    _rule((rf"Find the {_GROUP} closest to the camera\.", rf"Which {_GROUP} is at the very front\?"),
          "which {group} is nearest to me?", "the {group} closest to where I stand"),
    # relation
    _rule((rf"Segment everything left of the {_REF}\.", rf"What is to the left of the {_REF}\?"),
          "what do you see on the left side of the {ref}?", "things left of the {ref} please"),
    _rule((rf"Segment everything right of the {_REF}\.", rf"What is to the right of the {_REF}\?"),
          "what do you see on the right side of the {ref}?", "things right of the {ref} please"),
    _rule((rf"Which objects are behind the {_REF}\?", rf"Segment everything behind the {_REF}\."),
          "what is further back than the {ref}?", "items beyond the {ref}, please"),
    _rule((rf"What lies in front of the {_REF}\?", rf"Segment everything in front of the {_REF}\."),
          "what is nearer to me than the {ref}?", "items before the {ref}, please"),
    # closest
    _rule((rf"Which object is closest to the {_REF}\?", rf"Segment the thing nearest to the {_REF}\."),
          "what sits right next to the {ref}?", "the item nearest the {ref} please"),
    # half
    _rule(r"Segment everything on the left half of the table\.", "what is on the left side of the table?", "left half, everything there"),
    _rule(r"Segment everything on the right half of the table\.", "what is on the right side of the table?", "right half, everything there"),
    _rule(r"What is on the far half of the table\?", "what lies on the back half of the table?", "everything in the back half please"),
    _rule(r"What is on the near half of the table\?", "what lies on the front half of the table?", "everything in the front half please"),
    # affordance
    _rule(r"(?:What could roll off the table\?|Which objects would roll if the table tilted\?)",
          "which items might roll away?", "show me what can roll"),
    _rule(r"(?:What could I stack on top of each other\?|Which objects are stackable\?)",
          "which items could I pile up?", "what can be stacked?"),
    _rule(r"(?:What could prick my finger\?|Which objects have sharp points\?)",
          "which items are sharp?", "anything with sharp tips?"),
    _rule(r"(?:What could I pour water into\?|Which object can hold things\?)",
          "which item could I fill with water?", "something to hold liquid please"),
    _rule(r"(?:What could I hang on a peg\?|What could I slide onto a stick\?)",
          "which item has a hole through it?", "something I could put on a hook"),
    _rule(r"(?:Which objects would stay put if the table tilted\?|What would not roll away\?)",
          "which items would not roll?", "what stays in place on a slope?"),
    _rule(rf"Which {_C} things could roll away\?", "any {c2} items that might roll?"),
    _rule(rf"Which {_C} things could be stacked\?", "which {c2} items could I pile up?"),
    _rule(rf"Which {_C} things are pointy\?", "any {c2} items with sharp tips?"),
    _rule(rf"Which {_C} thing could hold water\?", "which {c2} item could I fill with water?"),
    _rule(rf"Which {_C} thing has a hole\?", "which {c2} item has a hole through it?"),
    _rule(rf"Which {_C} things would stay put\?", "which {c2} items would not roll?"),
    # negation
    _rule((rf"Segment everything except the {_C} things\.", rf"Find all objects that are not {_C}\."),
          "everything that isn't {c}, please", "show me all items apart from the {c} ones"),
    _rule((rf"Find all objects that are not {_SS}\.", rf"Segment everything except the {_SS}\."),
          "everything that isn't a {syn}, please", "show me all items apart from the {pl}"),
)


def _slots(match: re.Match[str]) -> dict[str, str]:
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    slots = dict(groups)
    shape = groups.get("s")
    if shape is None and "ss" in groups:
        shape = next(s for s in SHAPE_NAMES if SHAPE_BY_NAME[s].plural == groups["ss"])
    if shape is not None:
        slots["s"] = shape
        slots["pl"] = SHAPE_BY_NAME[shape].plural
        slots["syn"], slots["syn_pl"] = SHAPE_SYNONYMS[shape]
    if "c" in groups:
        slots["c2"] = COLOUR_SYNONYMS.get(groups["c"], groups["c"])
    if "group" in groups:
        group = groups["group"]
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
    for rule in _RULES:
        match = next((m for m in (p.match(sentence) for p in rule.patterns) if m is not None), None)
        if match is None:
            continue
        text = rule.rewrites[int(rng.integers(len(rule.rewrites)))].format(**_slots(match))
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
    return None


def paraphrased_instruction(image_name: str, sentence: str) -> str:
    """The paraphrase of ``sentence`` asked about ``image_name``: drawn from a generator seeded by the
    pair, so every evaluation asks the same words (``evaluator.evaluate``'s ``instruction_for``). A
    sentence no rule knows keeps the world's phrasing (none do today: a test checks it)."""
    rng = np.random.default_rng(zlib.crc32(f"{image_name}\n{sentence}".encode("utf-8")))
    text = paraphrase(sentence, rng)
    return text if text is not None else format_instruction(sentence)
