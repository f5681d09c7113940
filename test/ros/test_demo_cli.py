"""`pixellm-ros demo` (the README's main job) end to end: three processes over real DDS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2


def test_demo_asks_prints_and_writes_overlays(chain_model_dir: Path, domain_id: int, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pixellm_ros", "demo", "--model", str(chain_model_dir), "--out", str(out),
         "--questions", "2", "--width", "320", "--height", "240", "--timeout", "120"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The scripted model answers " the red cup" with one target for every question.
    assert proc.stdout.count("answer:  the red cup") == 2, proc.stdout
    assert proc.stdout.count("- 'the red cup': box") == 2
    assert proc.stdout.count("expected: ") == 2
    for number in (1, 2):
        overlay = cv2.imread(str(out / f"answer_{number}.png"))
        assert overlay is not None and overlay.shape == (240, 320, 3)
    scene = cv2.imread(str(out / "scene.png"))
    # The overlay is the camera frame (the same scene) with the mask drawn: it differs from it.
    assert (overlay != scene).any()
