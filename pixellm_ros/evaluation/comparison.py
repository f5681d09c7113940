"""Is model B better than model A on the same questions? A paired bootstrap over images.

Two evaluation reports (``EvaluationReport.write_json``) of the same data are paired question by
question. The images are then resampled with replacement (all questions of a drawn image come
along, since questions about one image are not independent: they share its rendering, its
clutter and its lighting), and each resample's gIoU, cIoU and count accuracy are computed for
both models from the same draw. The spread of the differences gives a confidence interval that
is much narrower than the two models' separate intervals, because the scene-to-scene variance
cancels in a paired difference.

Why it exists: on the 60 held-out scenes used for the embedded model, a paired gIoU difference
has a 95% interval of about +/-0.03; variants closer than that cannot be ranked, and this makes
checking it one command (``pixellm-ros compare``).

``by`` repeats the comparison within groups of the questions (``GROUPINGS``: the world's question
kind, the number of targets): each group's interval resamples the images that hold one of its
questions, so a gain in one kind and a loss in another are both seen, with their own uncertainty.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixellm_ros.evaluation.metrics import TARGET_COUNT_GROUPS, target_count_group

METRICS: tuple[str, ...] = ("giou", "ciou", "count_accuracy")
# How questions can be grouped for a comparison within groups: name -> the group of a record (None:
# the record is in no group of that name, e.g. a question of data that names no kinds).
GROUPINGS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "kind": lambda record: record.get("kind"),
    "targets": lambda record: target_count_group(record["num_gt"]),
}


@dataclass(frozen=True)
class MetricComparison:
    """One metric: the two models' values on all questions, their difference and its interval."""

    name: str
    base: float
    new: float
    low: float  # the interval of new - base
    high: float
    share_better: float  # share of resamples where new > base

    @property
    def difference(self) -> float:
        return self.new - self.base


@dataclass(frozen=True)
class ComparisonReport:
    """``metrics`` in ``METRICS`` order; ``confidence`` is the interval's level (e.g. 0.95);
    ``groups``: per grouping of ``GROUPINGS`` asked for, per group the comparison of its questions."""

    metrics: tuple[MetricComparison, ...]
    num_images: int
    num_questions: int
    resamples: int
    confidence: float
    groups: Mapping[str, Mapping[str, ComparisonReport]] = field(default_factory=dict)

    def metric(self, name: str) -> MetricComparison:
        """The comparison of metric ``name`` (of ``METRICS``)."""
        return self.metrics[METRICS.index(name)]

    def table(self) -> str:
        """The overall comparison, then one row per group of each grouping (gIoU and count accuracy)."""
        return "\n\n".join([self._overall_table()] + [self._group_table(by) for by in self.groups])

    def _overall_table(self) -> str:
        level = f"{self.confidence:.0%} interval"
        header = f"{'metric':<16}{'base':>8}{'new':>8}{'new-base':>10}{level:>22}{'P(new>base)':>13}"
        rows = [header, "-" * len(header)]
        for m in self.metrics:
            interval = f"[{m.low:+.4f}, {m.high:+.4f}]"
            rows.append(f"{m.name:<16}{m.base:>8.4f}{m.new:>8.4f}{m.difference:>+10.4f}{interval:>22}{m.share_better:>13.3f}")
        rows.append(
            f"paired over {self.num_questions} questions on {self.num_images} images, "
            f"{self.resamples} image resamples"
        )
        return "\n".join(rows)

    def _group_table(self, by: str) -> str:
        header = (f"{by:<16}{'questions':>10}{'gIoU base':>11}{'new':>7}{'new-base':>10}{'interval':>18}"
                  f"{'count base':>12}{'new':>7}{'new-base':>11}")
        rows = [header, "-" * len(header)]
        for group, report in self.groups[by].items():
            giou, count = report.metric("giou"), report.metric("count_accuracy")
            rows.append(
                f"{group:<16}{report.num_questions:>10}{giou.base:>11.3f}{giou.new:>7.3f}{giou.difference:>+10.3f}"
                f"{f'[{giou.low:+.3f}, {giou.high:+.3f}]':>18}{count.base:>12.1%}{count.new:>7.1%}{100 * count.difference:>+7.1f} pts"
            )
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_images": self.num_images,
            "num_questions": self.num_questions,
            "resamples": self.resamples,
            "confidence": self.confidence,
            "metrics": {
                m.name: {
                    "base": m.base,
                    "new": m.new,
                    "difference": m.difference,
                    "low": m.low,
                    "high": m.high,
                    "share_better": m.share_better,
                }
                for m in self.metrics
            },
            "by": {by: {group: report.to_dict() for group, report in groups.items()} for by, groups in self.groups.items()},
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def load_question_records(path: str | Path) -> list[dict[str, Any]]:
    """The per-question records ("questions") of a report written by ``EvaluationReport.write_json``."""
    payload = json.loads(Path(path).read_text())
    if "questions" not in payload:
        raise ValueError(f"{path}: not an evaluation report (no 'questions'); write one with `pixellm-ros eval --out`")
    return list(payload["questions"])


