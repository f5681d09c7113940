"""gIoU, cIoU, target-count accuracy and "none" accuracy over many questions.

- gIoU: mean over questions of IoU_q (``matching``).
- cIoU: sum over questions of their intersection / sum of their union. When the union is 0
  (every question is a "none" question answered with no mask) cIoU is 1.
- count accuracy: share of questions with #pred == #gt.
- none accuracy: among questions whose ground truth has no target, the share answered with
  no mask (None when there is no such question).

Besides the question kinds, the totals are kept per number of ground-truth targets
(``TARGET_COUNT_GROUPS``: none, one, two or more), since listing every target of a multi-target
question is its own skill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pixellm_ros.evaluation.matching import QuestionScore


@dataclass
class MetricTotals:
    """Running sums for one set of questions."""

    num_questions: int = 0
    iou_sum: float = 0.0
    intersection: int = 0
    union: int = 0
    count_correct: int = 0
    none_questions: int = 0
    none_correct: int = 0

    def add(self, score: QuestionScore) -> None:
        """Count one scored question."""
        self.num_questions += 1
        self.iou_sum += score.iou
        self.intersection += score.intersection
        self.union += score.union
        self.count_correct += int(score.count_correct)
        if score.num_gt == 0:
            self.none_questions += 1
            self.none_correct += int(score.num_pred == 0)

    @property
    def giou(self) -> float:
        """Mean per-question IoU (0 when no question was counted)."""
        return self.iou_sum / self.num_questions if self.num_questions else 0.0

    @property
    def ciou(self) -> float:
        """Cumulative intersection over cumulative union (1 when the union is empty)."""
        return self.intersection / self.union if self.union else 1.0

    @property
    def count_accuracy(self) -> float:
        """Share of questions with the right number of masks."""
        return self.count_correct / self.num_questions if self.num_questions else 0.0

    @property
    def none_accuracy(self) -> float | None:
        """Share of no-target questions answered with no mask; None without such questions."""
        return self.none_correct / self.none_questions if self.none_questions else None

    def summary(self) -> dict[str, float | int | None]:
        """The metrics as a JSON-ready dict."""
        return {
            "giou": self.giou,
            "ciou": self.ciou,
            "count_accuracy": self.count_accuracy,
            "none_accuracy": self.none_accuracy,
            "num_questions": self.num_questions,
            "none_questions": self.none_questions,
            "intersection": self.intersection,
            "union": self.union,
        }


TARGET_COUNT_GROUPS: tuple[str, ...] = ("0", "1", "2+")


def target_count_group(num_gt: int) -> str:
    """The group of a question with ``num_gt`` ground-truth targets: "0", "1" or "2+"."""
    return TARGET_COUNT_GROUPS[min(int(num_gt), 2)]


@dataclass
class MetricAccumulator:
    """Totals over all questions, per question kind (when the data names kinds) and per
    ``target_count_group`` of the ground truth."""

    overall: MetricTotals = field(default_factory=MetricTotals)
    per_kind: dict[str, MetricTotals] = field(default_factory=dict)
    per_target_count: dict[str, MetricTotals] = field(default_factory=dict)

    def add(self, score: QuestionScore, kind: str | None = None) -> None:
        """Count one scored question, also under ``kind`` when given, and under its target count."""
        self.overall.add(score)
        if kind is not None:
            self.per_kind.setdefault(kind, MetricTotals()).add(score)
        self.per_target_count.setdefault(target_count_group(score.num_gt), MetricTotals()).add(score)
