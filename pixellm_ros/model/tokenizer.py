"""PixelLMTokenizer: LLaMA's sentencepiece vocabulary plus PixelLM's added tokens.

The released checkpoints were trained with transformers 4.31's *slow* LLaMA tokenizer (legacy mode),
and the prompt ids the model sees must match that exactly. Its rule around added tokens:

1. the text is split on the added tokens (longest match first);
2. the whitespace on both sides of every added token is stripped from its neighbours;
3. each remaining non-empty plain segment is encoded by sentencepiece on its own, so it starts
   with a fresh dummy-prefix "▁":  ``"[SEG5]."`` -> ``[SEG5] ▁ .``; ``"[SEG0] [SEG1]"`` -> no "▁"
   between them; the ``"\\n"`` after ``<im_end>`` vanishes.

``<s>``, ``</s>`` and ``<unk>`` are split out the same way but, being ``AddedToken(lstrip=False,
rstrip=False)`` in that tokenizer, without the stripping. ``"<image>"`` is not a token at all: as in
LLaVA's ``tokenizer_image_token`` the prompt is cut at each ``"<image>"``, every chunk is encoded on
its own, and the cut is marked with ``IMAGE_TOKEN_INDEX`` (-200), which the model replaces with
the image embeddings.

Files (the released layout): ``tokenizer.model`` (sentencepiece), ``added_tokens.json``,
``special_tokens_map.json``, ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from .constants import (
    IM_END_TOKEN,
    IM_START_TOKEN,
    IMAGE_TOKEN,
    IMAGE_TOKEN_INDEX,
    SEG_TOKEN_PATTERN,
    added_token_names,
    seg_token_names,
)

TOKENIZER_MODEL_FILE = "tokenizer.model"
ADDED_TOKENS_FILE = "added_tokens.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

# Unicode categories of characters that hug the preceding word (closing brackets, ".", ",", final
# quotes): decode() does not put the artefact space of the slow rule in front of them.
_NO_SPACE_BEFORE_CATEGORIES = frozenset({"Pe", "Po", "Pf"})


class PixelLMTokenizer:
    """Sentencepiece base vocabulary + added tokens (seg tokens, then ``<im_start>``, ``<im_end>``).

    Ids: ``0 .. V-1`` the sentencepiece pieces (``<unk>`` 0, ``<s>`` 1, ``</s>`` 2 for LLaMA), then
    the added tokens in order from ``V``. ``pad`` = ``unk`` (id 0) unless the special-tokens map
    says otherwise.
    """

    def __init__(
        self,
        sp_model_proto: bytes,
        added_tokens: Sequence[str],
        pad_token: str | None = None,
        model_max_length: int = 2048,
    ) -> None:
        self._sp = spm.SentencePieceProcessor(model_proto=sp_model_proto)
        self._sp_model_proto = sp_model_proto
        self.model_max_length = int(model_max_length)
        base = self._sp.vocab_size()
        if len(set(added_tokens)) != len(added_tokens):
            raise ValueError(f"duplicate added tokens: {list(added_tokens)}")
        for token in added_tokens:
            if self._sp.piece_to_id(token) != self._sp.unk_id() or token == self._sp.id_to_piece(self._sp.unk_id()):
                raise ValueError(f"added token {token!r} is already a piece of the sentencepiece model")
        self._added: dict[str, int] = {token: base + k for k, token in enumerate(added_tokens)}
        self._added_by_id: dict[int, str] = {i: t for t, i in self._added.items()}

        seg = sorted(
            ((t, i) for t, i in self._added.items() if SEG_TOKEN_PATTERN.match(t)),
            key=lambda item: int(SEG_TOKEN_PATTERN.match(item[0]).group(1) or 0),  # type: ignore[union-attr]
        )
        self._seg_ids = [i for _, i in seg]
        if seg and [t for t, _ in seg] != seg_token_names(len(seg)):
            raise ValueError(f"{len(seg)} seg tokens must be {seg_token_names(len(seg))}, got {[t for t, _ in seg]}")

        # The base vocabulary's control pieces, split out of text without stripping (see module doc).
        self._control_pieces: dict[str, int] = {
            self._sp.id_to_piece(i): i
            for i in (self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
            if i >= 0
        }
        splitters = sorted([*self._added, *self._control_pieces], key=len, reverse=True)
        self._splitter = re.compile("(" + "|".join(re.escape(s) for s in splitters) + ")")

        pad = pad_token if pad_token is not None else self._sp.id_to_piece(self._sp.unk_id())
        pad_id = self.token_to_id(pad)
        if pad_id is None:
            raise ValueError(f"pad token {pad!r} is not in the vocabulary")
        self._pad_id = pad_id

    # ------------------------------------------------------------------ construction and files
    @classmethod
    def build(
        cls, sp_model_path: str | os.PathLike[str], num_seg_tokens: int, use_im_start_end: bool = True
    ) -> PixelLMTokenizer:
        """Add ``num_seg_tokens`` seg tokens (and ``<im_start>``/``<im_end>``) to a base model."""
        return cls(Path(sp_model_path).read_bytes(), added_token_names(num_seg_tokens, use_im_start_end))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str]) -> PixelLMTokenizer:
        """Load ``tokenizer.model`` + ``added_tokens.json`` (+ the two json maps) from ``folder``.

        Without ``added_tokens.json`` the added tokens are read from ``tokenizer_config.json``'s
        ``added_tokens_decoder`` (the layout newer transformers versions write).
        """
        root = Path(folder)
        model_file = root / TOKENIZER_MODEL_FILE
        if not model_file.is_file():
            raise FileNotFoundError(f"no sentencepiece {TOKENIZER_MODEL_FILE} in {root}")
        proto = model_file.read_bytes()
        base = spm.SentencePieceProcessor(model_proto=proto).vocab_size()
        config = _read_json(root / TOKENIZER_CONFIG_FILE) or {}
        special_map = _read_json(root / SPECIAL_TOKENS_MAP_FILE) or {}

        added_json = _read_json(root / ADDED_TOKENS_FILE)
        if added_json is not None:
            by_id = {int(i): str(t) for t, i in added_json.items()}
        else:
            decoder = config.get("added_tokens_decoder", {})
            by_id = {int(i): str(_token_content(entry)) for i, entry in decoder.items() if int(i) >= base}
        ids = sorted(by_id)
        if ids != list(range(base, base + len(ids))):
            raise ValueError(f"added token ids in {root} are not contiguous from the base vocabulary size {base}: {ids}")

        pad = special_map.get("pad_token", config.get("pad_token"))
        return cls(
            proto,
            [by_id[i] for i in ids],
            pad_token=None if pad is None else str(_token_content(pad)),
            model_max_length=int(config.get("model_max_length", 2048)),
        )

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write the four tokenizer files (the released layout) into ``folder``."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        (root / TOKENIZER_MODEL_FILE).write_bytes(self._sp_model_proto)
        _write_json(root / ADDED_TOKENS_FILE, dict(self._added))

        def entry(token: str) -> dict[str, Any]:
            return {"content": token, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}

        unk = self._sp.id_to_piece(self._sp.unk_id())
        special_map = {
            "bos_token": entry(self._sp.id_to_piece(self.bos_id)),
            "eos_token": entry(self._sp.id_to_piece(self.eos_id)),
            "unk_token": entry(unk),
            "pad_token": self.id_to_token(self.pad_id),
        }
        _write_json(root / SPECIAL_TOKENS_MAP_FILE, special_map)
        _write_json(
            root / TOKENIZER_CONFIG_FILE,
            {
                "tokenizer_class": "LlamaTokenizer",
                "add_bos_token": True,
                "add_eos_token": False,
                "legacy": True,  # the slow 4.31 behaviour this class reproduces
                "clean_up_tokenization_spaces": False,
                "model_max_length": self.model_max_length,
                "padding_side": "right",
                "sp_model_kwargs": {},
                "bos_token": special_map["bos_token"],
                "eos_token": special_map["eos_token"],
                "unk_token": special_map["unk_token"],
                "pad_token": special_map["pad_token"],
            },
        )

    # ------------------------------------------------------------------ vocabulary
    def __len__(self) -> int:
        return self._sp.vocab_size() + len(self._added)

    @property
    def sp_model_proto(self) -> bytes:
        """The serialised sentencepiece model (the bytes of ``tokenizer.model``)."""
        return self._sp_model_proto

    @property
    def base_vocab_size(self) -> int:
        return self._sp.vocab_size()

    @property
    def added_tokens(self) -> dict[str, int]:
        """Added token -> id, in id order."""
        return dict(self._added)

    @property
    def seg_token_ids(self) -> list[int]:
        """Ids of ``[SEG0]``.. (N*L of them) in index order, or of the single ``[SEG]``."""
        return list(self._seg_ids)

    @property
    def im_start_id(self) -> int:
        return self._require_added(IM_START_TOKEN)

    @property
    def im_end_id(self) -> int:
        return self._require_added(IM_END_TOKEN)

    @property
    def bos_id(self) -> int:
        return int(self._sp.bos_id())

    @property
    def eos_id(self) -> int:
        return int(self._sp.eos_id())

    @property
    def unk_id(self) -> int:
        return int(self._sp.unk_id())

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids that ``skip_special`` drops: added tokens, bos, eos, unk and pad."""
        return frozenset([*self._added_by_id, *self._control_pieces.values(), self._pad_id])

    def token_to_id(self, token: str) -> int | None:
        """Id of an added token or a sentencepiece piece; None when unknown."""
        if token in self._added:
            return self._added[token]
        piece_id = self._sp.piece_to_id(token)
        if piece_id == self._sp.unk_id() and token != self._sp.id_to_piece(self._sp.unk_id()):
            return None
        return int(piece_id)

    def id_to_token(self, token_id: int) -> str:
        """The piece / added-token string of an id (``"<image>"`` for IMAGE_TOKEN_INDEX)."""
        if token_id == IMAGE_TOKEN_INDEX:
            return IMAGE_TOKEN
        if token_id in self._added_by_id:
            return self._added_by_id[token_id]
        self._check_id(token_id)
        return str(self._sp.id_to_piece(token_id))

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        """Token ids of ``text`` by the slow-LLaMA rule; each ``"<image>"`` -> IMAGE_TOKEN_INDEX."""
        ids = [self.bos_id] if add_bos else []
        for index, chunk in enumerate(text.split(IMAGE_TOKEN)):
            if index > 0:
                ids.append(IMAGE_TOKEN_INDEX)
            ids.extend(self._encode_chunk(chunk))
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The pieces ``encode(text, add_bos=False)`` produces, as strings (``"<image>"`` kept)."""
        return [self.id_to_token(i) for i in self.encode(text, add_bos=False)]

    def _encode_chunk(self, chunk: str) -> list[int]:
        """One ``<image>``-free chunk: split on added/control tokens, strip around added ones, encode."""
        parts = [p for p in self._splitter.split(chunk) if p]
        for index, part in enumerate(parts):
            if part not in self._added:
                continue  # control pieces (<s>, </s>, <unk>) keep their neighbours' whitespace
            if index + 1 < len(parts):
                parts[index + 1] = parts[index + 1].lstrip()
            if index > 0:
                parts[index - 1] = parts[index - 1].rstrip()
        ids: list[int] = []
        for part in parts:
            if not part:
                continue  # a segment that was whitespace only
            special = self._added.get(part, self._control_pieces.get(part))
            if special is not None:
                ids.append(special)
            else:
                ids.extend(self._sp.encode(part, out_type=int))
        return ids

    # ------------------------------------------------------------------ decoding
    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``; added/control tokens as their strings, or dropped with ``skip_special``.

        Sentencepiece runs are decoded by sentencepiece (bytes merged, dummy prefix dropped). The
        slow rule puts a fresh "▁" after every added token whatever the source text had there; it
        is rendered as a space only before a word (not before ".", ",", ")" ...) and never at the
        start of the output. The result is prefix-stable, which StreamingDetokenizer relies on.
        """
        assembler = _TextAssembler(self, skip_special)
        for token_id in ids:
            assembler.add(int(token_id))
        return assembler.text()

    def streaming_detokenizer(self, skip_special: bool = True) -> StreamingDetokenizer:
        """A detokenizer that turns one new id at a time into the new text it adds."""
        return StreamingDetokenizer(self, skip_special=skip_special)

    # ------------------------------------------------------------------ internals
    def _require_added(self, token: str) -> int:
        if token not in self._added:
            raise KeyError(f"this tokenizer has no {token} token (added: {list(self._added)})")
        return self._added[token]

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < len(self):
            raise ValueError(f"token id {token_id} out of range for a vocabulary of {len(self)}")

    def _is_added(self, token_id: int) -> bool:
        return token_id in self._added_by_id

    def _decode_run(self, run: Sequence[int]) -> str:
        return str(self._sp.decode(list(run)))

    def _starts_with_space_piece(self, token_id: int) -> bool:
        return self._sp.id_to_piece(token_id).startswith("\u2581")


