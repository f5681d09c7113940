"""Questions: every target set is re-derived here from the sentence and the scene's objects.

The checker parses each sentence with its own patterns and recomputes the targets from the
definitions in the ontology/relations docs, so a generator bug shows up as a mismatch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest

from pixellm_ros.world import NO_TARGET_ANSWER, Scene, fill_seg, make_questions, sample_scene
from pixellm_ros.world.objects import SceneObject
from pixellm_ros.world.ontology import HELDOUT_COLOUR_SHAPE
from pixellm_ros.world.phrasing import mentions_heldout_pair
from pixellm_ros.world.questions import SENTENCE_TEMPLATES, all_questions, everything_question, read_sentence

COLOURS = "red|orange|yellow|green|blue|purple"
SHAPES = "ball|box|wedge|ring|cylinder|star|cross|cup"
PLURALS = {"balls": "ball", "boxes": "box", "wedges": "wedge", "rings": "ring", "cylinders": "cylinder", "stars": "star", "crosses": "cross", "cups": "cup"}
PLURAL = "|".join(PLURALS)
SIZES = "small|medium|large"
SIZE_RANK = {"small": 0, "medium": 1, "large": 2}
GROUP = rf"object|{SHAPES}|(?:{COLOURS}) object"
REF = rf"(?:(?:{SIZES}) )?(?:(?:{COLOURS}) )?(?:{SHAPES})"
AFFORDANCE_SHAPES = {
    "rolls": {"ball", "ring", "cylinder"},
    "stackable": {"box", "cross", "cup"},
    "pointy": {"star", "wedge"},
    "container": {"cup"},
    "has_hole": {"ring"},
    "stays_put": {"box", "wedge", "star", "cross", "cup"},
}
AFFORDANCE_SENTENCES = {
    "What could roll off the table?": "rolls",
    "Which objects would roll if the table tilted?": "rolls",
    "What could I stack on top of each other?": "stackable",
    "Which objects are stackable?": "stackable",
    "What could prick my finger?": "pointy",
    "Which objects have sharp points?": "pointy",
    "What could I pour water into?": "container",
    "Which object can hold things?": "container",
    "What could I hang on a peg?": "has_hole",
    "What could I slide onto a stick?": "has_hole",
    "Which objects would stay put if the table tilted?": "stays_put",
    "What would not roll away?": "stays_put",
}
AFFORDANCE_COLOUR = [
    (rf"Which ({COLOURS}) things could roll away\?", "rolls"),
    (rf"Which ({COLOURS}) things could be stacked\?", "stackable"),
    (rf"Which ({COLOURS}) things are pointy\?", "pointy"),
    (rf"Which ({COLOURS}) thing could hold water\?", "container"),
    (rf"Which ({COLOURS}) thing has a hole\?", "has_hole"),
    (rf"Which ({COLOURS}) things would stay put\?", "stays_put"),
]
Objs = tuple[SceneObject, ...]


def _ids(objs) -> set[int]:
    return {o.id for o in objs}


def _group(objs: Objs, phrase: str) -> list[SceneObject]:
    if phrase == "object":
        return list(objs)
    if phrase.endswith(" object"):
        return [o for o in objs if o.colour == phrase.split()[0]]
    return [o for o in objs if o.shape == phrase]


def _ref(objs: Objs, phrase: str) -> SceneObject:
    words = phrase.split()
    matches = [
        o
        for o in objs
        if o.shape == words[-1]
        and (len(words) < 2 or o.colour == words[-2])
        and (len(words) < 3 or o.size == words[-3])
    ]
    assert len(matches) == 1, f"reference {phrase!r} is not unique"
    return matches[0]


def _superlative(objs: Objs, adj: str, phrase: str) -> set[int]:
    members = _group(objs, phrase)
    assert len(members) >= 2
    ranks = [SIZE_RANK[o.size] for o in members]
    best = max(ranks) if adj in ("largest", "biggest") else min(ranks)
    winners = [o for o, r in zip(members, ranks) if r == best]
    assert len(winners) == 1
    return _ids(winners)


def _extreme(objs: Objs, which: str, phrase: str) -> set[int]:
    members = _group(objs, phrase)
    key = {
        "left": lambda o: o.center[0],
        "right": lambda o: -o.center[0],
        "back": lambda o: o.center[1],
        "front": lambda o: -o.center[1],
    }[which]
    ranked = sorted(members, key=key)
    assert len(ranked) >= 2 and key(ranked[1]) - key(ranked[0]) >= 0.5 * ranked[0].radius
    return {ranked[0].id}


def _relation(objs: Objs, direction: str, phrase: str) -> set[int]:
    ref = _ref(objs, phrase)
    axis, sign = {"left": (0, -1), "right": (0, 1), "behind": (1, -1), "front": (1, 1)}[direction]
    out = set()
    for o in objs:
        if o.id == ref.id:
            continue
        offset = sign * (o.center[axis] - ref.center[axis])
        assert not 0.5 * ref.radius <= abs(offset) <= 1.5 * ref.radius, "ambiguous relation was asked"
        if offset > ref.radius:
            out.add(o.id)
    return out


def _closest(objs: Objs, phrase: str) -> set[int]:
    ref = _ref(objs, phrase)
    dists = sorted((math.dist(o.center, ref.center), o.id) for o in objs if o.id != ref.id)
    assert len(dists) == 1 or dists[1][0] >= 1.3 * dists[0][0]
    return {dists[0][1]}


def _half(scene: Scene, half: str) -> set[int]:
    axis, size = (0, scene.width) if half in ("left", "right") else (1, scene.height)
    mid = size / 2
    assert all(abs(o.center[axis] - mid) > 0.06 * size for o in scene.objects)
    lower = half in ("left", "far")
    return {o.id for o in scene.objects if (o.center[axis] < mid) == lower}


def expected_targets(scene: Scene, sentence: str) -> set[int]:
    """The target ids a sentence asks for, derived independently of the generator."""
    objs = scene.objects
    rules: list[tuple[str, Callable[..., set[int]]]] = [
        (rf"(?:Segment every|Find all the) ({COLOURS}) (?:thing|objects)\.", lambda c: _ids(o for o in objs if o.colour == c)),
        (rf"Which objects are ({COLOURS})\?", lambda c: _ids(o for o in objs if o.colour == c)),
        (rf"(?:Segment all the|Where are the) ({PLURAL})[.?]", lambda p: _ids(o for o in objs if o.shape == PLURALS[p])),
        (rf"Find every ({SHAPES}) on the table\.", lambda s: _ids(o for o in objs if o.shape == s)),
        (rf"(?:Find every|Where is the) ({COLOURS}) ({SHAPES})[.?]", lambda c, s: _ids(o for o in objs if (o.colour, o.shape) == (c, s))),
        (rf"Segment all the ({COLOURS}) ({PLURAL})\.", lambda c, p: _ids(o for o in objs if (o.colour, o.shape) == (c, PLURALS[p]))),
        (rf"Segment all the ({SIZES}) objects\.", lambda z: _ids(o for o in objs if o.size == z)),
        (rf"Which things on the table are ({SIZES})\?", lambda z: _ids(o for o in objs if o.size == z)),
        (rf"(?:Find the|Segment every) ({SIZES}) ({COLOURS}) (?:things|object)\.", lambda z, c: _ids(o for o in objs if (o.size, o.colour) == (z, c))),
        (rf"(?:Segment the|Which is the) (largest|biggest|smallest) ({GROUP})[.?]", lambda a, g: _superlative(objs, a, g)),
        (rf"Segment the (left|right)most ({GROUP})\.", lambda w, g: _extreme(objs, w, g)),
        (rf"Which ({GROUP}) is furthest to the (left|right)\?", lambda g, w: _extreme(objs, w, g)),
        (rf"Find the ({GROUP}) farthest from the camera\.", lambda g: _extreme(objs, "back", g)),
        (rf"Which ({GROUP}) is at the very back\?", lambda g: _extreme(objs, "back", g)),
        (rf"Find the ({GROUP}) closest to the camera\.", lambda g: _extreme(objs, "front", g)),
        (rf"Which ({GROUP}) is at the very front\?", lambda g: _extreme(objs, "front", g)),
        (rf"Segment everything (left|right) of the ({REF})\.", lambda d, r: _relation(objs, d, r)),
        (rf"What is to the (left|right) of the ({REF})\?", lambda d, r: _relation(objs, d, r)),
        (rf"(?:Which objects are|Segment everything) behind the ({REF})[.?]", lambda r: _relation(objs, "behind", r)),
        (rf"(?:What lies|Segment everything) in front of the ({REF})[.?]", lambda r: _relation(objs, "front", r)),
        (rf"(?:Which object is closest|Segment the thing nearest) to the ({REF})[.?]", lambda r: _closest(objs, r)),
        (r"Segment everything on the (left|right) half of the table\.", lambda h: _half(scene, h)),
        (r"What is on the (far|near) half of the table\?", lambda h: _half(scene, h)),
        (rf"(?:Segment everything except the|Find all objects that are not) ({COLOURS})(?: things)?\.", lambda c: _ids(o for o in objs if o.colour != c)),
        (rf"(?:Find all objects that are not|Segment everything except the) ({PLURAL})\.", lambda p: _ids(o for o in objs if o.shape != PLURALS[p])),
    ]
    if sentence in AFFORDANCE_SENTENCES:
        return _ids(o for o in objs if o.shape in AFFORDANCE_SHAPES[AFFORDANCE_SENTENCES[sentence]])
    for pattern, aff in AFFORDANCE_COLOUR:
        m = re.fullmatch(pattern, sentence)
        if m:
            return _ids(o for o in objs if o.colour == m.group(1) and o.shape in AFFORDANCE_SHAPES[aff])
    for pattern, derive in rules:
        m = re.fullmatch(pattern, sentence)
        if m:
            return derive(*m.groups())
    raise AssertionError(f"no rule for sentence {sentence!r}")


def _scenes_and_questions(n: int, split: str = "train", seed0: int = 0, size=(224, 224)):
    for i in range(n):
        rng = np.random.default_rng(seed0 + i)
        scene = sample_scene(rng, size, split=split)
        yield scene, make_questions(scene, rng, max_questions=6, split=split)


def test_every_target_set_satisfies_its_sentence() -> None:
    kinds = set()
    checked = 0
    for scene, questions in _scenes_and_questions(60):
        for q in questions:
            assert set(q.target_ids) == expected_targets(scene, q.sentence), (q, scene.objects)
            kinds.add(q.kind)
            checked += 1
    assert checked >= 300
    assert kinds == {"colour", "shape", "colour_shape", "size", "superlative", "extreme", "relation", "closest", "half", "affordance", "negation", "none"}


def test_all_candidates_satisfy_their_sentences() -> None:
    # Every candidate, not only the sampled ones, so rare templates are covered too.
    for i in range(12):
        rng = np.random.default_rng(1000 + i)
        scene = sample_scene(rng, (224, 224))
        for pool in all_questions(scene, rng).values():
            for q in pool:
                assert set(q.target_ids) == expected_targets(scene, q.sentence), q


def test_red_things_are_exactly_the_red_objects() -> None:
    found = 0
    for scene, _ in _scenes_and_questions(20, seed0=50):
        rng = np.random.default_rng(0)
        for q in all_questions(scene, rng)["colour"]:
            colour = re.search(rf"\b({COLOURS})\b", q.sentence).group(1)
            assert set(q.target_ids) == {o.id for o in scene.objects if o.colour == colour}
            found += 1
    assert found > 20


def test_answer_format() -> None:
    for scene, questions in _scenes_and_questions(30, seed0=7):
        for q in questions:
            assert q.question == f"{q.sentence} Please respond with segmentation mask."
            assert q.answer.count("{seg}") == len(q.target_ids) <= 8
            assert len(set(q.target_ids)) == len(q.target_ids)
            xs = [scene.objects[i].center[0] for i in q.target_ids]
            assert xs == sorted(xs)  # named left to right
            if not q.target_ids:
                assert q.answer == NO_TARGET_ANSWER
            else:
                # each target is named by colour and shape just before its placeholder
                names = re.findall(r"the (\w+ \w+) \{seg\}", q.answer, flags=re.IGNORECASE)
                assert names == [scene.objects[i].name for i in q.target_ids]
            filled = fill_seg(q.answer, "[SEG0][SEG1]")
            assert "{seg}" not in filled and filled.count("[SEG0][SEG1]") == len(q.target_ids)
        sentences = [q.sentence for q in questions]
        assert len(sentences) == len(set(sentences))


def test_none_questions_occur_and_name_something_absent() -> None:
    nones = [(s, q) for s, qs in _scenes_and_questions(40, seed0=900) for q in qs if q.kind == "none"]
    assert len(nones) >= 10
    for scene, q in nones:
        assert q.target_ids == () and q.answer == "There is no such object."


def test_many_targets_questions_exist() -> None:
    counts = [len(q.target_ids) for _, qs in _scenes_and_questions(60, seed0=77) for q in qs]
    assert max(counts) >= 4


def test_the_everything_question_names_every_object_left_to_right_and_is_never_drawn() -> None:
    """Training's "list every object" (kind "everything") targets the whole scene in the answers' order;
    the question sets (and so the evaluation's questions) never hold it."""
    for scene, questions in _scenes_and_questions(20, seed0=300):
        q = everything_question(scene, np.random.default_rng(0))
        assert q.kind == "everything" and set(q.target_ids) == {o.id for o in scene.objects}
        xs = [scene.objects[i].center[0] for i in q.target_ids]
        assert xs == sorted(xs)
        names = re.findall(r"the (\w+ \w+) \{seg\}", q.answer, flags=re.IGNORECASE)
        assert names == [scene.objects[i].name for i in q.target_ids]
        assert all(other.kind != "everything" for other in questions)


def test_same_rng_same_questions() -> None:
    def run(seed: int):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng)
        return make_questions(scene, rng)

    first = run(5)
    assert first and run(5) == first
    # the comparison can tell question lists apart: another seed gives other questions
    assert run(6) != first


