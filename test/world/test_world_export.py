"""MUSE export: the files match the in-memory scenes and round-trip through the evaluator."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pixellm_ros.evaluation import decode_segmentation, evaluate, load_muse
from pixellm_ros.evaluation.cli_eval import add_eval_arguments, run_eval_cli
from pixellm_ros.world import generate_dataset, make_questions, sample_scene, scene_rng
from pixellm_ros.world.cli_world import add_world_arguments, run_world_cli
from pixellm_ros.world.ontology import HELDOUT_COLOUR_SHAPE, SHAPE_NAMES
from pixellm_ros.world.phrasing import mentions_heldout_pair

MUSE_IMAGE_KEYS = {"file_name", "height", "width", "ann_list", "questions", "answers", "text_answers"}
MUSE_INSTANCE_KEYS = {"category_id", "category_name", "rephrased_name", "bbox", "segmentation"}


def _regenerate(seed: int, split: str, index: int, size=(224, 224), questions_per_image: int = 5):
    """The scene, its render and its questions, rebuilt in memory the way generate_dataset draws them."""
    rng = scene_rng(seed, split, index)
    scene = sample_scene(rng, size, split=split)
    questions = make_questions(scene, rng, max_questions=questions_per_image, split=split)
    rgb, masks = scene.render()
    return scene, rgb, masks, questions


def _oracle(entries: list[tuple[np.ndarray, np.ndarray, list]]):
    """A predictor answering from the regenerated scenes (keyed by image content + instruction)."""
    table = {}
    for rgb, masks, questions in entries:
        key = hashlib.sha1(rgb.tobytes()).hexdigest()
        for q in questions:
            table[(key, q.question)] = [masks[i] for i in q.target_ids]

    def predict(image: np.ndarray, instruction: str) -> list[np.ndarray]:
        return table[(hashlib.sha1(image.tobytes()).hexdigest(), instruction)]

    return predict


@pytest.fixture(scope="module")
def train_set(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("world"), num_images=6, seed=11, split="train", progress=False)


def test_files_are_muse_shaped(train_set: Path) -> None:
    data = json.loads(train_set.read_text())
    assert train_set.name == "train.json" and len(data) == 6
    for entry in data:
        assert MUSE_IMAGE_KEYS <= entry.keys()
        assert (train_set.parent / "images" / entry["file_name"]).is_file()
        assert len(entry["questions"]) == len(entry["answers"]) == len(entry["text_answers"]) >= 1
        for inst in entry["ann_list"]:
            assert MUSE_INSTANCE_KEYS <= inst.keys()
            assert inst["category_name"] == SHAPE_NAMES[inst["category_id"] - 1]
            assert inst["rephrased_name"].endswith(inst["category_name"])
        for answer, text in zip(entry["answers"], entry["text_answers"]):
            assert text.count("{seg}") == len(answer)
            assert text.format(seg="[SEG]").count("[SEG]") == len(answer)  # MUSE's own substitution works
        for question in entry["questions"]:
            assert not question.endswith("segmentation mask.")  # bare sentences, as in MUSE


def test_files_match_the_regenerated_scenes(train_set: Path) -> None:
    images = load_muse(train_set, train_set.parent / "images")
    data = json.loads(train_set.read_text())
    for index, (entry, image) in enumerate(zip(data, images)):
        scene, rgb, masks, questions = _regenerate(11, "train", index)
        np.testing.assert_array_equal(image.load_rgb(), rgb)  # PNG is lossless
        assert [a["rephrased_name"] for a in entry["ann_list"]] == [o.full_name for o in scene.objects]
        for inst, obj in zip(entry["ann_list"], scene.objects):
            decoded = decode_segmentation(inst["segmentation"], entry["height"], entry["width"])
            np.testing.assert_array_equal(decoded, masks[obj.id])
            ys, xs = np.nonzero(decoded)
            assert inst["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert inst["area"] == decoded.sum()
        assert entry["questions"] == [q.sentence for q in questions]
        assert entry["text_answers"] == [q.answer for q in questions]
        assert [[a["id"] for a in ans] for ans in entry["answers"]] == [list(q.target_ids) for q in questions]


def test_ground_truth_against_itself_scores_one(train_set: Path) -> None:
    images = load_muse(train_set, train_set.parent / "images")
    entries = []
    for index in range(6):
        _, rgb, masks, questions = _regenerate(11, "train", index)
        entries.append((rgb, masks, questions))
    report = evaluate(images, _oracle(entries), progress=False)
    assert report.overall["num_questions"] == sum(len(i.questions) for i in images) > 0
    assert report.overall["giou"] == 1.0
    assert report.overall["ciou"] == 1.0
    assert report.overall["count_accuracy"] == 1.0
    assert set(report.per_kind) <= {
        "colour", "shape", "colour_shape", "size", "superlative", "extreme",
        "relation", "closest", "half", "affordance", "negation", "none",
    }
    # and a predictor that finds nothing scores 0 wherever there was something to find
    empty = evaluate(images, lambda rgb, q: [], progress=False)
    some = [r for r in empty.records if r.num_gt > 0]
    assert some and all(r.iou == 0.0 for r in some)


def test_same_seed_same_files(tmp_path: Path, train_set: Path) -> None:
    again = generate_dataset(tmp_path, num_images=6, seed=11, split="train", progress=False)
    assert again.read_text() == train_set.read_text()
    other = generate_dataset(tmp_path / "other", num_images=6, seed=12, split="train", progress=False)
    assert other.read_text() != train_set.read_text()


def test_heldout_split_only_combinations_absent_from_train(tmp_path: Path) -> None:
    train = json.loads(generate_dataset(tmp_path / "t", 25, seed=3, split="train", progress=False).read_text())
    held = json.loads(generate_dataset(tmp_path / "h", 10, seed=3, split="heldout", progress=False).read_text())
    pairs = lambda entry: {(a["attributes"]["colour"], a["category_name"]) for a in entry["ann_list"]}  # noqa: E731
    train_pairs = set().union(*(pairs(e) for e in train))
    assert not train_pairs & HELDOUT_COLOUR_SHAPE
    assert not any(mentions_heldout_pair(t) for e in train for t in e["questions"] + e["text_answers"])
    for entry in held:
        unseen = pairs(entry) & HELDOUT_COLOUR_SHAPE
        assert unseen and not unseen & train_pairs  # every held-out image shows a pair train never has
        assert entry["file_name"].startswith("heldout_")


def test_world_cli_and_eval_cli_end_to_end(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_world_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--num", "2", "--split", "heldout", "--width", "160", "--height", "120", "--seed", "4"])
    assert run_world_cli(args) == 0
    assert "red star" in capsys.readouterr().out
    data = json.loads((tmp_path / "heldout.json").read_text())
    assert (data[0]["height"], data[0]["width"]) == (120, 160)

    entries = []
    for index in range(2):
        _, rgb, masks, questions = _regenerate(4, "heldout", index, size=(120, 160))
        entries.append((rgb, masks, questions))
    eval_parser = argparse.ArgumentParser()
    add_eval_arguments(eval_parser)
    out = tmp_path / "report.json"
    eval_args = eval_parser.parse_args(["--data", str(tmp_path / "heldout.json"), "--images", str(tmp_path / "images"), "--out", str(out)])
    assert run_eval_cli(eval_args, predictor=_oracle(entries)) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["giou"] == 1.0 and report["overall"]["ciou"] == 1.0
