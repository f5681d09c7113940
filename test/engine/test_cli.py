"""The `segment` command and the overlay, on a tiny model saved to disk and loaded back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixellm_ros.cli import main
from pixellm_ros.engine import EngineError, PixelLMEngine, SegmentationResult, Target
from pixellm_ros.engine.overlay import draw_overlay, target_color
from pixellm_ros.model.checkpoint import save_pixellm
from support.engine import rgb_image, scripted

REPO = Path(__file__).resolve().parents[2]
GROUP = "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]"


@pytest.fixture(scope="module")
def saved_model(tiny_model, engine_tokenizer, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return save_pixellm(tiny_model, engine_tokenizer, tmp_path_factory.mktemp("tiny_model"))


def test_from_pretrained_gives_the_same_answer_as_the_model_in_memory(engine: PixelLMEngine, saved_model: Path) -> None:
    loaded = PixelLMEngine.from_pretrained(saved_model, device="cpu", dtype="float32")
    instruction = "Segment the red cup."
    image = rgb_image(40, 50)
    hook = scripted(engine, instruction, [f"the red cup {GROUP}", engine.tokenizer.eos_id])
    ours = engine.segment(image, instruction, logits_processor=hook)
    theirs = loaded.segment(image, instruction, logits_processor=hook)
    assert theirs.text == ours.text == "the red cup"
    np.testing.assert_array_equal(theirs.targets[0].mask, ours.targets[0].mask)


def test_from_pretrained_reports_bad_folders_and_options(saved_model: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        PixelLMEngine.from_pretrained(tmp_path / "nothing")
    with pytest.raises(EngineError):
        PixelLMEngine.from_pretrained(saved_model, dtype="int3")


def test_segment_command_writes_result_and_overlay(saved_model: Path, tmp_path: Path) -> None:
    image = rgb_image(48, 64, seed=4)
    image_file = tmp_path / "in.png"
    cv2.imwrite(str(image_file), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    status = main([
        "segment", "--model", str(saved_model), "--image", str(image_file), "--instruction", "Segment the cup.",
        "--out", str(out), "--device", "cpu", "--max-new-tokens", "6", "--quiet",
    ])
    assert status == 0
    payload = json.loads((out / "result.json").read_text())
    assert payload["generated_tokens"] <= 6 and payload["image_hw"] == [48, 64]
    overlay = cv2.imread(str(out / "overlay.png"))
    assert overlay.shape == (48, 64, 3)


def test_segment_command_exit_codes(saved_model: Path, tmp_path: Path) -> None:
    args = ["segment", "--model", str(saved_model), "--instruction", "x", "--out", str(tmp_path), "--quiet"]
    assert main([*args, "--image", str(tmp_path / "missing.png")]) == 2
    image_file = tmp_path / "in.png"
    cv2.imwrite(str(image_file), np.zeros((8, 8, 3), np.uint8))
    assert main(["segment", "--model", str(saved_model), "--image", str(image_file), "--instruction", "  ",
                 "--out", str(tmp_path), "--quiet"]) == 2
    assert main(["segment", "--model", str(tmp_path / "none"), "--image", str(image_file), "--instruction", "x",
                 "--out", str(tmp_path), "--quiet"]) == 1
    # --objects on a model that reads a grid of patches (a CLIP tower) is refused, with the reason
    assert main(["segment", "--model", str(saved_model), "--image", str(image_file), "--instruction", "x",
                 "--out", str(tmp_path), "--quiet", "--objects"]) == 2


def test_python_dash_m_runs_the_dispatcher() -> None:
    done = subprocess.run([sys.executable, "-m", "pixellm_ros", "--help"], cwd=REPO, capture_output=True, text=True,
                          env={"_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1", "PATH": ""}, timeout=60)
    assert done.returncode == 0 and "segment" in done.stdout


def test_overlay_colours_only_the_mask_pixels() -> None:
    image = np.full((30, 40, 3), 100, dtype=np.uint8)
    mask = np.zeros((30, 40), dtype=bool)
    mask[12:20, 20:30] = True
    result = SegmentationResult(text="the box", targets=[Target("the box", mask, (20, 12, 30, 20), 0.9)])
    drawn = draw_overlay(image, result, draw_boxes=False)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    np.testing.assert_array_equal(image, np.full((30, 40, 3), 100, dtype=np.uint8))  # input untouched
    # Inside (away from the outline and label) the pixel is the 50/50 blend with the target colour.
    blend = (np.array([100, 100, 100]) * 0.5 + np.array(target_color(0)) * 0.5).astype(np.uint8)
    np.testing.assert_array_equal(drawn[16, 25], blend)
    # Far from the target nothing changes.
    np.testing.assert_array_equal(drawn[29, 0], image[29, 0])
