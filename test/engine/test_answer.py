"""Parsing generated ids: answer text without seg tokens, complete groups, target names."""

from __future__ import annotations

import pytest

from pixellm_ros.engine.answer import clean_target_name, group_seg_tokens, parse_answer
from pixellm_ros.model.tokenizer import PixelLMTokenizer

SEG = [100, 101, 102, 103, 104, 105]  # stand-in ids of [SEG0]..[SEG5]; 1..9 are ordinary tokens
GROUP = "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]"


def test_two_complete_groups_with_their_name_tokens() -> None:
    ids = [1, 2, *SEG, 3, 4, *SEG, 5]
    grouping = group_seg_tokens(ids, SEG)
    assert [g.positions for g in grouping.groups] == [tuple(range(2, 8)), tuple(range(10, 16))]
    assert [g.name_ids for g in grouping.groups] == [(1, 2), (3, 4)]
    assert grouping.warnings == []


def test_count_not_a_multiple_of_the_group_keeps_complete_groups_and_reports_the_rest() -> None:
    ids = [1, *SEG, 2, *SEG[:2]]  # 8 seg tokens: one group and a trailing fragment
    grouping = group_seg_tokens(ids, SEG)
    assert [g.positions for g in grouping.groups] == [tuple(range(1, 7))]
    assert len(grouping.warnings) == 1 and "2/6" in grouping.warnings[0]


def test_out_of_order_tokens_break_the_group_and_a_new_seg0_restarts() -> None:
    ids = [1, SEG[0], SEG[1], SEG[3], 2, *SEG, SEG[0], SEG[1], 3, SEG[4]]
    grouping = group_seg_tokens(ids, SEG)
    # [SEG0][SEG1][SEG3]: fragment dropped, stray [SEG3] ignored; then one complete group; then a
    # fragment cut by text and a stray [SEG4].
    assert [g.positions for g in grouping.groups] == [tuple(range(5, 11))]
    assert grouping.groups[0].name_ids == (2,)
    assert len(grouping.warnings) == 4
    assert any("[SEG3] came after [SEG1]" in w for w in grouping.warnings)
    assert any("interrupted by text" in w for w in grouping.warnings)
    assert any("ignored [SEG3]" in w for w in grouping.warnings)
    assert any("ignored [SEG4]" in w for w in grouping.warnings)


def test_seg0_inside_a_group_restarts_it() -> None:
    ids = [SEG[0], SEG[1], *SEG]
    grouping = group_seg_tokens(ids, SEG)
    assert [g.positions for g in grouping.groups] == [tuple(range(2, 8))]
    assert len(grouping.warnings) == 1


def test_single_seg_token_models_group_by_one() -> None:
    grouping = group_seg_tokens([1, 100, 2, 100], [100])
    assert [g.positions for g in grouping.groups] == [(1,), (3,)]
    assert [g.name_ids for g in grouping.groups] == [(1,), (2,)]


@pytest.mark.parametrize(
    ("phrase", "name"),
    [
        ("Sure, it is the red cup", "the red cup"),
        (" and the salt and pepper shaker", "the salt and pepper shaker"),
        ("You can use the mug on the left", "You can use the mug on the left"),
        ("There are 2 bottles: the green bottle", "the green bottle"),
        ("(the blue block)", "the blue block"),
        ("Sure.", "target 3"),
        ("", "target 0"),
    ],
)
def test_target_names_are_the_last_clause_without_filler(phrase: str, name: str) -> None:
    index = 3 if phrase == "Sure." else 0
    assert clean_target_name(phrase, index) == name


def test_parse_answer_with_the_real_tokenizer(engine_tokenizer: PixelLMTokenizer) -> None:
    answer = f"Sure, it is the red cup {GROUP} and the blue block {GROUP}."
    ids = engine_tokenizer.encode(answer, add_bos=False)
    assert sum(i in engine_tokenizer.seg_token_ids for i in ids) == 12
    parsed = parse_answer(ids, engine_tokenizer)
    assert parsed.text == "Sure, it is the red cup and the blue block."
    assert parsed.names == ["the red cup", "the blue block"]
    assert parsed.warnings == []
    assert [ids[p] for p in parsed.groups[1].positions] == engine_tokenizer.seg_token_ids


def test_parse_answer_reports_an_incomplete_trailing_group(engine_tokenizer: PixelLMTokenizer) -> None:
    ids = engine_tokenizer.encode(f"the mug {GROUP} and the bowl [SEG0][SEG1][SEG2]", add_bos=False)
    parsed = parse_answer(ids, engine_tokenizer)
    assert parsed.names == ["the mug"]
    assert len(parsed.warnings) == 1
    assert parsed.text == "the mug and the bowl"