class _TextAssembler:
    """Builds decode()'s text one id at a time: finished text + the open sentencepiece run.

    A run ends at any special id; its text can only grow while it is open, apart from incomplete
    UTF-8 byte sequences, which sentencepiece renders as U+FFFD until their last byte arrives.
    """

    def __init__(self, tokenizer: PixelLMTokenizer, skip_special: bool) -> None:
        self._tok = tokenizer
        self._skip_special = skip_special
        self._special = tokenizer.special_ids
        self._done: list[str] = []
        self._has_text = False
        self._run: list[int] = []
        self._run_after_added = False
        self._after_added = False

    def add(self, token_id: int) -> None:
        if token_id != IMAGE_TOKEN_INDEX:
            self._tok._check_id(token_id)
        if token_id == IMAGE_TOKEN_INDEX or token_id in self._special:
            self._close_run()
            if not self._skip_special:
                self._append(self._tok.id_to_token(token_id))
            self._after_added = token_id == IMAGE_TOKEN_INDEX or self._tok._is_added(token_id)
            return
        if not self._run:
            self._run_after_added = self._after_added
        self._run.append(token_id)

    def finished_text(self) -> str:
        return "".join(self._done)

    def run_text(self) -> str:
        """Text of the open run, as it would be rendered if it closed now."""
        if not self._run:
            return ""
        text = self._tok._decode_run(self._run)
        if (
            self._run_after_added
            and self._has_text
            and text
            and self._tok._starts_with_space_piece(self._run[0])
            and not text[0].isspace()
            and unicodedata.category(text[0]) not in _NO_SPACE_BEFORE_CATEGORIES
        ):
            text = " " + text
        return text

    def text(self) -> str:
        return self.finished_text() + self.run_text()

    def _close_run(self) -> None:
        if self._run:
            self._append(self.run_text())
            self._run = []

    def _append(self, text: str) -> None:
        if text:
            self._done.append(text)
            self._has_text = True


