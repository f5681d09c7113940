"""SegmentationResult serialisation: JSON with COCO uncompressed RLE masks, round trip."""

from __future__ import annotations

import json

import numpy as np

from pixellm_ros.engine.result import SegmentationResult, Target
from pixellm_ros.muse.mask_codec import encode_rle


def test_a_targets_mask_is_muses_uncompressed_rle_and_comes_back_exact() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    target = Target(name="cup", mask=mask, box=(1, 2, 3, 4), score=0.5)
    payload = target.to_dict()
    assert payload["mask_rle"] == encode_rle(mask)  # the MUSE codec's one encoding
    np.testing.assert_array_equal(Target.from_dict(payload).mask, mask)


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
