"""Instructions about a scene that need reasoning, with their targets and answers.

Kinds of question (``Question.kind``) and what their targets are:

===========  ===========================================================================
colour       every object of a colour                  "Segment every red thing."
shape        every object of a shape                   "Where are the balls?"
colour_shape every object of a colour and shape        "Find every blue box."
size         every object of a size class (+ colour)   "Segment all the small objects."
superlative  the unique largest / smallest in a group  "Segment the largest box."
extreme      leftmost / rightmost / farthest / nearest "Find the red object closest to the camera."
relation     all objects left of / right of / behind / in front of a reference object
closest      the object closest to a reference object  "Which object is closest to the blue ball?"
half         all objects in a half of the table        "Segment everything on the left half of the table."
affordance   objects that could roll / stack / prick / hold / hang (+ colour); see ``ontology``
negation     every object except a colour or shape     "Find all objects that are not boxes."
none         something absent; answer "There is no such object." with no ``{seg}``
everything   every object on the table (training only: ``everything_question``, never drawn by
             ``make_questions``, so the evaluation's questions do not change)
===========  ===========================================================================

The spatial and comparative definitions, and when such a question is considered clear enough
to ask, are in ``relations``. Targets are listed left to right (by centre x) in the answer.
Up to ``MAX_TARGETS`` targets per question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pixellm_ros.world import relations as rel
from pixellm_ros.world.objects import SceneObject
from pixellm_ros.world.ontology import (
    AFFORDANCES,
    ALL_COLOUR_SHAPE,
    COLOUR_NAMES,
    SHAPE_NAMES,
    SIZE_NAMES,
    Split,
    is_heldout_pair,
    plural,
)
from pixellm_ros.muse.instruction import format_instruction
from pixellm_ros.world.phrasing import compose_answer, mentions_heldout_pair
from pixellm_ros.world.scene import Scene

MAX_TARGETS = 8


@dataclass(frozen=True)
class Question:
    """One instruction about a scene.

    ``question`` is the full instruction ("{sentence} Please respond with segmentation mask.");
    ``answer`` holds one ``{seg}`` per target, in ``target_ids`` order; ``sentence`` is the bare
    question as stored in MUSE's ``questions``.
    """

    question: str
    answer: str
    target_ids: tuple[int, ...]
    kind: str
    sentence: str


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _question(kind: str, sentence: str, targets: Sequence[SceneObject]) -> Question:
    ordered = sorted(targets, key=lambda o: (o.center[0], o.id))
    return Question(
        question=format_instruction(sentence),
        answer=compose_answer([o.name for o in ordered]),
        target_ids=tuple(o.id for o in ordered),
        kind=kind,
        sentence=sentence,
    )


_COLOUR_T = ("Segment every {colour} thing.", "Find all the {colour} objects.", "Which objects are {colour}?")
_SHAPE_T = ("Segment all the {shapes}.", "Where are the {shapes}?", "Find every {shape} on the table.")
_COLOUR_SHAPE_T = ("Find every {colour} {shape}.", "Segment all the {colour} {shapes}.")
_COLOUR_SHAPE_SINGLE_T = ("Where is the {colour} {shape}?",)
_SIZE_T = ("Segment all the {size} objects.", "Which things on the table are {size}?")
_SIZE_COLOUR_T = ("Find the {size} {colour} things.", "Segment every {size} {colour} object.")
_SUPERLATIVE_T = ("Segment the {adj} {group}.", "Which is the {adj} {group}?")
_EXTREME_T = {
    "leftmost": ("Segment the leftmost {group}.", "Which {group} is furthest to the left?"),
    "rightmost": ("Segment the rightmost {group}.", "Which {group} is furthest to the right?"),
    "farthest": ("Find the {group} farthest from the camera.", "Which {group} is at the very back?"),
    "nearest": ("Find the {group} closest to the camera.", "Which {group} is at the very front?"),
}
_RELATION_T = {
    "left": ("Segment everything left of the {ref}.", "What is to the left of the {ref}?"),
    "right": ("Segment everything right of the {ref}.", "What is to the right of the {ref}?"),
    "behind": ("Which objects are behind the {ref}?", "Segment everything behind the {ref}."),
    "front": ("What lies in front of the {ref}?", "Segment everything in front of the {ref}."),
}
_CLOSEST_T = ("Which object is closest to the {ref}?", "Segment the thing nearest to the {ref}.")
_HALF_T = {
    "left": ("Segment everything on the left half of the table.",),
    "right": ("Segment everything on the right half of the table.",),
    "behind": ("What is on the far half of the table?",),
    "front": ("What is on the near half of the table?",),
}
_AFFORDANCE_T = {
    "rolls": ("What could roll off the table?", "Which objects would roll if the table tilted?"),
    "stackable": ("What could I stack on top of each other?", "Which objects are stackable?"),
    "pointy": ("What could prick my finger?", "Which objects have sharp points?"),
    "container": ("What could I pour water into?", "Which object can hold things?"),
    "has_hole": ("What could I hang on a peg?", "What could I slide onto a stick?"),
    "stays_put": ("Which objects would stay put if the table tilted?", "What would not roll away?"),
}
_AFFORDANCE_COLOUR_T = {
    "rolls": "Which {colour} things could roll away?",
    "stackable": "Which {colour} things could be stacked?",
    "pointy": "Which {colour} things are pointy?",
    "container": "Which {colour} thing could hold water?",
    "has_hole": "Which {colour} thing has a hole?",
    "stays_put": "Which {colour} things would stay put?",
}
_NEGATION_COLOUR_T = ("Segment everything except the {colour} things.", "Find all objects that are not {colour}.")
_NEGATION_SHAPE_T = ("Find all objects that are not {shapes}.", "Segment everything except the {shapes}.")
_EVERYTHING_T = ("List every object on the table.", "Segment everything on the table.", "What is on the table?")
_ADJECTIVES = {True: ("largest", "biggest"), False: ("smallest",)}  # superlative: largest?

# Every template by what it asks (the key: a kind, with the direction / half / affordance where the
# kind has several), so that a sentence can be read back into its meaning and slots
# (``read_sentence``) and asked in other words (``training.phrasing``).
SENTENCE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": _COLOUR_T,
    "shape": _SHAPE_T,
    "colour_shape": _COLOUR_SHAPE_T,
    "colour_shape_single": _COLOUR_SHAPE_SINGLE_T,
    "size": _SIZE_T,
    "size_colour": _SIZE_COLOUR_T,
    "superlative": _SUPERLATIVE_T,
    **{f"extreme_{which}": t for which, t in _EXTREME_T.items()},
    **{f"relation_{direction}": t for direction, t in _RELATION_T.items()},
    "closest": _CLOSEST_T,
    **{f"half_{half}": t for half, t in _HALF_T.items()},
    **{f"affordance_{aff}": t for aff, t in _AFFORDANCE_T.items()},
    **{f"affordance_colour_{aff}": (t,) for aff, t in _AFFORDANCE_COLOUR_T.items()},
    "negation_colour": _NEGATION_COLOUR_T,
    "negation_shape": _NEGATION_SHAPE_T,
    "everything": _EVERYTHING_T,
}


def _alternatives(words: Sequence[str]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in words) + ")"


_SHAPE_PLURALS = {plural(s): s for s in SHAPE_NAMES}
# What each template slot can hold (the group / ref phrases: see ``_groups``, ``relations.unique_description``).
_SLOT_PATTERNS: dict[str, str] = {
    "colour": _alternatives(COLOUR_NAMES),
    "shape": _alternatives(SHAPE_NAMES),
    "shapes": _alternatives(tuple(_SHAPE_PLURALS)),
    "size": _alternatives(SIZE_NAMES),
    "adj": _alternatives(_ADJECTIVES[True] + _ADJECTIVES[False]),
    "group": rf"(?:object|{_alternatives(COLOUR_NAMES)} object|{_alternatives(SHAPE_NAMES)})",
    "ref": rf"(?:{_alternatives(SIZE_NAMES)} )?(?:{_alternatives(COLOUR_NAMES)} )?{_alternatives(SHAPE_NAMES)}",
}


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)  # text, slot, text, slot, ..., text
    body = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_SLOT_PATTERNS[part]})" for i, part in enumerate(parts))
    return re.compile(f"^{body}$")


_TEMPLATE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (meaning, _template_pattern(t)) for meaning, templates in SENTENCE_TEMPLATES.items() for t in templates
)


def read_sentence(sentence: str) -> tuple[str, dict[str, str]] | None:
    """What a world ``sentence`` asks: its ``SENTENCE_TEMPLATES`` key and the words in its slots
    ("Where are the balls?" -> ("shape", {"shapes": "balls", "shape": "ball"}); a shape slot comes with
    its plural and a plural with its singular), or None for a sentence of no template."""
    for meaning, pattern in _TEMPLATE_PATTERNS:
        match = pattern.match(sentence)
        if match is not None:
            slots = match.groupdict()
            if "shape" in slots:
                slots["shapes"] = plural(slots["shape"])
            elif "shapes" in slots:
                slots["shape"] = _SHAPE_PLURALS[slots["shapes"]]
            return meaning, slots
    return None


def _colour(scene: Scene, rng: np.random.Generator) -> list[Question]:
    objs = scene.objects
    return [
        _question("colour", _pick(rng, _COLOUR_T).format(colour=c), [o for o in objs if o.colour == c])
        for c in COLOUR_NAMES
        if any(o.colour == c for o in objs)
    ]


def _shape(scene: Scene, rng: np.random.Generator) -> list[Question]:
    objs = scene.objects
    return [
        _question("shape", _pick(rng, _SHAPE_T).format(shape=s, shapes=plural(s)), [o for o in objs if o.shape == s])
        for s in SHAPE_NAMES
        if any(o.shape == s for o in objs)
    ]


def _colour_shape_sentence(rng: np.random.Generator, colour: str, shape: str, count: int) -> str:
    templates = _COLOUR_SHAPE_T + (_COLOUR_SHAPE_SINGLE_T if count <= 1 else ())
    return _pick(rng, templates).format(colour=colour, shape=shape, shapes=plural(shape))


def _colour_shape(scene: Scene, rng: np.random.Generator) -> list[Question]:
    out = []
    for colour, shape in sorted({(o.colour, o.shape) for o in scene.objects}):
        targets = [o for o in scene.objects if o.colour == colour and o.shape == shape]
        out.append(_question("colour_shape", _colour_shape_sentence(rng, colour, shape, len(targets)), targets))
    return out


def _size(scene: Scene, rng: np.random.Generator) -> list[Question]:
    objs = scene.objects
    out = []
    for size in SIZE_NAMES:
        targets = [o for o in objs if o.size == size]
        if targets:
            out.append(_question("size", _pick(rng, _SIZE_T).format(size=size), targets))
    for size, colour in sorted({(o.size, o.colour) for o in objs}):
        targets = [o for o in objs if o.size == size and o.colour == colour]
        out.append(_question("size", _pick(rng, _SIZE_COLOUR_T).format(size=size, colour=colour), targets))
    return out


def _groups(objs: Sequence[SceneObject]) -> list[tuple[str, list[SceneObject]]]:
    """Groups for comparisons: (singular phrase, members) for all objects, each shape, each colour."""
    groups: list[tuple[str, list[SceneObject]]] = [("object", list(objs))]
    for s in SHAPE_NAMES:
        groups.append((s, [o for o in objs if o.shape == s]))
    for c in COLOUR_NAMES:
        groups.append((f"{c} object", [o for o in objs if o.colour == c]))
    return [(phrase, members) for phrase, members in groups if len(members) >= 2]


def _superlative(scene: Scene, rng: np.random.Generator) -> list[Question]:
    out = []
    for phrase, members in _groups(scene.objects):
        for largest, adjectives in _ADJECTIVES.items():
            winner = rel.size_extreme(members, largest)
            if winner is not None:
                sentence = _pick(rng, _SUPERLATIVE_T).format(adj=_pick(rng, adjectives), group=phrase)
                out.append(_question("superlative", sentence, [winner]))
    return out


def _extreme(scene: Scene, rng: np.random.Generator) -> list[Question]:
    out = []
    for phrase, members in _groups(scene.objects):
        for which in rel.EXTREMES:
            winner = rel.extreme(members, which)
            if winner is not None:
                out.append(_question("extreme", _pick(rng, _EXTREME_T[which]).format(group=phrase), [winner]))
    return out


def _relation(scene: Scene, rng: np.random.Generator) -> list[Question]:
    objs = scene.objects
    out = []
    for ref in objs:
        ref_phrase = rel.unique_description(objs, ref)
        if ref_phrase is None:
            continue
        for direction in rel.DIRECTIONS:
            if rel.relation_is_clear(objs, ref, direction):
                targets = [o for o in objs if rel.in_direction(o, ref, direction)]
                sentence = _pick(rng, _RELATION_T[direction]).format(ref=ref_phrase)
                out.append(_question("relation", sentence, targets))
    return out


def _closest(scene: Scene, rng: np.random.Generator) -> list[Question]:
    objs = scene.objects
    out = []
    for ref in objs:
        ref_phrase = rel.unique_description(objs, ref)
        winner = rel.closest_to(objs, ref)
        if ref_phrase is not None and winner is not None:
            out.append(_question("closest", _pick(rng, _CLOSEST_T).format(ref=ref_phrase), [winner]))
    return out


def _half(scene: Scene, rng: np.random.Generator) -> list[Question]:
    objs, h, w = scene.objects, scene.height, scene.width
    return [
        _question("half", _pick(rng, _HALF_T[half]), [o for o in objs if rel.in_half(o, half, h, w)])
        for half in rel.HALVES
        if rel.half_is_clear(objs, half, h, w)
    ]


def _affordance(scene: Scene, rng: np.random.Generator) -> list[Question]:
    objs = scene.objects
    out = []
    for aff in AFFORDANCES:
        targets = [o for o in objs if o.can(aff)]
        if targets:
            out.append(_question("affordance", _pick(rng, _AFFORDANCE_T[aff]), targets))
        for colour in sorted({o.colour for o in targets}):
            coloured = [o for o in targets if o.colour == colour]
            out.append(_question("affordance", _AFFORDANCE_COLOUR_T[aff].format(colour=colour), coloured))
    return out


def _negation(scene: Scene, rng: np.random.Generator) -> list[Question]:
    objs = scene.objects
    out = []
    for colour in sorted({o.colour for o in objs}):
        targets = [o for o in objs if o.colour != colour]
        if targets:
            out.append(_question("negation", _pick(rng, _NEGATION_COLOUR_T).format(colour=colour), targets))
    for shape in sorted({o.shape for o in objs}):
        targets = [o for o in objs if o.shape != shape]
        if targets:
            out.append(_question("negation", _pick(rng, _NEGATION_SHAPE_T).format(shapes=plural(shape)), targets))
    return out


def _none(scene: Scene, rng: np.random.Generator) -> list[Question]:
    """Questions about something that is not there (held-out pairs are filtered by the caller)."""
    objs = scene.objects
    colours = {o.colour for o in objs}
    shapes = {o.shape for o in objs}
    pairs = {(o.colour, o.shape) for o in objs}
    out = [_question("none", _pick(rng, _COLOUR_T).format(colour=c), []) for c in COLOUR_NAMES if c not in colours]
    out += [
        _question("none", _pick(rng, _SHAPE_T).format(shape=s, shapes=plural(s)), []) for s in SHAPE_NAMES if s not in shapes
    ]
    out += [
        _question("none", _colour_shape_sentence(rng, c, s, 0), []) for c, s in ALL_COLOUR_SHAPE if (c, s) not in pairs
    ]
    out += [
        _question("none", _pick(rng, _AFFORDANCE_T[aff]), []) for aff in AFFORDANCES if not any(o.can(aff) for o in objs)
    ]
    return out


def everything_question(scene: Scene, rng: np.random.Generator) -> Question:
    """The question that asks for every object of the scene (kind "everything"), targets left to right."""
    return _question("everything", _pick(rng, _EVERYTHING_T), scene.objects)


QuestionGenerator = Callable[[Scene, np.random.Generator], list[Question]]
GENERATORS: dict[str, QuestionGenerator] = {
    "colour": _colour,
    "shape": _shape,
    "colour_shape": _colour_shape,
    "size": _size,
    "superlative": _superlative,
    "extreme": _extreme,
    "relation": _relation,
    "closest": _closest,
    "half": _half,
    "affordance": _affordance,
    "negation": _negation,
    "none": _none,
}
# Relative frequency of the kinds that have targets; "none" is drawn separately at none_rate.
KIND_WEIGHTS: dict[str, float] = {
    "colour": 1.0,
    "shape": 1.0,
    "colour_shape": 1.2,
    "size": 0.8,
    "superlative": 1.0,
    "extreme": 1.0,
    "relation": 1.2,
    "closest": 0.8,
    "half": 0.6,
    "affordance": 1.5,
    "negation": 0.8,
}


def involves_heldout(scene: Scene, question: Question) -> bool:
    """Whether a question targets an object with a held-out pair or names such a pair."""
    targets = (scene.objects[i] for i in question.target_ids)
    return any(is_heldout_pair(o.colour, o.shape) for o in targets) or mentions_heldout_pair(question.sentence)


def all_questions(scene: Scene, rng: np.random.Generator, split: Split = "train") -> dict[str, list[Question]]:
    """Every candidate question per kind that is valid for the split.

    train: none names a held-out pair. heldout: each targets a held-out object or names a pair.
    """
    pools: dict[str, list[Question]] = {}
    for kind, generate in GENERATORS.items():
        candidates = [q for q in generate(scene, rng) if len(q.target_ids) <= MAX_TARGETS]
        if split == "train":
            candidates = [q for q in candidates if not mentions_heldout_pair(q.sentence)]
        else:
            candidates = [q for q in candidates if involves_heldout(scene, q)]
        pools[kind] = candidates
    return pools


def make_questions(
    scene: Scene,
    rng: np.random.Generator,
    max_questions: int = 5,
    split: Split = "train",
    none_rate: float = 0.15,
    weights: dict[str, float] | None = None,
) -> list[Question]:
    """Up to ``max_questions`` distinct questions about the scene, of mixed kinds.

    Each question is drawn by first picking a kind ("none" with probability ``none_rate``,
    otherwise by ``weights``, default ``KIND_WEIGHTS``, among kinds that still have candidates),
    then a candidate.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return draw_questions(all_questions(scene, rng, split), rng, max_questions, weights or KIND_WEIGHTS, none_rate)


def draw_questions(
    pools: dict[str, list[Question]],
    rng: np.random.Generator,
    count: int,
    weights: dict[str, float],
    none_rate: float,
) -> list[Question]:
    """Up to ``count`` distinct questions drawn from per-kind candidate pools (which it consumes).

    Each draw picks "none" with probability ``none_rate`` (or when no other kind is left), else a
    kind by ``weights`` among kinds with a positive weight and candidates left, then a candidate.
    """
    chosen: list[Question] = []
    seen: set[str] = set()
    while len(chosen) < count:
        kinds = [k for k, w in weights.items() if w > 0 and pools.get(k)]
        if pools.get("none") and (not kinds or rng.random() < none_rate):
            kind = "none"
        elif kinds:
            p = np.array([weights[k] for k in kinds], dtype=float)
            kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        else:
            break
        question = pools[kind].pop(int(rng.integers(len(pools[kind]))))
        if question.sentence not in seen:
            seen.add(question.sentence)
            chosen.append(question)
    return chosen
