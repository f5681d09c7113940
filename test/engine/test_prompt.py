"""The llava_v1 prompt, pinned to the template text of LLaVA's / PixelLM's conversation.py."""

from __future__ import annotations

import pytest

from pixellm_ros.engine.errors import InvalidInstructionError
from pixellm_ros.engine.prompt import build_prompt_ids, build_prompt_text
from pixellm_ros.model.tokenizer import IMAGE_TOKEN_INDEX, PixelLMTokenizer

# conv_llava_v1: sep_style TWO, sep " ", sep2 "</s>", roles USER/ASSISTANT, this system prompt;
# the user turn is "<im_start><image><im_end>\n{query}", the assistant turn empty -> "ASSISTANT:".
PINNED = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions. "
    "USER: <im_start><image><im_end>\nSegment the red cup. ASSISTANT:"
)


def test_prompt_text_is_llava_v1() -> None:
    assert build_prompt_text("Segment the red cup.") == PINNED
    assert build_prompt_text("  Segment the red cup.\n") == PINNED


def test_prompt_without_im_start_end() -> None:
    assert "USER: <image>\nfind it ASSISTANT:" in build_prompt_text("find it", use_im_start_end=False)


@pytest.mark.parametrize("bad", ["", "   \n", None, 3])
def test_empty_or_non_string_instruction_is_invalid(bad: object) -> None:
    with pytest.raises(InvalidInstructionError):
        build_prompt_text(bad)  # type: ignore[arg-type]


def test_prompt_ids_hold_bos_one_image_and_follow_the_slow_rule(engine_tokenizer: PixelLMTokenizer) -> None:
    ids = build_prompt_ids(engine_tokenizer, "Segment the red cup.")
    assert ids[0] == engine_tokenizer.bos_id
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    image = ids.index(IMAGE_TOKEN_INDEX)
    assert ids[image - 1] == engine_tokenizer.im_start_id
    assert ids[image + 1] == engine_tokenizer.im_end_id
    # The "\n" after <im_end> vanishes and the query starts with a fresh "▁" piece.
    assert engine_tokenizer.id_to_token(ids[image + 2]).startswith("\u2581")
    # The slow rule strips the spaces around added tokens; the prompt ends with "ASSISTANT:".
    assert engine_tokenizer.decode(ids).endswith("USER:<im_start><image><im_end> Segment the red cup. ASSISTANT:")
    assert not engine_tokenizer.id_to_token(ids[-1]).endswith("\u2581")


@pytest.mark.parametrize("text", ["what is in <image> here?", "segment [SEG0] the cup", "find <im_start>", "a<im_end>b"])
def test_control_text_in_the_instruction_is_an_invalid_instruction(
    engine_tokenizer: PixelLMTokenizer, text: str
) -> None:
    # Tokenised as control tokens, these would give two image placeholders or stray seg tokens.
    with pytest.raises(InvalidInstructionError, match="control text"):
        build_prompt_ids(engine_tokenizer, text)


def test_lookalikes_of_control_text_are_ordinary_words(engine_tokenizer: PixelLMTokenizer) -> None:
    ids = build_prompt_ids(engine_tokenizer, "the image of a [SEG] <im start> cup")
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    assert not set(ids) & set(engine_tokenizer.seg_token_ids)
