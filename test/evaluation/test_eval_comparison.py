"""The paired bootstrap of two evaluation reports (`pixellm-ros compare`): values worked out by
hand, intervals that behave as a paired interval must, and refusal of unpaired reports."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from pixellm_ros.cli import main
from pixellm_ros.evaluation.comparison import load_question_records, paired_bootstrap
from pixellm_ros.evaluation.evaluator import EvaluationReport, QuestionRecord
from pixellm_ros.evaluation.matching import score_question
from pixellm_ros.evaluation.metrics import MetricAccumulator

H, W = 10, 10


def square(size: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[:size, :size] = True
    return m


GT = square(6)  # 36 px


def record(image: str, question: str, preds: list[np.ndarray], gts: list[np.ndarray]) -> dict:
    score = score_question(preds, gts)
    return asdict(QuestionRecord(image, question, None, score.num_pred, score.num_gt, score.iou, score.intersection, score.union))


def test_identical_reports_differ_by_nothing() -> None:
    records = [record(f"img{i}", "q", [square(3 + i % 4)], [GT]) for i in range(10)]
    report = paired_bootstrap(records, records, resamples=200)
    for m in report.metrics:
        assert m.base == m.new
        assert (m.low, m.high, m.share_better) == (0.0, 0.0, 0.0)
    assert (report.num_images, report.num_questions) == (10, 10)


def test_values_match_the_metric_totals_worked_by_hand() -> None:
    # base: image a, q1 pred 3x3 in the 6x6 gt -> IoU 9/36; q2 two preds for one gt -> count wrong.
    # new: q1 pred 6x6 -> IoU 1; q2 one pred 3x3 -> IoU 9/36, count right.
    base = [record("a", "q1", [square(3)], [GT]), record("a", "q2", [square(6), square(2)], [GT])]
    new = [record("a", "q1", [square(6)], [GT]), record("a", "q2", [square(3)], [GT])]
    report = paired_bootstrap(base, new, resamples=50)
    by_name = {m.name: m for m in report.metrics}
    # base gIoU: (0.25 + 1 / 2) / 2 -- the unmatched 2x2 pred is paired with an empty mask (IoU 0)
    assert by_name["giou"].base == pytest.approx((0.25 + 0.5) / 2)
    assert by_name["giou"].new == pytest.approx((1.0 + 0.25) / 2)
    # base cIoU: (9 + 36) / (36 + 36 + 4); new: (36 + 9) / (36 + 36)
    assert by_name["ciou"].base == pytest.approx(45 / 76)
    assert by_name["ciou"].new == pytest.approx(45 / 72)
    assert by_name["count_accuracy"].base == pytest.approx(0.5)
    assert by_name["count_accuracy"].new == pytest.approx(1.0)
    # the same values as the evaluator's own accumulator
    totals = MetricAccumulator()
    for preds in ([square(3)], [square(6), square(2)]):
        totals.add(score_question(preds, [GT]))
    assert by_name["ciou"].base == pytest.approx(totals.overall.ciou)
    assert by_name["giou"].base == pytest.approx(totals.overall.giou)
    # one image: every resample is that image, so the interval is the point difference
    assert by_name["giou"].low == pytest.approx(by_name["giou"].difference)
    assert by_name["giou"].high == pytest.approx(by_name["giou"].difference)
    assert by_name["giou"].share_better == 1.0


def _noisy_pair(num_images: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Per image, a base IoU anywhere in [0, 1] and a new IoU within +/-0.1 of it (no real gain)."""
    rng = np.random.default_rng(seed)
    base, new = [], []
    for i in range(num_images):
        level = rng.uniform(0.1, 0.9)
        for q in range(3):
            for out, value in ((base, level), (new, np.clip(level + rng.uniform(-0.1, 0.1), 0.0, 1.0))):
                inter = int(round(100 * value))
                out.append({"image": f"i{i}", "question": f"q{q}", "iou": inter / 100, "intersection": inter,
                            "union": 100, "num_pred": 1, "num_gt": 1})
    return base, new


def test_interval_is_paired_and_shrinks_with_more_images() -> None:
    small = paired_bootstrap(*_noisy_pair(20, seed=1), resamples=1000)
    large = paired_bootstrap(*_noisy_pair(320, seed=1), resamples=1000)
    for report in (small, large):
        giou = report.metrics[0]
        assert giou.low < 0.0 < giou.high  # no real gain: the interval holds zero
        # paired: far narrower than the scene-to-scene spread of the IoUs themselves (sd ~0.23)
        assert giou.high - giou.low < 0.1
    width = lambda r: r.metrics[0].high - r.metrics[0].low  # noqa: E731
    assert width(large) < width(small) / 2.5  # 16x the images: ~4x narrower


