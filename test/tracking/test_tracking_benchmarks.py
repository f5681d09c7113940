"""The tracking benchmarks run at their smoke size: the scores come out of py-motmetrics for both
seedings, the cost benchmark times both modes, and the picture is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(name: str, *args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--smoke", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(900)
def test_bench_tracking_scores_both_seedings_with_motmetrics(tmp_path: Path) -> None:
    _run("bench_tracking.py", "--quiet", "--json", str(tmp_path / "r.json"), "--picture", str(tmp_path / "s.jpg"))
    report = json.loads((tmp_path / "r.json").read_text())
    gt = report["gt"]
    assert gt["frames"] == 75 and gt["object_frames"] > 100
    assert gt["mean_iou"] > 0.7 and gt["switches_per_1000"] < 20  # the tracker alone follows the objects
    assert 0.0 <= gt["idf1"] <= 1.0 and set(gt["iou_by_frames_since_answer"]) >= {"0", "29"}
    assert gt["iou_by_frames_since_answer"]["0"] == pytest.approx(1.0)  # the answer's own frame: exact masks
    model = report["model"]
    assert model["answers"] >= 1 and model["latency_s_median"] > 0
    assert {"mean_iou", "mean_iou_ungated", "idf1"} <= set(model["tracked"]) and model["own"]["frames"] >= 1
    assert (tmp_path / "s.jpg").stat().st_size > 10_000


@pytest.mark.timeout(600)
def test_bench_tracking_cost_times_2d_and_3d() -> None:
    out = _run("bench_tracking_cost.py")
    assert "step, 2D" in out and "step, with depth (3D fields)" in out and "load average" in out
