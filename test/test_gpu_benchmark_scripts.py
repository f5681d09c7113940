"""The GPU session's scripts run on the CPU at tiny sizes (what the device run will do, minus the GPU):
gpu_7b.py's rows, agreement and refusals, profile_decode.py's counts (fused layers launch
fewer matrix products per token), and bench_batching.py's static-batch path (what --gpu runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--tiny", *args], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_bench_batching_runs_its_gpu_path_with_static_batches() -> None:
    out = run_script("bench_batching.py", "--size", "7b", "--batch-mode", "static", "--baseline-mode", "static",
                     "--repeats", "1", "--parts", "1,2", "--tokens", "12")
    assert "one-by-one baseline decode_mode static, batches static" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("1 |", "2 |", "4 |", "8 |"))]
    assert len(rows) == 4
    assert "the same step on the static batch decoder: B=1:" in out


def test_gpu_7b_rows_agreement_and_refusals(tmp_path: Path) -> None:
    plan = "tiny:dynamic,tiny:static+fused,tiny:int4_weight/static+fused,tiny:cuda_graph,release:tiny,tiny-b:static"
    run_script("gpu_7b.py", "--plan", plan, "--tokens", "24", "--pairs", "2", "--repeats", "1", "--out", str(tmp_path))
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


def test_profile_counts_fewer_products_when_fused(tmp_path: Path) -> None:
    run_script("profile_decode.py", "--modes", "static,static+fused", "--steps", "2", "--context", "4", "--out", str(tmp_path))
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
