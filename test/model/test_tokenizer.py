"""PixelLMTokenizer: the slow-LLaMA (transformers 4.31) rule around added tokens, files, decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from pixellm_ros.model.tokenizer import IMAGE_TOKEN_INDEX, PixelLMTokenizer

SEG_GROUP = "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]"
SYSTEM = "A chat between a curious human and an artificial intelligence assistant."


@pytest.fixture(scope="module")
def sp(tiny_sp_model_path: Path) -> spm.SentencePieceProcessor:
    """The bare sentencepiece model: the reference for every plain-text segment."""
    return spm.SentencePieceProcessor(model_file=str(tiny_sp_model_path))


def pieces(sp: spm.SentencePieceProcessor, text: str) -> list[str]:
    return list(sp.encode(text, out_type=str))


# ---------------------------------------------------------------------------------- vocabulary
def test_added_tokens_follow_the_base_vocabulary_in_released_order(tiny_tokenizer: PixelLMTokenizer) -> None:
    base = tiny_tokenizer.base_vocab_size
    assert list(tiny_tokenizer.added_tokens) == [f"[SEG{k}]" for k in range(6)] + ["<im_start>", "<im_end>"]
    assert tiny_tokenizer.seg_token_ids == list(range(base, base + 6))
    assert tiny_tokenizer.im_start_id == base + 6
    assert tiny_tokenizer.im_end_id == base + 7
    assert len(tiny_tokenizer) == base + 8
    assert (tiny_tokenizer.unk_id, tiny_tokenizer.bos_id, tiny_tokenizer.eos_id) == (0, 1, 2)
    assert tiny_tokenizer.pad_id == tiny_tokenizer.unk_id == 0


def test_single_seg_token_is_named_seg(tiny_sp_model_path: Path) -> None:
    tok = PixelLMTokenizer.build(tiny_sp_model_path, num_seg_tokens=1)
    assert list(tok.added_tokens) == ["[SEG]", "<im_start>", "<im_end>"]
    assert tok.seg_token_ids == [tok.base_vocab_size]
    assert tok.tokenize("it [SEG].") == [*tok.tokenize("it"), "[SEG]", "\u2581", "."]


def test_seg_names_are_plain_text_for_a_tokenizer_without_them(tiny_tokenizer: PixelLMTokenizer) -> None:
    # the six-token tokenizer has no "[SEG]": the string is ordinary text there
    assert not set(tiny_tokenizer.encode("[SEG]", add_bos=False)) & set(tiny_tokenizer.added_tokens.values())


def test_build_rejects_a_token_already_in_the_base_vocabulary(tiny_sp_model_path: Path) -> None:
    proto = tiny_sp_model_path.read_bytes()
    with pytest.raises(ValueError, match="already a piece"):
        PixelLMTokenizer(proto, ["[SEG0]", "</s>"])


# ---------------------------------------------------------------------------------- slow rule
def test_text_after_an_added_token_starts_with_a_fresh_space_piece(tiny_tokenizer: PixelLMTokenizer) -> None:
    assert tiny_tokenizer.tokenize("[SEG5].") == ["[SEG5]", "\u2581", "."]
    assert tiny_tokenizer.encode("[SEG5].") == [1, tiny_tokenizer.seg_token_ids[5], *tiny_tokenizer.encode(".")[1:]]
    # the whitespace after the added token is stripped, so both spellings give the same pieces
    assert tiny_tokenizer.tokenize("[SEG5] and") == tiny_tokenizer.tokenize("[SEG5]and")


def test_no_space_piece_between_consecutive_seg_tokens(tiny_tokenizer: PixelLMTokenizer) -> None:
    expected = [f"[SEG{k}]" for k in range(6)]
    assert tiny_tokenizer.tokenize(SEG_GROUP) == expected
    assert tiny_tokenizer.tokenize("[SEG0] [SEG1]  [SEG2]\n[SEG3]\t[SEG4] [SEG5]") == expected


def test_whitespace_before_an_added_token_is_stripped(
    tiny_tokenizer: PixelLMTokenizer, sp: spm.SentencePieceProcessor
) -> None:
    assert tiny_tokenizer.tokenize("the cup  [SEG0]") == [*pieces(sp, "the cup"), "[SEG0]"]
    assert "\u2581" not in tiny_tokenizer.tokenize("the cup [SEG0]")[-2:]


def test_newline_after_im_end_vanishes(tiny_tokenizer: PixelLMTokenizer, sp: spm.SentencePieceProcessor) -> None:
    tokens = tiny_tokenizer.tokenize("<im_end>\nWhat is it?")
    assert tokens == ["<im_end>", *pieces(sp, "What is it?")]
    assert "<0x0A>" not in tokens
    # without an added token in front, sentencepiece keeps the newline as a byte piece
    assert "<0x0A>" in pieces(sp, "\nWhat is it?")


def test_control_tokens_split_without_stripping(tiny_tokenizer: PixelLMTokenizer, sp: spm.SentencePieceProcessor) -> None:
    # <s>/</s>/<unk> were AddedToken(lstrip=False, rstrip=False) in the slow tokenizer
    assert tiny_tokenizer.tokenize("hi </s> there") == [*pieces(sp, "hi "), "</s>", *pieces(sp, " there")]
    assert tiny_tokenizer.encode("</s>", add_bos=False) == [tiny_tokenizer.eos_id]


def test_llava_v1_prompt_ids(tiny_tokenizer: PixelLMTokenizer, sp: spm.SentencePieceProcessor) -> None:
    query = "Segment the red cup. Please respond with segmentation mask."
    prompt = f"{SYSTEM} USER: <im_start><image><im_end>\n{query} ASSISTANT:"
    expected = [
        tiny_tokenizer.bos_id,
        *sp.encode(f"{SYSTEM} USER:"),
        tiny_tokenizer.im_start_id,
        IMAGE_TOKEN_INDEX,
        tiny_tokenizer.im_end_id,
        *sp.encode(f"{query} ASSISTANT:"),
    ]
    assert tiny_tokenizer.encode(prompt) == expected
    assert tiny_tokenizer.encode(prompt).count(IMAGE_TOKEN_INDEX) == 1


def test_image_placeholder_cuts_chunks_without_stripping(
    tiny_tokenizer: PixelLMTokenizer, sp: spm.SentencePieceProcessor
) -> None:
    # LLaVA's tokenizer_image_token encodes each chunk on its own and keeps one BOS in front
    ids = tiny_tokenizer.encode("<image>\nDescribe it.")
    assert ids == [tiny_tokenizer.bos_id, IMAGE_TOKEN_INDEX, *sp.encode("\nDescribe it.")]
    assert tiny_tokenizer.tokenize("a <image> b") == [*pieces(sp, "a "), "<image>", *pieces(sp, " b")]
    assert tiny_tokenizer.encode("<image>", add_bos=False) == [IMAGE_TOKEN_INDEX]


def test_answer_with_two_targets(tiny_tokenizer: PixelLMTokenizer, sp: spm.SentencePieceProcessor) -> None:
    answer = f"Sure, the cup {SEG_GROUP} and the bowl {SEG_GROUP}."
    seg = [f"[SEG{k}]" for k in range(6)]
    assert tiny_tokenizer.tokenize(answer) == [
        *pieces(sp, "Sure, the cup"),
        *seg,
        *pieces(sp, "and the bowl"),
        *seg,
        "\u2581",
        ".",
    ]


def test_rule_does_not_depend_on_the_sentencepiece_model_type(tiny_unigram_sp_model_path: Path) -> None:
    tok = PixelLMTokenizer.build(tiny_unigram_sp_model_path, num_seg_tokens=6)
    unigram = spm.SentencePieceProcessor(model_file=str(tiny_unigram_sp_model_path))
    assert tok.tokenize(f"the cup {SEG_GROUP}.") == [*pieces(unigram, "the cup"), *list(tok.added_tokens)[:6], "\u2581", "."]
    assert tok.tokenize("<im_end>\nok") == ["<im_end>", *pieces(unigram, "ok")]


# ---------------------------------------------------------------------------------- files
def test_save_and_load_round_trip(tiny_tokenizer: PixelLMTokenizer, tiny_tokenizer_dir: Path) -> None:
    assert sorted(p.name for p in tiny_tokenizer_dir.iterdir()) == [
        "added_tokens.json",
        "special_tokens_map.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]
    added = json.loads((tiny_tokenizer_dir / "added_tokens.json").read_text())
    assert added == tiny_tokenizer.added_tokens
    special = json.loads((tiny_tokenizer_dir / "special_tokens_map.json").read_text())
    assert special["pad_token"] == "<unk>"

    loaded = PixelLMTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert loaded.sp_model_proto == (tiny_tokenizer_dir / "tokenizer.model").read_bytes() == tiny_tokenizer.sp_model_proto
    assert loaded.added_tokens == tiny_tokenizer.added_tokens
    assert len(loaded) == len(tiny_tokenizer)
    assert loaded.pad_id == 0
    text = f"{SYSTEM} USER: <im_start><image><im_end>\nFind the mug. ASSISTANT: It is the mug {SEG_GROUP}.</s>"
    assert loaded.encode(text) == tiny_tokenizer.encode(text)


def test_load_from_added_tokens_decoder(tiny_tokenizer: PixelLMTokenizer, tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    # newer transformers write the added tokens into tokenizer_config.json only
    (tmp_path / "tokenizer.model").write_bytes((tiny_tokenizer_dir / "tokenizer.model").read_bytes())
    decoder = {str(i): {"content": t, "special": t.startswith("<")} for t, i in tiny_tokenizer.added_tokens.items()}
    decoder["0"] = {"content": "<unk>", "special": True}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder, "pad_token": "<unk>"}))
    loaded = PixelLMTokenizer.from_pretrained(tmp_path)
    assert loaded.added_tokens == tiny_tokenizer.added_tokens


def test_load_errors(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tokenizer.model"):
        PixelLMTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes((tiny_tokenizer_dir / "tokenizer.model").read_bytes())
    added = json.loads((tiny_tokenizer_dir / "added_tokens.json").read_text())
    added["<im_end>"] += 5  # a gap after the base vocabulary
    (tmp_path / "added_tokens.json").write_text(json.dumps(added))
    with pytest.raises(ValueError, match="not contiguous"):
        PixelLMTokenizer.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize(
    "text",
    [
        "Sure, the red cup is on the table.",
        "There are 12 bottles and 3 glasses!",
        "Two  spaces\nand a newline.",
        "Bytes too: é, ü, 你好, 🙂.",
    ],
)
def test_plain_text_round_trips(tiny_tokenizer: PixelLMTokenizer, text: str) -> None:
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text), skip_special=True) == text
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text, add_bos=False)) == text


def test_decode_renders_or_skips_added_tokens(tiny_tokenizer: PixelLMTokenizer) -> None:
    ids = tiny_tokenizer.encode(f"Sure, the cup {SEG_GROUP} and the bowl {SEG_GROUP}.", add_bos=False)
    assert tiny_tokenizer.decode(ids) == f"Sure, the cup{SEG_GROUP} and the bowl{SEG_GROUP}."
    assert tiny_tokenizer.decode(ids, skip_special=True) == "Sure, the cup and the bowl."
    with_bos = tiny_tokenizer.encode("<im_start><image><im_end>\nok")
    assert tiny_tokenizer.decode(with_bos) == "<s><im_start><image><im_end> ok"
    assert tiny_tokenizer.decode(with_bos, skip_special=True) == "ok"
    # an answer that opens with a seg group has no leading space once the group is skipped
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(f"{SEG_GROUP} the cup"), skip_special=True) == "the cup"


def test_decode_rejects_ids_outside_the_vocabulary(tiny_tokenizer: PixelLMTokenizer) -> None:
    with pytest.raises(ValueError, match="out of range"):
        tiny_tokenizer.decode([len(tiny_tokenizer)])


@pytest.mark.parametrize("skip_special", [True, False])
def test_streaming_deltas_add_up_to_decode(tiny_tokenizer: PixelLMTokenizer, skip_special: bool) -> None:
    answer = f"Sure, 你好 the cup {SEG_GROUP} and é {SEG_GROUP}. Done 🙂</s>"
    ids = tiny_tokenizer.encode(answer)
    stream = tiny_tokenizer.streaming_detokenizer(skip_special=skip_special)
    deltas = [stream.push(i) for i in ids]
    deltas.append(stream.flush())
    assert "".join(deltas) == tiny_tokenizer.decode(ids, skip_special=skip_special)
    assert stream.text == "".join(deltas)
    assert not any("\ufffd" in d for d in deltas)


def test_streaming_holds_back_incomplete_utf8(tiny_tokenizer: PixelLMTokenizer) -> None:
    ids = tiny_tokenizer.encode("你", add_bos=False)
    byte_pieces = [tiny_tokenizer.id_to_token(i) for i in ids if tiny_tokenizer.id_to_token(i).startswith("<0x")]
    assert len(byte_pieces) == 3  # one CJK character = three byte-fallback pieces
    stream = tiny_tokenizer.streaming_detokenizer()
    deltas = [stream.push(i) for i in ids]
    assert deltas[-1] == "你"
    assert all(d == "" for d in deltas[:-1])
