"""The GPU recipe's path needs only what the device machine has: no ROS, no pycocotools, no matplotlib.

A fresh interpreter with those made unimportable (scripts/block_imports) imports the training,
recipe and evaluation modules, writes a held-out world export, reads it back and decodes its
masks, and draws no loss curve (without failing). The whole device script runs the same way in
``scripts/device_check_here.sh`` (too long for a test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = "rclpy,rosidl_runtime_py,launch,launch_ros,std_msgs,sensor_msgs,pycocotools,matplotlib"

PROGRAM = r'''
import sys
from pathlib import Path
import numpy as np
import pixellm_ros.training.cli, pixellm_ros.training.recipes, pixellm_ros.training.trainer
from pixellm_ros.training.final_eval import world_eval_data
from pixellm_ros.training.plotting import plot_loss_curve
from pixellm_ros.evaluation.muse_data import load_muse
from pixellm_ros.world import sample_scene

out = Path(sys.argv[1])
json_path = world_eval_data(out, "heldout", 2, seed=1)
images = load_muse(json_path, json_path.parent / "images")
masks = [m for image in images for q in range(len(image.questions)) for m in image.gt_masks(q)]
assert masks and all(m.dtype == bool and m.any() for m in masks)
scene = sample_scene(np.random.default_rng(1), (224, 224), split="heldout")
assert plot_loss_curve([{"step": 1.0, "total": 1.0}], [], out / "curve.png") is None
for name in ("rclpy", "pycocotools", "matplotlib"):
    assert name not in sys.modules, name
    try:
        __import__(name)
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError(f"{name} was importable")
print("ok", len(masks))
'''


def test_the_training_and_evaluation_path_imports_without_ros_pycocotools_matplotlib(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "scripts" / "block_imports"), str(ROOT)])
    env["PIXELLM_BLOCK_IMPORTS"] = BLOCKED
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok ")
