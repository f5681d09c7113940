"""Loading real-MUSE-shaped JSON (file_name / coco_url, polygons / RLE) and evaluating a predictor."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from pixellm_ros.evaluation import EvaluationReport, evaluate, load_muse
from pixellm_ros.evaluation.cli_eval import add_eval_arguments, run_eval_cli
from pixellm_ros.muse.mask_codec import encode_rle

H, W = 6, 8


def _write_image(path: Path, value: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.full((H, W, 3), value, dtype=np.uint8)
    rgb[..., 0] = 255 - value  # not grey, so an RGB/BGR mix-up would show
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def _square(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture()
def muse_files(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Two images as the released MUSE files have them: one by file_name with polygons, one by
    coco_url only (found in a val2017/ folder) with a compressed RLE; one "none" question."""
    root = tmp_path / "images"
    rgb_a = _write_image(root / "a.png", 40)
    rgb_b = _write_image(root / "val2017" / "000000000139.png", 90)
    left = _mask(0, 3, 0, 3)  # polygon (0,0)-(3,3) covers pixels 0..2
    right = _mask(0, 2, 4, 8)
    compressed = coco_mask.encode(np.asfortranarray(right.astype(np.uint8)))
    inst_left = {"category_id": 1, "category_name": "cup", "rephrased_name": "mug", "bbox": [0, 0, 3, 3], "segmentation": _square(0, 0, 3, 3)}
    inst_right = {
        "category_id": 2,
        "category_name": "plate",
        "bbox": [4, 0, 4, 2],
        "segmentation": {"size": [H, W], "counts": compressed["counts"].decode("ascii")},
    }
    inst_b = {"category_id": 3, "category_name": "dog", "rephrased_name": "puppy", "bbox": [0, 3, 8, 3], "segmentation": encode_rle(_mask(3, 6, 0, 8))}
    data = [
        {
            "file_name": "a.png",
            "height": H,
            "width": W,
            "ann_list": [inst_left, inst_right],
            "questions": ["What could I drink from?", "Which objects are on the table?"],
            "answers": [[inst_left], [inst_left, inst_right]],
            "text_answers": ["The mug {seg}.", "The mug {seg} and the plate {seg}."],
        },
        {
            "coco_url": "http://images.cocodataset.org/val2017/000000000139.png",
            "height": H,
            "width": W,
            "ann_list": [inst_b],
            "questions": ["Which animal is here?", "Where is the cat?"],
            "answers": [[inst_b], []],
        },
    ]
    json_path = tmp_path / "muse_val.json"
    json_path.write_text(json.dumps(data))
    truth = {"a_left": left, "a_right": right, "b": _mask(3, 6, 0, 8), "rgb_a": rgb_a, "rgb_b": rgb_b}
    return json_path, root, truth


def test_load_resolves_paths_and_decodes_masks(muse_files) -> None:
    json_path, root, truth = muse_files
    images = load_muse(json_path, root)
    assert len(images) == 2
    assert images[0].image_path == root / "a.png"
    assert images[1].image_path == root / "val2017" / "000000000139.png"  # coco_url only
    np.testing.assert_array_equal(images[0].load_rgb(), truth["rgb_a"])
    np.testing.assert_array_equal(images[1].load_rgb(), truth["rgb_b"])
    left, = images[0].gt_masks(0)
    np.testing.assert_array_equal(left, truth["a_left"])
    left_again, right = images[0].gt_masks(1)
    np.testing.assert_array_equal(left_again, truth["a_left"])
    np.testing.assert_array_equal(right, truth["a_right"])
    assert images[1].gt_masks(1) == []
    assert images[0].kinds == (None, None)


def test_evaluate_known_predictor(muse_files) -> None:
    json_path, root, truth = muse_files
    images = load_muse(json_path, root)
    seen: list[tuple[int, str]] = []

    def predictor(rgb: np.ndarray, instruction: str) -> list[np.ndarray]:
        seen.append((int(rgb[0, 0, 1]), instruction))
        if instruction.startswith("What could I drink"):
            return [truth["a_left"]]  # perfect
        if instruction.startswith("Which objects"):
            return [truth["a_right"]]  # misses the mug: IoU (1 + 0) / 2
        if instruction.startswith("Which animal"):
            return [_mask(4, 6, 0, 8)]  # 16 of the 24 px: IoU 16/24
        return []  # "Where is the cat?": correctly nothing

    report = evaluate(images, predictor, progress=False)
    assert [s for _, s in seen] == [
        "What could I drink from? Please respond with segmentation mask.",
        "Which objects are on the table? Please respond with segmentation mask.",
        "Which animal is here? Please respond with segmentation mask.",
        "Where is the cat? Please respond with segmentation mask.",
    ]
    assert [v for v, _ in seen] == [40, 40, 90, 90]  # the right image went with each question
    o = report.overall
    assert o["num_questions"] == 4 and report.num_images == 2
    assert o["giou"] == pytest.approx((1 + 0.5 + 16 / 24 + 1) / 4)
    # I: 9 + 8 + 16 + 0; U: 9 + (8 + 9) + 24 + 0
    assert o["ciou"] == pytest.approx(33 / 50)
    assert o["count_accuracy"] == pytest.approx(3 / 4)
    assert o["none_accuracy"] == 1.0
    assert "gIoU" in report.table() and "all" in report.table()
    # per number of ground-truth targets: the drink (1), the table (2), the animal (1), the cat (0)
    groups = report.per_target_count
    assert {g: t["num_questions"] for g, t in groups.items()} == {"0": 1, "1": 2, "2+": 1}
    assert groups["2+"]["giou"] == pytest.approx(0.5) and groups["2+"]["count_accuracy"] == 0.0
    assert groups["1"]["giou"] == pytest.approx((1 + 16 / 24) / 2) and groups["0"]["none_accuracy"] == 1.0
    assert "targets 2+" in report.table()