def _per_image_sums(records: Sequence[Mapping[str, Any]], order: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Records keyed by (image, question) -> per-image sums, images in first-seen order of ``order``."""
    images = list(dict.fromkeys(image for image, _ in order))
    slot = {image: i for i, image in enumerate(images)}
    keyed = {(r["image"], r["question"]): r for r in records}
    sums = {k: np.zeros(len(images)) for k in ("questions", "iou", "intersection", "union", "count")}
    for key in order:
        r = keyed[key]
        i = slot[key[0]]
        sums["questions"][i] += 1
        sums["iou"][i] += float(r["iou"])
        sums["intersection"][i] += float(r["intersection"])
        sums["union"][i] += float(r["union"])
        sums["count"][i] += float(int(r["num_pred"]) == int(r["num_gt"]))
    return sums


def _metrics(weights: np.ndarray, sums: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """weights (R, I) image multiplicities -> each metric per resample, (R,)."""
    questions = weights @ sums["questions"]
    union = weights @ sums["union"]
    intersection = weights @ sums["intersection"]
    # cIoU is 1 when nothing was predicted or expected anywhere (as in metrics.MetricTotals)
    ciou = np.divide(intersection, union, out=np.ones_like(union), where=union > 0)
    return {
        "giou": (weights @ sums["iou"]) / questions,
        "ciou": ciou,
        "count_accuracy": (weights @ sums["count"]) / questions,
    }


def paired_bootstrap(
    base: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    by: Sequence[str] = (),
) -> ComparisonReport:
    """Compare two models' per-question records of the same questions (see the module docstring),
    overall and within the groups of each grouping named in ``by`` (``GROUPINGS``).

    Records are dicts with "image", "question", "iou", "intersection", "union", "num_pred" and
    "num_gt" (``QuestionRecord``; "kind" for grouping by kind). Both lists must hold the same
    (image, question) pairs, each once.
    """
    unknown = [name for name in by if name not in GROUPINGS]
    if unknown:
        raise ValueError(f"no grouping {unknown}; the groupings are {sorted(GROUPINGS)}")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    base_keys = [(r["image"], r["question"]) for r in base]
    new_keys = {(r["image"], r["question"]) for r in new}
    if len(set(base_keys)) != len(base_keys) or len(new_keys) != len(new):
        raise ValueError("a report holds the same (image, question) twice; compare reports of distinct questions")
    if set(base_keys) != new_keys:
        missing = len(set(base_keys) - new_keys)
        extra = len(new_keys - set(base_keys))
        raise ValueError(
            f"the reports are not of the same questions ({missing} only in the base, {extra} only in the new one); "
            "evaluate both models on the same data without --limit differences"
        )
    if not base_keys:
        raise ValueError("no questions to compare")
    base_sums = _per_image_sums(base, base_keys)
    new_sums = _per_image_sums(new, base_keys)
    num_images = len(base_sums["questions"])

    everything = np.ones((1, num_images))
    base_all, new_all = _metrics(everything, base_sums), _metrics(everything, new_sums)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(resamples, num_images))
    weights = np.stack([np.bincount(row, minlength=num_images) for row in draws]).astype(np.float64)
    base_boot, new_boot = _metrics(weights, base_sums), _metrics(weights, new_sums)
    tail = (1.0 - confidence) / 2.0
    comparisons = []
    for name in METRICS:
        diff = new_boot[name] - base_boot[name]
        low, high = np.quantile(diff, [tail, 1.0 - tail])
        comparisons.append(
            MetricComparison(
                name=name,
                base=float(base_all[name][0]),
                new=float(new_all[name][0]),
                low=float(low),
                high=float(high),
                share_better=float(np.mean(diff > 0)),
            )
        )
    groups = {name: _grouped(base, new, GROUPINGS[name], resamples, confidence, seed) for name in by}
    return ComparisonReport(tuple(comparisons), num_images, len(base_keys), resamples, confidence, groups)


def _grouped(
    base: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], group_of: Callable[[Mapping[str, Any]], str | None],
    resamples: int, confidence: float, seed: int,
) -> dict[str, ComparisonReport]:
    """Per group (``group_of`` the base's records; target counts in ``TARGET_COUNT_GROUPS`` order,
    other groups sorted) the paired bootstrap of its questions alone."""
    members: dict[str, set[tuple[str, str]]] = {}
    for r in base:
        group = group_of(r)
        if group is not None:
            members.setdefault(str(group), set()).add((r["image"], r["question"]))
    order = sorted(members, key=lambda g: (TARGET_COUNT_GROUPS.index(g) if g in TARGET_COUNT_GROUPS else len(TARGET_COUNT_GROUPS), g))
    return {
        group: paired_bootstrap(
            [r for r in base if (r["image"], r["question"]) in members[group]],
            [r for r in new if (r["image"], r["question"]) in members[group]],
            resamples, confidence, seed,
        )
        for group in order
    }