class StreamingDetokenizer:
    """Incremental decode: ``push(id)`` returns the text that id adds to ``decode(all ids)``.

    Text ending in an incomplete UTF-8 sequence (byte-fallback pieces) is held back until the
    sequence completes; ``flush()`` returns whatever is still held. The concatenation of all deltas
    equals ``tokenizer.decode(ids, skip_special)``.
    """

    def __init__(self, tokenizer: PixelLMTokenizer, skip_special: bool = True) -> None:
        self._assembler = _TextAssembler(tokenizer, skip_special)
        self._emitted = 0  # characters of the assembled text already returned

    def push(self, token_id: int) -> str:
        self._assembler.add(int(token_id))
        text = self._assembler.text()
        if text.endswith("\ufffd"):
            return ""
        return self._take(text)

    def flush(self) -> str:
        return self._take(self._assembler.text())

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return self._assembler.text()[: self._emitted]

    def _take(self, text: str) -> str:
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta


def _token_content(entry: Any) -> Any:
    """A special-token entry is a string or an AddedToken dict ``{"content": ...}``."""
    return entry["content"] if isinstance(entry, dict) else entry


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _write_json(path: Path, payload: Any) -> None:
    with path.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def check_tokenizer_fits(tokenizer: PixelLMTokenizer, config: Any, error: type[Exception] = ValueError) -> None:
    """THE rule a model and its tokenizer must meet (loaders, savers, the engine): every id the
    tokenizer makes indexes the model's vocabulary (``len(tokenizer) <= vocab_size``: a larger,
    padded vocabulary is fine, as in transformers) and its seg tokens are the model's N*L.
    config: a PixelLMConfig. Raises ``error`` saying which part does not fit."""
    if len(tokenizer) > int(config.text.vocab_size):
        raise error(f"the tokenizer has {len(tokenizer)} ids, the model's vocabulary only {config.text.vocab_size}")
    if len(tokenizer.seg_token_ids) != config.seg_tokens_per_target:
        raise error(
            f"the tokenizer has {len(tokenizer.seg_token_ids)} seg tokens, the model expects "
            f"{config.seg_tokens_per_target} (N={config.seg_tokens_per_scale} x L={config.num_scales})"
        )
