"""`pixellm-ros train` with ``fresh_process_minutes``: the run goes on in fresh child processes, each
resuming from the checkpoint the one before wrote, and trains as one process would have."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pixellm_ros.training.cli import CHILD_ENV
from pixellm_ros.training.run import train
from pixellm_ros.training.settings import recipe

pytestmark = pytest.mark.timeout(900)  # tiny runs on the real package LLM (its first 4 layers), four processes in all

STEPS = {"stage1_steps": 1, "stage2_steps": 2}  # a process a step, after stage 1's


def test_a_run_in_fresh_processes_trains_as_one_process(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    env = {key: value for key, value in os.environ.items() if key != CHILD_ENV}
    command = [sys.executable, "-m", "pixellm_ros.training", "--out", str(out), "--recipe", "tiny", "--no-progress",
               "--stage1-steps", str(STEPS["stage1_steps"]), "--stage2-steps", str(STEPS["stage2_steps"]),
               "--fresh-process-minutes", "1e-9"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (out / "log.txt").read_text()
    # process 1: stage 1's step; 2: stage 2's first; 3: its second, the export
    assert "process 2: the run goes on from its checkpoint in a fresh process" in log
    assert "process 3: the run goes on" in log and "process 4:" not in log, log
    assert "stage 2: resumed at step 1" in log
    # processes 2 and 3 read the scenes' object readings process 1 computed (their losses below: the same)
    assert log.count("stage 2: the scenes' object readings read from stage2_scenes.pt") == 2, log
    assert (out / "model" / "model.safetensors").is_file()
    assert json.loads((out / "settings.json").read_text())["fresh_process_minutes"] == 1e-9

    # the same run in this process, on the same scenes: the same losses, step for step
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copytree(out / "scenes", alone / "scenes")
    torch.set_num_threads(2)
    train(alone, recipe("tiny", **STEPS), progress=False, log=lambda line: None)
    fresh, single = (json.loads((folder / "history.json").read_text()) for folder in (out, alone))
    for stage in ("stage1", "stage2"):
        assert [row["step"] for row in fresh[stage]] == [row["step"] for row in single[stage]]
        for a, b in zip(fresh[stage], single[stage]):
            assert a["total"] == pytest.approx(b["total"], rel=1e-4), (stage, a, b)
