"""BPETokenizer: a byte-level BPE vocabulary (SmolLM2's) plus PixelLM's added tokens.

The embedded model's LLM is a pretrained SmolLM2 (LLaMA architecture) whose tokenizer is GPT-2-style
byte-level BPE, run by the ``tokenizers`` library from a ``tokenizer.json``. PixelLM's tokens are
added to it: the seg tokens ``[SEG0]..``, then ``<im_start>`` / ``<im_end>`` (around the image
tokens). A seg token swallows the whitespace in front of it (``lstrip``), so an answer's
``"the red ball [SEG0][SEG1]."`` is ``" the", " red", " ball", [SEG0], [SEG1], "."``: no token is
spent on the space. ``"<image>"`` is not a token: the text is cut there and the cut marked with
``IMAGE_TOKEN_INDEX``, as in :mod:`pixellm_ros.model.tokenizer`.

It offers the interface of :class:`~pixellm_ros.model.tokenizer.PixelLMTokenizer` that the engine,
the evaluation and the training use (encode / decode / streaming detokenizer / the special ids), so
the engine does not care which vocabulary a model has. Files: ``tokenizer.json`` (the base BPE with
the added tokens) and ``tokenizer_config.json`` (which base tokens are bos / eos / pad / unk).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer

from .constants import IMAGE_TOKEN, IMAGE_TOKEN_INDEX, IM_END_TOKEN, IM_START_TOKEN, SEG_TOKEN_PATTERN, seg_token_names

BPE_TOKENIZER_FILE = "tokenizer.json"
BPE_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
BPE_TOKENIZER_KIND = "bpe"


def is_bpe_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds this kind of tokenizer (its config names ``tokenizer_kind: bpe``)."""
    path = Path(folder) / BPE_TOKENIZER_CONFIG_FILE
    if not (Path(folder) / BPE_TOKENIZER_FILE).is_file() or not path.is_file():
        return False
    return json.loads(path.read_text(encoding="utf-8")).get("tokenizer_kind") == BPE_TOKENIZER_KIND


