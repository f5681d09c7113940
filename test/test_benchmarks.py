"""Every script in benchmarks/ runs at its smoke size (``--smoke``: toy sizes, seconds), as a
subprocess, and its last line of output, ``RESULT {json}`` (benchmarks/smoke.py), parses: a
benchmark that breaks fails the suite. Scripts without a main (shared modules) are not run.

Some scripts are checked further: the GPU session's scripts at tiny size on the CPU (what the
device run will do, minus the GPU): gpu_7b.py's rows, agreement and refusals, profile_decode.py's
counts (fused layers launch fewer matrix products per token), and bench_batching.py's static-batch
path (what --gpu runs); the tracking benchmarks: the scores come out of py-motmetrics for both
seedings, the cost benchmark times both modes, and the picture is written."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULT_PREFIX = "RESULT "  # benchmarks/smoke.py
# ROS benchmarks talk on a domain of their own: apart from the ROS tests' 10..209 (test/ros/conftest.py).
BENCH_DOMAIN_ID = 210 + os.getpid() % 20


def benchmark_scripts() -> list[str]:
    """Every runnable script of benchmarks/ (one with a ``__main__`` block)."""
    return sorted(p.name for p in BENCHMARKS.glob("*.py") if '__name__ == "__main__"' in p.read_text())


def run_smoke(name: str, *args: str) -> tuple[str, dict[str, Any]]:
    """Run ``benchmarks/name --smoke *args``; returns its stdout and the figures of its RESULT line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), "--smoke", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(RESULT_PREFIX), f"{name}: no RESULT line at the end:\n{done.stdout[-2000:]}"
    figures = json.loads(last[len(RESULT_PREFIX):])
    assert isinstance(figures, dict) and figures, last
    return done.stdout, figures


def numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


# ------------------------------------------------------------------ per-script checks
def check_bench_batching(out: str, figures: dict, _tmp: Path) -> None:
    assert "one-by-one baseline decode_mode static, batches static" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("1 |", "2 |", "4 |", "8 |"))]
    assert len(rows) == 4
    assert "the same step on the static batch decoder: B=1:" in out
    assert figures["throughput_ratio_n8"] > 0 and "continuous_over_static_throughput" in figures


def check_gpu_7b(_out: str, figures: dict, tmp_path: Path) -> None:
    report = json.loads((tmp_path / "gpu_7b.json").read_text())
    rows = {row["row"]: row for row in report["rows"]}
    assert [row["row"] for row in report["rows"]] == [
        "tiny:bf16/dynamic", "tiny:bf16/static+fused", "tiny:int4_weight/static+fused", "tiny:bf16/cuda_graph",
        "release:tiny", "tiny-b:bf16/static"]
    reference, fused = rows["tiny:bf16/dynamic"], rows["tiny:bf16/static+fused"]
    assert reference["status"] == fused["status"] == "ok"
    assert reference["agreement"]["is_reference"] and rows["tiny-b:bf16/static"]["agreement"]["is_reference"]
    agreement = fused["agreement"]
    assert agreement["reference"] == "bf16/dynamic" and agreement["pairs"] == 2
    assert 0.8 <= agreement["top1"] <= 1.0 and 0.8 <= agreement["mask_iou_mean"] <= 1.0
    assert fused["tokens"] == 24 and fused["targets"] >= 1
    assert fused["bound_ms"] > 0 and fused["ratio_to_bound"] == fused["decode_ms_per_token"] / fused["bound_ms"]
    assert rows["tiny:int4_weight/static+fused"]["status"] == "refused"
    assert "CUDA" in rows["tiny:int4_weight/static+fused"]["reason"]
    assert rows["tiny:bf16/cuda_graph"]["status"] == "refused" and rows["release:tiny"]["status"] == "ok"
    table = (tmp_path / "gpu_7b.md").read_text()
    assert "| tiny, bf16/static+fused |" in table and "refused" in table
    assert figures["tiny:bf16/dynamic"]["status"] == "ok"


def check_profile_decode(_out: str, figures: dict, tmp_path: Path) -> None:
    report = json.loads((tmp_path / "profile_decode.json").read_text())
    plain, fused = report["modes"]
    layers = plain["layers"]

    def products_per_token(mode: dict) -> float:
        return next(t["per_token"] for t in mode["steps"]["top"] if t["name"] == "aten::mm")

    # per layer q, k, v, o, gate, up, down (7) against qkv, o, gate_up, down (4); lm_head once
    assert products_per_token(plain) == 7 * layers + 1
    assert products_per_token(fused) == 4 * layers + 1
    assert [x["name"] for x in fused["steps"]["layers"]][:layers] == [f"layer_{i:02d}" for i in range(layers)]
    assert (tmp_path / "profile_decode.md").read_text().count("## ") == 2
    assert "aten::mm" in (tmp_path / "profile_decode_raw.txt").read_text()
    assert not any("error" in mode for mode in figures.values()), figures


