"""Reading the generated token ids: the answer text, the seg groups and the target names.

A target is written by the model as the N*L seg tokens ``[SEG0] .. [SEG{N*L-1}]`` right after the
phrase that names it ("... the red cup [SEG0][SEG1][SEG2][SEG3][SEG4][SEG5] and ...").

Grouping rule (a deliberate, documented choice): a group is exactly the N*L seg tokens in order,
as consecutive tokens. The research code only counts seg tokens and drops every mask when the
count is not a multiple of N*L; a trained model always writes complete ordered groups, so anything
else is the model going wrong, and we keep every complete group and report the rest:
  - a group cut short (by text, by an out-of-order seg token, or by the end of generation) is
    dropped with a warning;
  - a seg token other than [SEG0] that does not continue a group is ignored with a warning
    (a group only starts at [SEG0]); an out-of-order [SEG0] starts a new group.
The answer text is the tokenizer's decode with added tokens skipped: exactly the concatenation of
what its streaming detokenizer hands out while generating, so a streamed answer and the final one
agree character for character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from pixellm_ros.model.tokenizer import PixelLMTokenizer

_WHITESPACE = re.compile(r"\s+")
# Where a clause ends: the target name is the last clause before its seg tokens.
# Not "and"/"or": "the salt and pepper shaker" is one name; a group that follows another one
# starts its own text run anyway (" and the bowl [SEG0]..."), and the leading "and" is filler.
_CLAUSE_BREAK = re.compile(r"[.,;:!?\n]")
# Leading words that introduce a target rather than name it ("it is the cup" -> "the cup").
_LEADING_FILLER = re.compile(
    r"^(?:(?:and|or|but|then|also|both|with|plus|as well as|sure|yes|ok|okay)\b\s*"
    r"|(?:it|this|that|there|here|they|these|those)(?:\s+(?:is|are|was|were)|'s|'re)\s+)+",
    re.IGNORECASE,
)
_EDGE_PUNCTUATION = " \t\"'`()[]{}<>-–—*"


def clean_target_name(phrase: str, index: int) -> str:
    """The name of a target from the text just before its seg group.

    Keeps the last clause ("Sure, the red cup" -> "the red cup"), drops introducing words
    ("and", "it is", ...) and edge punctuation. Falls back to "target {index}" (0-based) when
    nothing is left, so every target has a usable label.
    """
    clauses = [_WHITESPACE.sub(" ", c) for c in _CLAUSE_BREAK.split(phrase) if c.strip()]
    name = clauses[-1].strip(_EDGE_PUNCTUATION) if clauses else ""
    previous = None
    while previous != name:  # fillers can stack: "and it is the cup"
        previous = name
        name = _LEADING_FILLER.sub("", name).strip(_EDGE_PUNCTUATION)
    return name if name else f"target {index}"


@dataclass(frozen=True)
class SegGroup:
    """One complete target in the generated ids.

    positions: indices into the generated ids of its N*L seg tokens, in order.
    name_ids: the ordinary token ids just before the group (back to the previous seg token).
    """

    positions: tuple[int, ...]
    name_ids: tuple[int, ...]


@dataclass
class SegGrouping:
    """All complete groups in generation order, and what was dropped (as warnings)."""

    groups: list[SegGroup] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def group_seg_tokens(token_ids: Sequence[int], seg_token_ids: Sequence[int]) -> SegGrouping:
    """Find the complete ``[SEG0]..[SEG{K-1}]`` groups in ``token_ids`` (K = len(seg_token_ids))."""
    seg_index = {int(t): k for k, t in enumerate(seg_token_ids)}
    group_size = len(seg_token_ids)
    result = SegGrouping()
    current: list[int] = []
    text_run: list[int] = []  # ordinary ids since the last seg token
    name_ids: tuple[int, ...] = ()

    def drop_current(reason: str) -> None:
        result.warnings.append(
            f"dropped an incomplete seg group of {len(current)}/{group_size} tokens "
            f"at generated positions {current[0]}..{current[-1]}: {reason}"
        )
        current.clear()

    for position, token in enumerate(token_ids):
        k = seg_index.get(int(token))
        if k is None:
            if current:
                drop_current("interrupted by text")
            text_run.append(int(token))
            continue
        if k == len(current) and (current or k == 0):
            if not current:
                name_ids = tuple(text_run)
            current.append(position)
        else:
            if current:
                drop_current(f"[SEG{k}] came after [SEG{len(current) - 1}]")
            if k == 0:
                name_ids = tuple(text_run)
                current.append(position)
            else:
                result.warnings.append(f"ignored [SEG{k}] at generated position {position}: not inside a group")
        text_run = []
        if len(current) == group_size:
            result.groups.append(SegGroup(positions=tuple(current), name_ids=name_ids))
            current.clear()
    if current:
        drop_current("generation ended inside the group")
    return result


@dataclass
class ParsedAnswer:
    """The answer text (no seg tokens), the complete groups with their names, and warnings."""

    text: str
    groups: list[SegGroup]
    names: list[str]
    warnings: list[str]


def parse_answer(token_ids: Sequence[int], tokenizer: PixelLMTokenizer) -> ParsedAnswer:
    """Parse generated ids (end-of-sequence excluded) into text, groups and target names."""
    ids = [int(t) for t in token_ids]
    grouping = group_seg_tokens(ids, tokenizer.seg_token_ids)
    names = [
        clean_target_name(tokenizer.decode(list(g.name_ids), skip_special=True), i)
        for i, g in enumerate(grouping.groups)
    ]
    text = tokenizer.decode(ids, skip_special=True)
    return ParsedAnswer(text=text, groups=grouping.groups, names=names, warnings=grouping.warnings)
