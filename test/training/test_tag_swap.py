"""Stage 2's tag swap: a question asked about its scene with one found object's colour or shape word
changed (to a pair of the train split), the answer following the words, and that object's slot
reading the new word; with the rate at 0 the questions drawn are exactly those drawn before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixellm_ros.training.embedded_config import ATTRIBUTE_WORDS
from pixellm_ros.training.scenes import ScenePool, draw_scene
from pixellm_ros.training.stage2 import Stage2Scenes, draw_examples, example_attributes, swap_tag
from pixellm_ros.world.ontology import TRAIN_COLOUR_SHAPE
from pixellm_ros.world.questions import make_questions

GROUPS = tuple(len(words) for words in ATTRIBUTE_WORDS)
SLOTS = 12


@pytest.fixture(scope="module")
def data() -> tuple[ScenePool, Stage2Scenes]:
    """Train-split scenes; slot k is object k, each reading its own words with certainty."""
    pool = ScenePool(scenes=[draw_scene(1, "train", i, 0.0) for i in range(8)])
    attributes = torch.zeros(len(pool), SLOTS, sum(GROUPS))
    starts = np.cumsum((0,) + GROUPS)
    for n, scene in enumerate(pool.scenes):
        for obj in scene.objects:
            for group, word in enumerate((obj.colour, obj.shape, obj.size)):
                attributes[n, obj.id, starts[group] + ATTRIBUTE_WORDS[group].index(word)] = 1.0
    scenes = Stage2Scenes(
        embeddings=torch.zeros(len(pool), SLOTS, 4), attributes=attributes, places=torch.zeros(len(pool), SLOTS, 3),
        valid=torch.ones(len(pool), SLOTS, dtype=torch.bool), teacher=torch.zeros(len(pool), SLOTS, 2, 4),
        object_slot=[{obj.id: obj.id for obj in scene.objects} for scene in pool.scenes],
    )
    return pool, scenes


def test_a_swap_changes_one_words_of_one_object_to_a_seen_pair(data) -> None:  # type: ignore[no-untyped-def]
    pool, scenes = data
    rng = np.random.default_rng(0)
    changed = set()
    for _ in range(60):
        index = int(rng.integers(len(pool)))
        scene = pool.scenes[index]
        relabelled, swap = swap_tag(scene, scenes.object_slot[index], rng)
        different = [(a, b) for a, b in zip(scene.objects, relabelled.objects) if a != b]
        assert len(different) == 1
        before, after = different[0]
        assert swap.slot == scenes.object_slot[index][before.id]
        attribute = ("colour", "shape")[swap.group]
        assert getattr(after, attribute) == ATTRIBUTE_WORDS[swap.group][swap.value] != getattr(before, attribute)
        assert (after.colour, after.shape) in TRAIN_COLOUR_SHAPE
        untouched = ("id", "size", "radius", "center", "angle", "rgb", "shape" if attribute == "colour" else "colour")
        assert all(getattr(after, name) == getattr(before, name) for name in untouched)
        changed.add(attribute)
    assert changed == {"colour", "shape"}


def test_the_question_and_the_slots_reading_follow_the_swapped_words(data) -> None:  # type: ignore[no-untyped-def]
    pool, scenes = data
    examples = draw_examples(scenes, pool, 48, seed=1, step=3, phrasing_rate=0.0, none_rate=0.15, tag_swap_rate=1.0)
    assert all(e.swap is not None for e in examples)
    named = 0
    for example in examples:
        swap = example.swap
        assert swap is not None
        word = ATTRIBUTE_WORDS[swap.group][swap.value]
        original = pool.scenes[example.scene].objects[swap.slot]
        attribute = ("colour", "shape")[swap.group]
        if swap.slot in example.question.target_ids:  # the answer names the target by the words it now has
            part = example.question.answer.split("{seg}")[example.question.target_ids.index(swap.slot)]
            assert word in part.split() and getattr(original, attribute) not in part.split(), (part, word)
            named += 1
    assert named >= 3
    attributes = example_attributes(scenes, examples, GROUPS)
    starts = np.cumsum((0,) + GROUPS)
    for row, example in enumerate(examples):
        swap = example.swap
        assert swap is not None
        span = attributes[row, swap.slot, starts[swap.group]:starts[swap.group + 1]]
        assert span.tolist() == [1.0 if k == swap.value else 0.0 for k in range(GROUPS[swap.group])]
        others = torch.ones(SLOTS, dtype=torch.bool)
        others[swap.slot] = False
        assert torch.equal(attributes[row, others], scenes.attributes[example.scene, others])
    assert not torch.equal(attributes, scenes.attributes[[e.scene for e in examples]])


def test_without_swaps_the_questions_are_those_drawn_before(data) -> None:  # type: ignore[no-untyped-def]
    pool, scenes = data
    plain = draw_examples(scenes, pool, 16, seed=1, step=5, phrasing_rate=0.5, none_rate=0.15)
    assert all(e.swap is None for e in plain)
    # the draw, written out: scene, question, re-wording from one generator
    rng = np.random.default_rng([1, 2, 5])
    index = int(rng.integers(len(pool)))
    (question,) = make_questions(pool.scenes[index], rng, 1, split="train", none_rate=0.15)
    assert (plain[0].scene, plain[0].question.sentence) == (index, question.sentence)
    assert torch.equal(example_attributes(scenes, plain, GROUPS), scenes.attributes[[e.scene for e in plain]])
