"""The MUSE JSON schema (PixelLM's dataset format), as the world writes it and the evaluator reads it.

A MUSE file is a JSON list of image entries. The keys below are MUSE's own, plus two of ours that
MUSE readers ignore (``question_kinds``, ``scene``). Masks are COCO segmentations (``mask_codec``).
"""

from __future__ import annotations

from typing import Any, TypedDict

# One per target in a ``text_answers`` string, right after the phrase that names it; training
# replaces it with the model's seg tokens.
SEG_PLACEHOLDER = "{seg}"


class MuseInstance(TypedDict, total=False):
    """One object of an image (an ``ann_list`` entry; ``answers`` repeat these dicts)."""

    id: int
    category_id: int
    category_name: str
    rephrased_name: str  # optional in MUSE: a descriptive name
    bbox: list[float]  # COCO [x, y, w, h]
    area: int
    iscrowd: int
    segmentation: Any  # COCO polygons, or an RLE dict (uncompressed or compressed), or a list of them
    attributes: dict[str, Any]  # ours: colour, size, affordances, centre, radius


class MuseImageEntry(TypedDict, total=False):
    """One image and its questions. ``file_name`` or ``coco_url`` locates the image file."""

    file_name: str
    coco_url: str
    height: int
    width: int
    ann_list: list[MuseInstance]
    questions: list[str]  # bare sentences; the instruction is ``instruction.format_instruction``
    answers: list[list[MuseInstance]]  # one list of instances per question, in answer order
    text_answers: list[str]  # one per question, a SEG_PLACEHOLDER per instance
    question_kinds: list[str]  # ours: the kind of each question (world.questions)
    scene: dict[str, Any]  # ours: split, seed, index of the generated scene