def check_bench_engine(_out: str, figures: dict, _tmp: Path) -> None:
    assert figures["same_answers"] is True and figures["research_over_engine"] > 1


def check_bench_embedded_latency(_out: str, figures: dict, _tmp: Path) -> None:
    assert set(figures) == {"default_model"} and all(row["tokens_per_question"] > 0 and row["per_question_s"] > 0 for row in figures.values())


def check_bench_tracking(_out: str, figures: dict, tmp_path: Path) -> None:
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
    assert figures["gt"]["frames"] == gt["frames"]


def check_bench_tracking_cost(out: str, figures: dict, _tmp: Path) -> None:
    assert "step, 2D" in out and "step, with depth (3D fields)" in out and "load average" in out
    assert figures["step_ms_median_2d"] > 0 and figures["step_ms_median_3d"] > 0


def check_bench_node(_out: str, figures: dict, _tmp: Path) -> None:
    assert figures["bytes"]["640x480 1 full"] > figures["bytes"]["640x480 1 cropped"]


def check_bench_stage2_packing(_out: str, figures: dict, _tmp: Path) -> None:
    """Two questions of a scene in one sequence read its image tokens once: fewer tokens a step; with
    ``--frozen both`` each layout is timed with the frozen weights cast each step and held; with
    ``--llm-layers 2`` on an LLM of the base's first 2 layers."""
    alone_cast, alone, packed_cast, packed = figures["layouts"]
    assert [row["llm_layers"] for row in figures["layouts"]] == [2] * 4
    assert [row["frozen"] for row in figures["layouts"]] == ["cast", "held", "cast", "held"]
    assert (alone["per_scene"], packed["per_scene"]) == (1, 2) and alone["questions"] == packed["questions"]
    assert packed["tokens"] < alone["tokens"] and all(row["step_s"] > 0 for row in figures["layouts"])
    assert alone["tokens"] == alone_cast["tokens"] and alone["held_vs_cast"] > 0 and packed["held_vs_cast"] > 0


def check_bench_train_memory(_out: str, figures: dict, _tmp: Path) -> None:
    """The step's process takes both memory settings, and its page faults a step fall with them."""
    default, both = figures["modes"]
    assert (default["mode"], default["taken"], both["mode"], both["taken"]) == ("default", [], "both", ["pages", "keep"])
    assert both["page_faults"] < default["page_faults"] / 4 and default["step_s"] > 0 and both["step_s"] > 0


CHECKS: dict[str, Callable[[str, dict, Path], None]] = {
    "bench_batching.py": check_bench_batching,
    "bench_embedded_latency.py": check_bench_embedded_latency,
    "bench_engine.py": check_bench_engine,
    "bench_node.py": check_bench_node,
    "bench_stage2_packing.py": check_bench_stage2_packing,
    "bench_tracking.py": check_bench_tracking,
    "bench_train_memory.py": check_bench_train_memory,
    "bench_tracking_cost.py": check_bench_tracking_cost,
    "gpu_7b.py": check_gpu_7b,
    "profile_decode.py": check_profile_decode,
}
EXTRA_ARGS: dict[str, list[str]] = {
    "gpu_7b.py": ["--out", "{tmp}"],
    "profile_decode.py": ["--out", "{tmp}"],
    "bench_node.py": ["--domain-id", str(BENCH_DOMAIN_ID)],
    "bench_transport.py": ["--domain-id", str(BENCH_DOMAIN_ID)],
    "bench_tracking.py": ["--quiet", "--json", "{tmp}/r.json", "--picture", "{tmp}/s.jpg"],
    "bench_stage2_packing.py": ["--frozen", "both", "--llm-layers", "2"],
}


def test_the_scripts_are_found_and_every_check_names_one() -> None:
    scripts = benchmark_scripts()
    assert {"bench_engine.py", "bench_embedded_latency.py", "gpu_7b.py"} <= set(scripts)
    assert "gpu_common.py" not in scripts and "smoke.py" not in scripts  # shared modules, no main
    assert set(CHECKS) <= set(scripts) and set(EXTRA_ARGS) <= set(scripts)


@pytest.mark.timeout(400)  # seconds of work each; minutes on a loaded machine, under faulthandler_timeout (420)
@pytest.mark.parametrize("script", benchmark_scripts())
def test_every_benchmark_runs_at_its_smoke_size(script: str, tmp_path: Path) -> None:
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in EXTRA_ARGS.get(script, [])]
    out, figures = run_smoke(script, *args)
    assert numbers(figures) and all(math.isfinite(n) for n in numbers(figures)), figures
    CHECKS.get(script, lambda *_: None)(out, figures, tmp_path)