class BPETokenizer:
    """``tokenizers`` byte-level BPE + added tokens; ids ``0..V-1`` base, then the added ones in order."""

    def __init__(self, tokenizer: Tokenizer, added_tokens: Sequence[str], bos: str, eos: str, pad: str, unk: str) -> None:
        self._tok = tokenizer
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        for token in added_tokens:
            if token not in vocab:
                seg = SEG_TOKEN_PATTERN.match(token) is not None
                tokenizer.add_tokens([AddedToken(token, lstrip=seg, rstrip=False, normalized=False, special=False)])
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self._added: dict[str, int] = {t: int(vocab[t]) for t in added_tokens}
        self._added_by_id = {i: t for t, i in self._added.items()}
        if sorted(self._added.values()) != list(range(min(self._added.values(), default=0), min(self._added.values(), default=0) + len(self._added))):
            raise ValueError(f"added tokens must have consecutive ids after the base vocabulary, got {self._added}")
        self._base_vocab_size = min(self._added.values(), default=tokenizer.get_vocab_size())
        seg = sorted(
            ((t, i) for t, i in self._added.items() if SEG_TOKEN_PATTERN.match(t)),
            key=lambda item: int(SEG_TOKEN_PATTERN.match(item[0]).group(1) or 0),  # type: ignore[union-attr]
        )
        if seg and [t for t, _ in seg] != seg_token_names(len(seg)):
            raise ValueError(f"{len(seg)} seg tokens must be {seg_token_names(len(seg))}, got {[t for t, _ in seg]}")
        self._seg_ids = [i for _, i in seg]
        self._names = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
        self._ids: dict[str, int] = {}
        for role, token in self._names.items():
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise ValueError(f"{role} token {token!r} is not in the vocabulary")
            self._ids[role] = int(token_id)
        # base special tokens (e.g. <|im_start|>, <|im_end|>, <|endoftext|>) that decode(skip_special) drops
        self._base_special = {
            int(i): t for i, t in ((tokenizer.token_to_id(t), t) for t in self._names.values()) if i is not None
        }

    # ------------------------------------------------------------------ construction and files
    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str]) -> BPETokenizer:
        root = Path(folder)
        config = json.loads((root / BPE_TOKENIZER_CONFIG_FILE).read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(root / BPE_TOKENIZER_FILE))
        return cls(tokenizer, config["added_tokens"], config["bos_token"], config["eos_token"], config["pad_token"], config["unk_token"])

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(root / BPE_TOKENIZER_FILE), pretty=False)  # compact: 1.6 MB instead of 3.5
        config = {
            "tokenizer_kind": BPE_TOKENIZER_KIND,
            "added_tokens": list(self._added),
            "bos_token": self._names["bos"],
            "eos_token": self._names["eos"],
            "pad_token": self._names["pad"],
            "unk_token": self._names["unk"],
        }
        (root / BPE_TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    # ------------------------------------------------------------------ vocabulary
    def __len__(self) -> int:
        return self._base_vocab_size + len(self._added)

    @property
    def base_vocab_size(self) -> int:
        return self._base_vocab_size

    @property
    def added_tokens(self) -> dict[str, int]:
        """Added token -> id, in id order."""
        return dict(sorted(self._added.items(), key=lambda item: item[1]))

    @property
    def control_strings(self) -> list[str]:
        """Strings a user's instruction must not hold: the added tokens and the base special tokens."""
        return [*self._added, *sorted(set(self._names.values()))]

    @property
    def seg_token_ids(self) -> list[int]:
        return list(self._seg_ids)

    @property
    def im_start_id(self) -> int:
        return self._require_added(IM_START_TOKEN)

    @property
    def im_end_id(self) -> int:
        return self._require_added(IM_END_TOKEN)

    @property
    def bos_id(self) -> int:
        return self._ids["bos"]

    @property
    def eos_id(self) -> int:
        return self._ids["eos"]

    @property
    def unk_id(self) -> int:
        return self._ids["unk"]

    @property
    def pad_id(self) -> int:
        return self._ids["pad"]

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids that ``skip_special`` drops: the added tokens and the base special tokens."""
        return frozenset([*self._added_by_id, *self._base_special])

    def token_to_id(self, token: str) -> int | None:
        token_id = self._tok.token_to_id(token)
        return None if token_id is None else int(token_id)

    def id_to_token(self, token_id: int) -> str:
        if token_id == IMAGE_TOKEN_INDEX:
            return IMAGE_TOKEN
        self._check_id(token_id)
        return str(self._tok.id_to_token(int(token_id)))

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of ``text``; each ``"<image>"`` -> IMAGE_TOKEN_INDEX. No BOS by default: the
        chat template's first token (``<|im_start|>``) is the sequence's start."""
        ids = [self.bos_id] if add_bos else []
        for index, chunk in enumerate(text.split(IMAGE_TOKEN)):
            if index > 0:
                ids.append(IMAGE_TOKEN_INDEX)
            if chunk:
                ids.extend(self._tok.encode(chunk, add_special_tokens=False).ids)
        return ids

    def tokenize(self, text: str) -> list[str]:
        return [self.id_to_token(i) for i in self.encode(text)]

    # ------------------------------------------------------------------ decoding
    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``: byte-level BPE runs decoded by the library, special ids as their strings
        (or dropped with ``skip_special``); ``IMAGE_TOKEN_INDEX`` as ``"<image>"``."""
        out: list[str] = []
        run: list[int] = []
        special = self.special_ids
        for token_id in ids:
            token_id = int(token_id)
            if token_id != IMAGE_TOKEN_INDEX:
                self._check_id(token_id)
            if token_id == IMAGE_TOKEN_INDEX or token_id in special:
                if run:
                    out.append(self._tok.decode(run, skip_special_tokens=False))
                    run = []
                if not skip_special:
                    out.append(self.id_to_token(token_id))
                continue
            run.append(token_id)
        if run:
            out.append(self._tok.decode(run, skip_special_tokens=False))
        return "".join(out)

    def streaming_detokenizer(self, skip_special: bool = True) -> BPEStreamingDetokenizer:
        return BPEStreamingDetokenizer(self, skip_special)

    # ------------------------------------------------------------------ internals
    def _require_added(self, token: str) -> int:
        if token not in self._added:
            raise KeyError(f"this tokenizer has no {token} token (added: {list(self._added)})")
        return self._added[token]

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < len(self):
            raise ValueError(f"token id {token_id} out of range for a vocabulary of {len(self)}")


class BPEStreamingDetokenizer:
    """``push(id)`` returns the text that id adds to ``decode(all ids)``; an incomplete UTF-8
    sequence (one character split over byte tokens, shown as U+FFFD) is held back until it completes."""

    def __init__(self, tokenizer: BPETokenizer, skip_special: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special
        self._ids: list[int] = []
        self._emitted = 0

    def push(self, token_id: int) -> str:
        self._ids.append(int(token_id))
        text = self._tokenizer.decode(self._ids, self._skip_special)
        if text.endswith("\ufffd"):
            return ""
        return self._take(text)

    def flush(self) -> str:
        return self._take(self._tokenizer.decode(self._ids, self._skip_special))

    @property
    def text(self) -> str:
        return self._tokenizer.decode(self._ids, self._skip_special)[: self._emitted]

    def _take(self, text: str) -> str:
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta
