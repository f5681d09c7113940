"""Reading MUSE-format JSON: images, questions and ground-truth masks.

Works on the released MUSE files and on ours (``world.muse_export``); the keys are ``muse.schema``'s. An image is found under
the image root by ``file_name``; entries with only a ``coco_url`` are found by the URL's file
name, directly under the root or in a COCO split folder named in the URL (``train2017/``,
``val2017/``...). Ground-truth masks are decoded per question, when needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pixellm_ros.muse.mask_codec import decode_segmentation

_COCO_SPLIT_FOLDERS = ("train2017", "val2017", "train2014", "val2014", "test2017")


@dataclass(frozen=True)
class MuseImage:
    """One image entry: where its file may be, its size, questions and answer instances."""

    candidates: tuple[Path, ...]
    height: int
    width: int
    questions: tuple[str, ...]
    answers: tuple[tuple[Mapping[str, Any], ...], ...]
    kinds: tuple[str | None, ...]

    @property
    def image_path(self) -> Path:
        """The first candidate path that exists."""
        for path in self.candidates:
            if path.is_file():
                return path
        tried = ", ".join(str(p) for p in self.candidates)
        raise FileNotFoundError(f"image not found; tried: {tried}")

    def load_rgb(self) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB, in its stored pixel grid (EXIF rotation ignored,
        as the annotations were drawn on the stored pixels)."""
        path = self.image_path
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise OSError(f"could not read image {path}")
        if bgr.shape[:2] != (self.height, self.width):
            raise ValueError(f"{path} is {bgr.shape[1]}x{bgr.shape[0]}, the JSON says {self.width}x{self.height}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def gt_masks(self, question_index: int) -> list[np.ndarray]:
        """Ground-truth masks of one question: list of (H, W) bool, in answer order."""
        return [
            decode_segmentation(inst["segmentation"], self.height, self.width) for inst in self.answers[question_index]
        ]


def image_candidates(entry: Mapping[str, Any], image_root: Path) -> tuple[Path, ...]:
    """Where an entry's image may be under ``image_root`` (in the order tried)."""
    out: list[Path] = []
    if entry.get("file_name"):
        name = str(entry["file_name"])
        out += [image_root / name, image_root / Path(name).name]
    if entry.get("coco_url"):
        url = str(entry["coco_url"])
        base = url.rstrip("/").split("/")[-1]
        out.append(image_root / base)
        out += [image_root / folder / base for folder in _COCO_SPLIT_FOLDERS if f"/{folder}/" in url]
    if not out:
        raise ValueError("image entry has neither 'file_name' nor 'coco_url'")
    return tuple(dict.fromkeys(out))  # drop duplicates, keep order


def parse_entry(entry: Mapping[str, Any], image_root: Path) -> MuseImage:
    """One MUSE image dict as a ``MuseImage``."""
    questions = list(entry.get("questions") or [])
    answers = list(entry.get("answers") or [])
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answer lists")
    kinds = entry.get("question_kinds")
    if kinds is None or len(kinds) != len(questions):
        kinds = [None] * len(questions)
    return MuseImage(
        candidates=image_candidates(entry, image_root),
        height=int(entry["height"]),
        width=int(entry["width"]),
        questions=tuple(str(q) for q in questions),
        answers=tuple(tuple(a) for a in answers),
        kinds=tuple(kinds),
    )


def load_muse(json_path: str | Path, image_root: str | Path) -> list[MuseImage]:
    """All image entries of a MUSE JSON file (a list of image dicts)."""
    data = json.loads(Path(json_path).read_text())
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise ValueError(f"{json_path}: expected a JSON list of image entries")
    root = Path(image_root)
    return [parse_entry(entry, root) for entry in data]
