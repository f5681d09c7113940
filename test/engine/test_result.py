"""SegmentationResult serialisation: JSON with COCO uncompressed RLE masks, round trip."""

from __future__ import annotations

import json

import numpy as np

from pixellm_ros.engine.result import SegmentationResult, Target, mask_to_rle, rle_to_mask


def test_rle_is_column_major_and_starts_with_zeros() -> None:
    mask = np.array([[0, 1], [1, 1]], dtype=bool)
    # Column-major: (0,0)=0, (1,0)=1, (0,1)=1, (1,1)=1 -> runs 1 zero, 3 ones.
    assert mask_to_rle(mask) == {"size": [2, 2], "counts": [1, 3]}
    assert mask_to_rle(np.ones((2, 3), dtype=bool))["counts"] == [0, 6]
    assert mask_to_rle(np.zeros((2, 3), dtype=bool))["counts"] == [6]


def test_rle_round_trip_of_a_random_mask() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(mask)), mask)


def test_result_json_round_trip() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[2:5, 10:12] = True
    result = SegmentationResult(
        text="the cup",
        targets=[Target(name="the cup", mask=mask, box=(10, 2, 12, 5), score=0.75)],
        timings={"vision_ms": 1.5},
        generated_tokens=9,
        warnings=["dropped something"],
        image_hw=(20, 30),
    )
    text = result.to_json()
    payload = json.loads(text)
    assert payload["targets"][0]["area"] == 6
    assert payload["targets"][0]["box"] == [10, 2, 12, 5]
    back = SegmentationResult.from_json(text)
    np.testing.assert_array_equal(back.targets[0].mask, mask)
    assert back.targets[0].name == "the cup" and back.targets[0].score == 0.75
    assert back.text == result.text and back.warnings == result.warnings and back.image_hw == (20, 30)
    assert "mask_rle" not in json.loads(result.to_json(include_masks=False))["targets"][0]