def test_train_never_mentions_heldout_pairs_and_heldout_always_involves_one() -> None:
    for scene, questions in _scenes_and_questions(40, seed0=2000):
        for q in questions:
            assert not mentions_heldout_pair(q.sentence) and not mentions_heldout_pair(q.answer)
    for scene, questions in _scenes_and_questions(20, split="heldout", seed0=3000):
        assert questions
        for q in questions:
            targets = [scene.objects[i] for i in q.target_ids]
            assert any((o.colour, o.shape) in HELDOUT_COLOUR_SHAPE for o in targets) or mentions_heldout_pair(q.sentence)
            assert set(q.target_ids) == expected_targets(scene, q.sentence)


def test_mentions_heldout_pair_detector() -> None:
    assert mentions_heldout_pair("Where is the red star?")
    assert mentions_heldout_pair("Segment all the orange rings.")
    assert not mentions_heldout_pair("Find every red ball.")
    assert not mentions_heldout_pair("Which red things are pointy?")


@pytest.mark.parametrize("size", [(480, 640)])
def test_questions_on_camera_sized_scenes(size) -> None:
    for scene, questions in _scenes_and_questions(5, seed0=4000, size=size):
        for q in questions:
            assert set(q.target_ids) == expected_targets(scene, q.sentence)


