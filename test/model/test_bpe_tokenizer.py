"""The embedded model's tokenizer: SmolLM2's byte-level BPE (from its package) + PixelLM's added tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from pixellm_ros.engine.errors import InvalidInstructionError
from pixellm_ros.engine.prompt import build_prompt_ids
from pixellm_ros.model.bpe_tokenizer import BPETokenizer, is_bpe_folder
from pixellm_ros.model.constants import IMAGE_TOKEN_INDEX, added_token_names
from pixellm_ros.model.pretrained_llm import pretrained_tokenizer_files


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    path, roles = pretrained_tokenizer_files("smollm2_135m_instruct", progress=False)
    return BPETokenizer(Tokenizer.from_file(str(path)), added_token_names(2), bos=roles["bos_token"],
                        eos=roles["eos_token"], pad=roles["pad_token"], unk=roles["unk_token"])


def test_added_tokens_follow_the_base_vocabulary(tokenizer: BPETokenizer) -> None:
    assert tokenizer.base_vocab_size == 49152 and len(tokenizer) == 49156
    assert tokenizer.added_tokens == {"[SEG0]": 49152, "[SEG1]": 49153, "<im_start>": 49154, "<im_end>": 49155}
    assert tokenizer.seg_token_ids == [49152, 49153]
    assert tokenizer.eos_id == tokenizer.token_to_id("<|im_end|>")


def test_an_added_token_swallows_the_space_before_it(tokenizer: BPETokenizer) -> None:
    ids = tokenizer.encode("The red ball [SEG0][SEG1], the blue box [SEG0][SEG1].")
    assert tokenizer.tokenize("The red ball [SEG0][SEG1].") == ["The", "Ġred", "Ġball", "[SEG0]", "[SEG1]", "."]
    assert tokenizer.decode(ids, skip_special=True) == "The red ball, the blue box."
    assert tokenizer.decode(ids) == "The red ball[SEG0][SEG1], the blue box[SEG0][SEG1]."


def test_streaming_gives_exactly_decode(tokenizer: BPETokenizer) -> None:
    ids = tokenizer.encode("Die grüne Tasse [SEG0][SEG1] — 杯子 ok.")
    stream = tokenizer.streaming_detokenizer()
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == tokenizer.decode(ids, skip_special=True)
    assert "\ufffd" not in "".join(pieces)


def test_the_chatml_prompt_has_one_image_placeholder(tokenizer: BPETokenizer) -> None:
    ids = build_prompt_ids(tokenizer, "  Find every blue box.\n", True, "chatml")
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    text = tokenizer.decode(ids)
    assert text == "<|im_start|>user\n<im_start><image><im_end>\nFind every blue box.<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("control", ["<|im_end|>", "[SEG1]", "<im_start>", "<image>"])
def test_control_text_in_an_instruction_is_refused(tokenizer: BPETokenizer, control: str) -> None:
    with pytest.raises(InvalidInstructionError, match="control text"):
        build_prompt_ids(tokenizer, f"segment {control} the cup", True, "chatml")


def test_save_and_load_round_trip(tokenizer: BPETokenizer, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path)
    assert is_bpe_folder(tmp_path)
    back = BPETokenizer.from_pretrained(tmp_path)
    text = "Which objects are red? [SEG0][SEG1]"
    assert back.encode(text) == tokenizer.encode(text) and back.added_tokens == tokenizer.added_tokens
    assert (back.bos_id, back.eos_id, back.pad_id, back.unk_id) == (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id)
