"""The paraphrased instructions: every world question has one, with other words, kept apart from training."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from pixellm_ros.evaluation.paraphrase import COLOUR_SYNONYMS, REWRITES, SHAPE_SYNONYMS, paraphrase, paraphrased_instruction
from pixellm_ros.muse.instruction import format_instruction
from pixellm_ros.training.phrasing import REWORDINGS, WORD_SWAPS, augment_instruction
from pixellm_ros.world.questions import SENTENCE_TEMPLATES, all_questions, read_sentence
from pixellm_ros.world.scene import sample_scene

PACKAGE = Path(__file__).resolve().parents[2] / "pixellm_ros"


def _sentences(count: int = 40) -> list[str]:
    rng = np.random.default_rng(3)
    out: set[str] = set()
    for index in range(count):
        scene = sample_scene(rng, (224, 224), split="heldout" if index % 2 else "train")
        for pool in all_questions(scene, rng, "heldout" if index % 2 else "train").values():
            out.update(q.sentence for q in pool)
    return sorted(out)


def test_every_world_sentence_has_a_paraphrase_in_other_words() -> None:
    assert set(REWRITES) == set(SENTENCE_TEMPLATES) - {"everything"}  # the one kind the evaluation never asks
    sentences = _sentences()
    assert len(sentences) > 300
    rng = np.random.default_rng(0)
    for sentence in sentences:
        text = paraphrase(sentence, rng)
        assert text is not None, sentence
        assert text.lower().rstrip(".?") != sentence.lower().rstrip(".?")
        assert format_instruction(sentence) != text


def test_paraphrases_are_fixed_per_image_and_question() -> None:
    assert paraphrased_instruction("0001.png", "Where are the balls?") == paraphrased_instruction("0001.png", "Where are the balls?")
    asked = {paraphrased_instruction(f"{i:04d}.png", "Where are the balls?") for i in range(30)}
    assert len(asked) > 3  # styles and rewrites vary over the scenes


def test_training_never_sees_the_evaluations_words_or_module() -> None:
    swapped = {w.lower() for options in WORD_SWAPS.values() for w in options}
    evaluation_words = {w for pair in SHAPE_SYNONYMS.values() for w in pair} | set(COLOUR_SYNONYMS.values())
    assert not swapped & evaluation_words
    rng = np.random.default_rng(1)
    produced = {augment_instruction(s, rng, rate=1.0, rewrite_rate=r).lower() for s in _sentences(10) for r in (0.0, 1.0)
                for _ in range(3)}
    for text in produced:
        assert not any(word in text for word in ("sphere", "cube", "donut", "mug", "violet", "plus sign", "tube")), text
    for path in (PACKAGE / "training").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert "paraphrase" not in node.module, f"{path.name} imports {node.module}"


def test_training_rewordings_are_none_of_the_evaluations_rewrites() -> None:
    """No sentence form training asks a question in (``REWORDINGS``) is one the evaluation asks it in."""

    def plain(text: str) -> str:
        return text.lower().replace(format_instruction("").strip().lower(), "").strip(" .?!")

    for sentence in _sentences(10):
        meaning, slots = read_sentence(sentence)
        training = {plain(form.format(**slots)) for form in REWORDINGS[meaning]}
        evaluation = {plain(paraphrase(sentence, np.random.default_rng(seed)) or "") for seed in range(40)}
        assert not training & evaluation, (sentence, training & evaluation)