def test_a_real_gain_is_found() -> None:
    base, new = _noisy_pair(60, seed=2)
    better = [dict(r, iou=min(1.0, r["iou"] + 0.1), intersection=min(100, r["intersection"] + 10)) for r in new]
    giou = paired_bootstrap(base, better, resamples=1000).metrics[0]
    assert giou.low > 0.0
    assert giou.share_better > 0.99


def test_groups_are_compared_on_their_own_questions() -> None:
    # kind "a": the new model is better on every image; kind "b": the same; one question of no kind
    def rec(image: str, question: str, kind: str | None, iou: float, num_pred: int, num_gt: int) -> dict:
        inter = int(round(100 * iou))
        return {"image": image, "question": question, "kind": kind, "iou": iou, "intersection": inter, "union": 100,
                "num_pred": num_pred, "num_gt": num_gt}

    base, new = [], []
    for i in range(12):
        base += [rec(f"i{i}", "qa", "a", 0.4, 1, 1), rec(f"i{i}", "qb", "b", 0.7, 2, 2)]
        new += [rec(f"i{i}", "qa", "a", 0.6, 1, 1), rec(f"i{i}", "qb", "b", 0.7, 1, 2)]
    base.append(rec("j", "q", None, 1.0, 0, 0))
    new.append(rec("j", "q", None, 1.0, 0, 0))
    report = paired_bootstrap(base, new, resamples=200, by=("kind", "targets"))
    kinds, targets = report.groups["kind"], report.groups["targets"]
    assert list(kinds) == ["a", "b"]  # the question of no kind is in no kind's group
    assert list(targets) == ["0", "1", "2+"]
    a, b = kinds["a"], kinds["b"]
    assert (a.num_questions, a.num_images, b.num_questions) == (12, 12, 12)
    assert a.metric("giou").difference == pytest.approx(0.2)
    assert a.metric("giou").low == pytest.approx(0.2) and a.metric("giou").share_better == 1.0
    assert b.metric("giou").difference == pytest.approx(0.0)
    assert b.metric("count_accuracy").difference == pytest.approx(-1.0)
    # grouped by targets, "1" is kind a and "2+" kind b: the same figures
    assert targets["1"].metric("giou").new == pytest.approx(a.metric("giou").new)
    assert targets["2+"].metric("count_accuracy").new == b.metric("count_accuracy").new == 0.0
    # overall: 25 questions, the groups are not averaged into it
    assert report.num_questions == 25
    assert report.metric("giou").difference == pytest.approx(12 * 0.2 / 25)
    payload = report.to_dict()
    assert payload["by"]["kind"]["a"]["metrics"]["giou"]["new"] == pytest.approx(0.6)
    table = report.table()
    assert "affordance" not in table and "\na " in table and "\n2+ " in table
    with pytest.raises(ValueError, match="no grouping"):
        paired_bootstrap(base, new, by=("colour",))


def test_reports_of_different_questions_are_refused() -> None:
    base = [record("a", "q1", [square(3)], [GT]), record("b", "q1", [square(3)], [GT])]
    with pytest.raises(ValueError, match="not of the same questions"):
        paired_bootstrap(base, base[:1])
    with pytest.raises(ValueError, match="twice"):
        paired_bootstrap(base + base[:1], base + base[:1])
    with pytest.raises(ValueError, match="no questions"):
        paired_bootstrap([], [])


def test_cli_compares_two_written_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(name: str, preds_per_question: list[list[np.ndarray]]) -> Path:
        records = []
        for i, preds in enumerate(preds_per_question):
            score = score_question(preds, [GT])
            records.append(QuestionRecord(f"img{i}", "q", "colour", score.num_pred, score.num_gt, score.iou,
                                          score.intersection, score.union))
        path = tmp_path / f"{name}.json"
        EvaluationReport(overall={}, per_kind={}, num_images=len(records), records=records).write_json(path)
        return path

    base = write("base", [[square(3)]] * 8)
    new = write("new", [[square(6)]] * 8)
    out = tmp_path / "cmp.json"
    assert main(["compare", str(base), str(new), "--resamples", "100", "--out", str(out), "--by", "kind"]) == 0
    printed = capsys.readouterr().out
    assert "giou" in printed and "paired over 8 questions on 8 images" in printed
    assert "\ncolour " in printed  # the one kind's own row
    payload = json.loads(out.read_text())
    assert payload["by"]["kind"]["colour"]["metrics"]["giou"]["difference"] == pytest.approx(0.75)
    assert payload["metrics"]["giou"]["difference"] == pytest.approx(0.75)
    assert payload["metrics"]["count_accuracy"]["difference"] == 0.0
    assert len(load_question_records(base)) == 8
    (tmp_path / "bad.json").write_text(json.dumps({"overall": {}}))
    with pytest.raises(ValueError, match="not an evaluation report"):
        load_question_records(tmp_path / "bad.json")