def test_every_sentence_reads_back_into_one_meaning_and_its_slots() -> None:
    """``read_sentence``: each world sentence is read by exactly one meaning, of the question's kind
    (or any kind for "none", which borrows their templates), and one of that meaning's templates
    filled with the slots read gives the sentence back."""
    sentences: dict[str, str] = {}
    for index in range(40):
        split = "heldout" if index % 2 else "train"
        scene = sample_scene(np.random.default_rng(5000 + index), (224, 224), split=split)
        rng = np.random.default_rng(index)
        for kind, pool in all_questions(scene, rng, split).items():
            sentences.update({q.sentence: kind for q in pool})
        sentences[everything_question(scene, rng).sentence] = "everything"
    assert len(sentences) > 300
    meanings = set()
    for sentence, kind in sentences.items():
        read = read_sentence(sentence)
        assert read is not None, sentence
        meaning, slots = read
        meanings.add(meaning)
        assert kind == "none" or meaning == kind or meaning.startswith(kind + "_"), (sentence, meaning)
        matching = {m for m, templates in SENTENCE_TEMPLATES.items() for t in templates if _fills(t, slots) == sentence}
        assert matching == {meaning}, (sentence, matching)
    assert meanings == set(SENTENCE_TEMPLATES)
    assert read_sentence("Where are the spheres?") is None
    assert read_sentence("Find every ball on the table.") == ("shape", {"shape": "ball", "shapes": "balls"})


def _fills(template: str, slots: dict[str, str]) -> str | None:
    try:
        return template.format(**slots)
    except KeyError:
        return None
