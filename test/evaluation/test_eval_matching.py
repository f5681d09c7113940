"""Hungarian matching and gIoU / cIoU on hand-made masks with numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixellm_ros.evaluation.matching import matching_cost, score_question
from pixellm_ros.evaluation.metrics import MetricAccumulator, MetricTotals

H, W = 4, 8


def box(rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


A = box((0, 2), (0, 2))  # 4 px
B = box((2, 4), (4, 8))  # 8 px
C = box((0, 1), (6, 8))  # 2 px, disjoint from A and B
A_SHIFTED = box((0, 2), (1, 3))  # overlaps A in 2 px, union 6 px


def test_cost_matrix_values_by_hand() -> None:
    p = np.array([[1, 1, 0, 0]], dtype=bool)
    g = np.array([[1, 0, 0, 0]], dtype=bool)
    # N = 4 pixels, 1 disagrees: BCE = (1 * -ln 1e-6 + 3 * -ln(1 - 1e-6)) / 4; Dice = 1 - (2*1 + 1) / (2 + 1 + 1).
    bce = (-math.log(1e-6) + 3 * -math.log1p(-1e-6)) / 4
    dice = 1 - 3 / 4
    cost = matching_cost([p], [g])
    assert cost.shape == (1, 1)
    assert cost[0, 0] == pytest.approx(bce + dice, rel=1e-9)
    # Identical masks: no disagreement, Dice = 1 - (2*1 + 1)/(1 + 1 + 1) = 0.
    assert matching_cost([g], [g])[0, 0] == pytest.approx(4 * -math.log1p(-1e-6) / 4, abs=1e-9)


def test_perfect_prediction() -> None:
    s = score_question([A, B], [A, B])
    assert s.iou == 1.0
    assert (s.intersection, s.union) == (12, 12)
    assert s.count_correct


def test_swapped_order_is_matched() -> None:
    s = score_question([B, A], [A, B])
    assert s.iou == 1.0
    assert sorted(s.pairs) == [(0, 1), (1, 0)]
    assert (s.intersection, s.union) == (12, 12)


def test_empty_prediction() -> None:
    s = score_question([], [A, B])
    assert s.iou == 0.0
    assert (s.intersection, s.union) == (0, 12)  # both ground-truth masks paired with nothing
    assert not s.count_correct


def test_extra_mask_halves_the_score() -> None:
    s = score_question([A, C], [A])
    # pairs: (A, A) IoU 1, (C, empty) IoU 0 -> (1 + 0) / max(2, 1)
    assert s.iou == pytest.approx(0.5)
    assert (s.intersection, s.union) == (4, 4 + 2)
    assert s.pairs == ((0, 0),)


def test_missing_mask() -> None:
    s = score_question([B], [A, B])
    assert s.iou == pytest.approx(0.5)
    assert (s.intersection, s.union) == (8, 8 + 4)


def test_partial_overlap() -> None:
    s = score_question([A_SHIFTED], [A])
    assert s.iou == pytest.approx(2 / 6)
    assert (s.intersection, s.union) == (2, 6)


def test_empty_extra_mask_still_counts_as_wrong() -> None:
    s = score_question([A, np.zeros((H, W), dtype=bool)], [A])
    assert s.iou == pytest.approx(0.5)
    assert (s.intersection, s.union) == (4, 4)


def test_none_questions() -> None:
    right = score_question([], [])
    assert right.iou == 1.0 and (right.intersection, right.union) == (0, 0) and right.count_correct
    wrong = score_question([C], [])
    assert wrong.iou == 0.0 and (wrong.intersection, wrong.union) == (0, 2) and not wrong.count_correct


def test_hungarian_beats_greedy() -> None:
    g1 = np.zeros((4, 8), dtype=bool)
    g1[:, 0:4] = True  # 16 px
    g2 = np.zeros((4, 8), dtype=bool)
    g2[:, 4:8] = True  # 16 px
    p1 = np.zeros((4, 8), dtype=bool)
    p1[:, 2:6] = True  # 8 px in each of g1 and g2
    s = score_question([p1, g2.copy()], [g1, g2])
    # Optimal: p2 -> g2 (IoU 1), p1 -> g1 (8 / 24); a greedy p1 -> g2 would leave p2 on g1 (IoU 0).
    assert sorted(s.pairs) == [(0, 0), (1, 1)]
    assert s.iou == pytest.approx((8 / 24 + 1.0) / 2)
    assert (s.intersection, s.union) == (8 + 16, 24 + 16)


def test_probability_masks_are_thresholded() -> None:
    probs = A.astype(np.float32) * 0.9 + 0.2 * (~A)  # 0.9 on A, 0.2 elsewhere
    assert score_question([probs], [A]).iou == 1.0


def test_size_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        score_question([np.zeros((3, 3), dtype=bool)], [A])


def test_giou_ciou_over_a_set_of_questions_by_hand() -> None:
    cases = [
        ([A, B], [A, B]),  # IoU 1,   I 12, U 12
        ([], [A]),  # IoU 0,   I 0,  U 4
        ([A, C], [A]),  # IoU 0.5, I 4,  U 6
        ([A_SHIFTED], [A]),  # IoU 1/3, I 2,  U 6
        ([], []),  # IoU 1,   I 0,  U 0  (correct "none")
        ([C], []),  # IoU 0,   I 0,  U 2  (false positive on a "none" question)
    ]
    acc = MetricAccumulator()
    for i, (preds, gts) in enumerate(cases):
        acc.add(score_question(preds, gts), kind="none" if not gts else "some")
    totals = acc.overall
    assert totals.giou == pytest.approx((1 + 0 + 0.5 + 1 / 3 + 1 + 0) / 6)
    assert totals.ciou == pytest.approx((12 + 0 + 4 + 2 + 0 + 0) / (12 + 4 + 6 + 6 + 0 + 2))
    assert totals.count_accuracy == pytest.approx(3 / 6)  # cases 1, 4, 5 have the right count
    assert totals.none_accuracy == pytest.approx(1 / 2)
    assert acc.per_kind["none"].num_questions == 2
    assert acc.per_kind["none"].giou == pytest.approx(0.5)
    assert acc.per_kind["some"].ciou == pytest.approx(18 / 28)


def test_empty_totals() -> None:
    totals = MetricTotals()
    assert totals.giou == 0.0 and totals.none_accuracy is None
    totals.add(score_question([], []))
    assert totals.ciou == 1.0  # nothing predicted, nothing to find