def test_a_report_is_rebuilt_from_its_records_and_shards_join(muse_files, tmp_path: Path) -> None:
    json_path, root, truth = muse_files
    images = load_muse(json_path, root)

    def predictor(rgb: np.ndarray, instruction: str) -> list[np.ndarray]:
        return [truth["a_right"]] if instruction.startswith("Which objects") else []

    whole = evaluate(images, predictor, progress=False)
    shards = [evaluate(images[i : i + 1], predictor, progress=False) for i in range(len(images))]
    joined = EvaluationReport.from_records([r for shard in shards for r in shard.records], whole.num_images)
    assert joined.to_dict() == whole.to_dict()
    whole.write_json(tmp_path / "report.json")
    assert EvaluationReport.read_json(tmp_path / "report.json").to_dict() == whole.to_dict()


def test_an_image_predictor_answers_each_image_at_once_and_scores_the_same(muse_files) -> None:
    json_path, root, truth = muse_files
    images = load_muse(json_path, root)

    def predictor(rgb: np.ndarray, instruction: str) -> list[np.ndarray]:
        return [truth["a_right"]] if instruction.startswith("Which objects") else [truth["a_left"]]

    calls: list[list[str]] = []

    def image_predictor(rgb: np.ndarray, instructions: list[str]) -> list[list[np.ndarray]]:
        calls.append(list(instructions))
        return [predictor(rgb, text) for text in instructions]

    one_by_one = evaluate(images, predictor, progress=False)
    by_image = evaluate(images, None, progress=False, image_predictor=image_predictor)
    assert by_image.to_dict() == one_by_one.to_dict()
    assert [len(c) for c in calls] == [2, 2]
    calls.clear()
    assert evaluate(images, None, limit=3, progress=False, image_predictor=image_predictor).overall["num_questions"] == 3
    assert [len(c) for c in calls] == [2, 1]
    with pytest.raises(ValueError, match="2 questions"):
        evaluate(images, None, progress=False, image_predictor=lambda rgb, texts: [[]])
    with pytest.raises(ValueError, match="either a predictor or an image_predictor"):
        evaluate(images, predictor, progress=False, image_predictor=image_predictor)


def test_limit_counts_questions(muse_files) -> None:
    json_path, root, truth = muse_files
    report = evaluate(load_muse(json_path, root), lambda rgb, q: [], limit=3, progress=False)
    assert report.overall["num_questions"] == 3
    assert report.num_images == 2


def test_wrong_mask_size_and_missing_image_raise(muse_files, tmp_path: Path) -> None:
    json_path, root, _ = muse_files
    images = load_muse(json_path, root)
    with pytest.raises(ValueError, match="original image size"):
        evaluate(images, lambda rgb, q: [np.zeros((3, 3), dtype=bool)], progress=False)
    elsewhere = load_muse(json_path, tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="a.png"):
        elsewhere[0].load_rgb()


def test_malformed_entries_raise(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"file_name": "x.png", "height": 2, "width": 2, "questions": ["q"], "answers": []}]))
    with pytest.raises(ValueError, match="answer lists"):
        load_muse(bad, tmp_path)
    bad.write_text(json.dumps([{"height": 2, "width": 2, "questions": [], "answers": []}]))
    with pytest.raises(ValueError, match="file_name"):
        load_muse(bad, tmp_path)


def test_eval_cli_with_a_predictor_writes_json(muse_files, tmp_path: Path, capsys) -> None:
    json_path, root, truth = muse_files
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    out = tmp_path / "report" / "eval.json"
    args = parser.parse_args(["--data", str(json_path), "--images", str(root), "--out", str(out), "--limit", "2"])
    assert run_eval_cli(args, predictor=lambda rgb, q: [truth["a_left"]]) == 0
    written = json.loads(out.read_text())
    assert written["overall"]["num_questions"] == 2
    assert written["overall"]["giou"] == pytest.approx((1 + 0.5) / 2)
    assert len(written["questions"]) == 2 and written["questions"][1]["num_gt"] == 2
    assert "gIoU" in capsys.readouterr().out
