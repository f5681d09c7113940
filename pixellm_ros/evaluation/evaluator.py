"""Evaluating any segmenter on MUSE-format data.

The segmenter is a predictor callable ``(image_rgb (H, W, 3) uint8, instruction str) ->
sequence of (H, W) masks``, one per target it found, so the evaluator knows nothing of the model;
or an ``ImagePredictor`` ``(image_rgb, [instruction, ...]) -> [masks, ...]`` that answers all the
questions of one image at once (an engine's batch: ``world_eval`` uses ``segment_batch``).
Each MUSE question sentence is turned into the instruction with ``instruction_template``
(PixelLM's training phrasing "{sent} Please respond with segmentation mask." by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pixellm_ros.evaluation.matching import QuestionScore, score_question
from pixellm_ros.evaluation.metrics import TARGET_COUNT_GROUPS, MetricAccumulator
from pixellm_ros.evaluation.muse_data import MuseImage
from pixellm_ros.muse.instruction import INSTRUCTION_TEMPLATE, format_instruction

Predictor = Callable[[np.ndarray, str], Sequence[np.ndarray]]
ImagePredictor = Callable[[np.ndarray, list[str]], Sequence[Sequence[np.ndarray]]]


@dataclass(frozen=True)
class QuestionRecord:
    """The outcome of one question (for the JSON report)."""

    image: str
    question: str
    kind: str | None
    num_pred: int
    num_gt: int
    iou: float
    intersection: int
    union: int


@dataclass
class EvaluationReport:
    """Overall, per-kind and per-target-count metrics (``metrics.MetricTotals.summary``; target
    counts grouped by ``metrics.target_count_group``) and per-question records."""

    overall: dict[str, Any]
    per_kind: dict[str, dict[str, Any]]
    num_images: int
    records: list[QuestionRecord] = field(default_factory=list)
    per_target_count: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "overall": self.overall,
            "per_kind": self.per_kind,
            "per_target_count": self.per_target_count,
            "num_images": self.num_images,
            "questions": [asdict(r) for r in self.records],
        }

    @classmethod
    def from_records(cls, records: Sequence[QuestionRecord], num_images: int) -> EvaluationReport:
        """The report of these per-question records (e.g. of several shards of one data set, joined)."""
        accumulator = MetricAccumulator()
        for r in records:
            score = QuestionScore(r.iou, r.intersection, r.union, r.num_pred, r.num_gt, (), ())
            accumulator.add(score, r.kind)
        return _report(accumulator, list(records), num_images)

    @classmethod
    def read_json(cls, path: str | Path) -> EvaluationReport:
        """A report written by ``write_json`` (its metrics recomputed from its records)."""
        payload = json.loads(Path(path).read_text())
        records = [QuestionRecord(**r) for r in payload["questions"]]
        return cls.from_records(records, int(payload["num_images"]))

    def write_json(self, path: str | Path) -> None:
        """Write ``to_dict()`` to ``path``."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    def table(self) -> str:
        """A plain-text table: one row overall, then one per question kind."""
        header = f"{'kind':<14}{'questions':>10}{'gIoU':>9}{'cIoU':>9}{'count acc':>11}{'none acc':>10}"
        rows = [header, "-" * len(header), _row("all", self.overall)]
        rows += [_row(kind, summary) for kind, summary in sorted(self.per_kind.items())]
        rows += [
            _row(f"targets {group}", self.per_target_count[group])
            for group in TARGET_COUNT_GROUPS
            if group in self.per_target_count
        ]
        return "\n".join(rows)


def _row(name: str, summary: dict[str, Any]) -> str:
    none_acc = summary["none_accuracy"]
    none_text = "-" if none_acc is None else f"{none_acc:.3f}"
    return (
        f"{name:<14}{summary['num_questions']:>10}{summary['giou']:>9.4f}{summary['ciou']:>9.4f}"
        f"{summary['count_accuracy']:>11.3f}{none_text:>10}"
    )


