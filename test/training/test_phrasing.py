"""Training's re-wording: the typo it can add changes one word by one edit, and nothing else; the
sentence forms it can ask a meaning in."""

from __future__ import annotations

import numpy as np

from pixellm_ros.training.phrasing import REWORDINGS, augment_instruction, misspell, reword
from pixellm_ros.world.questions import SENTENCE_TEMPLATES, make_questions, read_sentence
from pixellm_ros.world.scene import sample_scene


def _one_edit(a: str, b: str) -> bool:
    """b is a with one letter swapped with the next, dropped or doubled."""
    if len(b) == len(a):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]]
    short, long_ = (b, a) if len(b) < len(a) else (a, b)
    return len(long_) == len(short) + 1 and any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _sentences(count: int) -> list[str]:
    rng = np.random.default_rng(3)
    return [q.sentence for seed in range(count) for q in make_questions(sample_scene(np.random.default_rng(seed)), rng, 4)]


def test_a_typo_changes_one_long_word_by_one_edit() -> None:
    rng = np.random.default_rng(0)
    for text in ("Segment every red thing.", "Which objects could roll away?", "Find the ball left of the blue cup."):
        for _ in range(20):
            broken = misspell(text, rng)
            pairs = [(a, b) for a, b in zip(text.split(" "), broken.split(" ")) if a != b]
            assert len(pairs) == 1 and len(pairs[0][0].strip(".?")) >= 4 and _one_edit(*pairs[0]), (text, broken)
    assert misspell("Is it red?", rng) == "Is it red?"  # no word of 4+ letters
    assert all(misspell("Roll", np.random.default_rng(seed)) != "Roll" for seed in range(40))  # "ll" swapped is a drop


def test_typos_come_only_with_their_rate_and_leave_the_rest_as_drawn() -> None:
    sentences = _sentences(6)
    plain = [augment_instruction(s, np.random.default_rng([i, 1]), rate=1.0) for i, s in enumerate(sentences)]
    unchanged = [augment_instruction(s, np.random.default_rng([i, 1]), rate=1.0, typo_rate=0.0) for i, s in enumerate(sentences)]
    typed = [augment_instruction(s, np.random.default_rng([i, 1]), rate=1.0, typo_rate=1.0) for i, s in enumerate(sentences)]
    assert unchanged == plain
    changed = 0
    for a, b in zip(plain, typed):
        words = [(x, y) for x, y in zip(a.split(" "), b.split(" ")) if x != y]
        assert len(a.split(" ")) == len(b.split(" ")) and len(words) <= 1, (a, b)
        if words:
            assert _one_edit(*words[0]), (a, b)
            changed += 1
    assert changed >= 0.9 * len(sentences)  # every instruction with a word of 4+ letters


def test_rewordings_cover_every_meaning_with_its_own_slots() -> None:
    """``REWORDINGS`` has forms for exactly the world's meanings, each form filled by the slots its
    meaning's sentences carry; a reworded sentence is one of those forms."""
    assert set(REWORDINGS) == set(SENTENCE_TEMPLATES)
    for sentence in set(_sentences(12)):
        meaning, slots = read_sentence(sentence)
        for form in REWORDINGS[meaning]:
            text = form.format(**slots)
            assert "{" not in text and text.lower() != sentence.lower()
        reworded = reword(sentence, np.random.default_rng(0))
        assert reworded[0].isupper()
        assert reworded[0].lower() + reworded[1:] in {f.format(**slots) for f in REWORDINGS[meaning]}


def test_rewrites_come_only_with_their_rate_and_keep_the_other_draws() -> None:
    sentences = _sentences(6)
    plain = [augment_instruction(s, np.random.default_rng([i, 2]), rate=1.0) for i, s in enumerate(sentences)]
    zero = [augment_instruction(s, np.random.default_rng([i, 2]), rate=1.0, rewrite_rate=0.0) for i, s in enumerate(sentences)]
    rewritten = [augment_instruction(s, np.random.default_rng([i, 2]), rate=1.0, rewrite_rate=1.0) for i, s in enumerate(sentences)]
    assert zero == plain
    assert sum(a != b for a, b in zip(plain, rewritten)) >= 0.9 * len(sentences)
    kept = [augment_instruction(s, np.random.default_rng([i, 2]), rate=0.0, rewrite_rate=1.0) for i, s in enumerate(sentences)]
    assert all(k.startswith(s) for k, s in zip(kept, sentences))  # not re-worded at all: the world's sentence