def _checked_masks(masks: Sequence[np.ndarray], image: MuseImage, question: str) -> list[np.ndarray]:
    out = []
    for mask in masks:
        arr = np.asarray(mask)
        if arr.shape != (image.height, image.width):
            raise ValueError(
                f"predictor returned a mask of shape {arr.shape} for a {image.height}x{image.width} image "
                f"(question {question!r}); masks must be at the original image size"
            )
        out.append(arr)
    return out


def evaluate(
    images: Sequence[MuseImage],
    predictor: Predictor | None,
    limit: int | None = None,
    instruction_template: str = INSTRUCTION_TEMPLATE,
    progress: bool = True,
    instruction_for: Callable[[str, str], str] | None = None,
    image_predictor: ImagePredictor | None = None,
) -> EvaluationReport:
    """Run ``predictor`` on every question and score it against the ground truth.

    Args:
        images: entries from ``muse_data.load_muse``.
        predictor: (image_rgb, instruction) -> masks.
        limit: evaluate at most this many questions (in file order); None for all.
        instruction_template: turns a MUSE sentence into the instruction (``{sent}`` slot).
        progress: show a tqdm bar over questions.
        instruction_for: (image file name, MUSE sentence) -> the instruction to ask instead of the
            template's (e.g. ``paraphrase.paraphrased_instruction``); records keep the sentence, so
            two reports of the same questions pair up.
        image_predictor: instead of ``predictor`` (pass None there): all the questions of one image
            in one call, answers in order, each scored as ``predictor``'s would be.

    Returns:
        The report; ``report.table()`` prints it, ``report.write_json(path)`` saves it.
    """
    if (predictor is None) == (image_predictor is None):
        raise ValueError("give evaluate() either a predictor or an image_predictor")
    total = sum(len(img.questions) for img in images)
    if limit is not None:
        total = min(total, max(limit, 0))
    accumulator = MetricAccumulator()
    records: list[QuestionRecord] = []
    images_seen = 0
    with tqdm(total=total, desc="eval", unit="q", disable=not progress) as bar:
        for image in images:
            if len(records) >= total:
                break
            if not image.questions:
                continue
            rgb = image.load_rgb()
            images_seen += 1
            count = min(len(image.questions), total - len(records))
            instructions = [
                instruction_for(str(image.candidates[0].name), sentence) if instruction_for is not None
                else format_instruction(sentence, instruction_template)
                for sentence in image.questions[:count]
            ]
            if image_predictor is not None:
                answers = list(image_predictor(rgb, instructions))
                if len(answers) != count:
                    raise ValueError(f"image_predictor gave {len(answers)} answers to {count} questions")
            for qi, sentence in enumerate(image.questions[:count]):
                masks = answers[qi] if image_predictor is not None else predictor(rgb, instructions[qi])
                preds = _checked_masks(masks, image, sentence)
                score = score_question(preds, image.gt_masks(qi))
                kind = image.kinds[qi]
                accumulator.add(score, kind)
                records.append(
                    QuestionRecord(
                        image=str(image.candidates[0].name),
                        question=sentence,
                        kind=kind,
                        num_pred=score.num_pred,
                        num_gt=score.num_gt,
                        iou=score.iou,
                        intersection=score.intersection,
                        union=score.union,
                    )
                )
                bar.update(1)
    return _report(accumulator, records, images_seen)


def _report(accumulator: MetricAccumulator, records: list[QuestionRecord], num_images: int) -> EvaluationReport:
    return EvaluationReport(
        overall=accumulator.overall.summary(),
        per_kind={k: t.summary() for k, t in accumulator.per_kind.items()},
        num_images=num_images,
        records=records,
        per_target_count={g: accumulator.per_target_count[g].summary() for g in TARGET_COUNT_GROUPS
                          if g in accumulator.per_target_count},
    )
