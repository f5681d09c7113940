"""COCO segmentation decoding/encoding on hand-made cases (polygons, RLE of both kinds)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from pixellm_ros.muse.mask_codec import decode_segmentation, encode_rle, mask_bbox

# A 3x4 mask; column-major reading: col0 = 0,0,1  col1 = 1,1,0  col2 = col3 = 0
# -> runs: 2 zeros, 3 ones, 7 zeros.
HAND_MASK = np.array([[0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
HAND_COUNTS = [2, 3, 7]


def test_encode_uncompressed_rle_by_hand() -> None:
    assert encode_rle(HAND_MASK) == {"size": [3, 4], "counts": HAND_COUNTS}


def test_encode_rle_starts_with_zero_run_when_first_pixel_set() -> None:
    mask = np.zeros((2, 2), dtype=bool)
    mask[0, 0] = True  # column-major: 1, 0, 0, 0
    assert encode_rle(mask)["counts"] == [0, 1, 3]
    assert encode_rle(np.ones((2, 3), dtype=bool))["counts"] == [0, 6]
    assert encode_rle(np.zeros((2, 3), dtype=bool))["counts"] == [6]


def test_decode_uncompressed_rle_by_hand() -> None:
    decoded = decode_segmentation({"size": [3, 4], "counts": HAND_COUNTS}, 3, 4)
    assert decoded.dtype == bool
    np.testing.assert_array_equal(decoded, HAND_MASK)


def test_decode_compressed_rle_str_and_bytes() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((17, 23)) > 0.6
    compressed = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert isinstance(compressed["counts"], bytes)
    np.testing.assert_array_equal(decode_segmentation(compressed, 17, 23), mask)
    as_text = {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")}  # as stored in JSON
    np.testing.assert_array_equal(decode_segmentation(as_text, 17, 23), mask)


def test_decode_polygon_square_covers_pixels_inside() -> None:
    # COCO polygons run along pixel borders: the square from (1, 1) to (4, 4) covers pixels 1..3.
    decoded = decode_segmentation([[1, 1, 4, 1, 4, 4, 1, 4]], 6, 6)
    expected = np.zeros((6, 6), dtype=bool)
    expected[1:4, 1:4] = True
    np.testing.assert_array_equal(decoded, expected)


def test_decode_several_polygons_are_united_and_degenerate_ones_ignored() -> None:
    decoded = decode_segmentation([[0, 0, 2, 0, 2, 2, 0, 2], [3, 3, 5, 3, 5, 5, 3, 5], [1, 1, 2, 2]], 6, 6)
    expected = np.zeros((6, 6), dtype=bool)
    expected[0:2, 0:2] = True
    expected[3:5, 3:5] = True
    np.testing.assert_array_equal(decoded, expected)
    assert not decode_segmentation([], 6, 6).any()


def test_decode_list_of_rles_is_their_union() -> None:
    a = np.zeros((5, 5), dtype=bool)
    a[0, :] = True
    b = np.zeros((5, 5), dtype=bool)
    b[:, 4] = True
    np.testing.assert_array_equal(decode_segmentation([encode_rle(a), encode_rle(b)], 5, 5), a | b)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 48)])
def test_round_trip_random_masks_and_pycocotools_agrees(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    for mask in (rng.random(shape) > 0.5, np.ones(shape, dtype=bool), np.zeros(shape, dtype=bool)):
        rle = encode_rle(mask)
        np.testing.assert_array_equal(decode_segmentation(rle, *shape), mask)
        # The reference encoder gives the same runs once compressed.
        ours = coco_mask.frPyObjects(rle, *shape)
        theirs = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert ours["counts"] == theirs["counts"]


def test_size_mismatch_and_bad_input_raise() -> None:
    with pytest.raises(ValueError, match="does not match"):
        decode_segmentation({"size": [3, 4], "counts": HAND_COUNTS}, 4, 3)
    with pytest.raises(ValueError):
        decode_segmentation({"counts": [1]}, 1, 1)
    with pytest.raises(ValueError):
        encode_rle(np.zeros((2, 2, 2), dtype=bool))


def test_mask_bbox() -> None:
    assert mask_bbox(HAND_MASK) == [0.0, 0.0, 2.0, 3.0]
    assert mask_bbox(np.zeros((3, 3), dtype=bool)) == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools on numpy 2
def test_uncompressed_rle_decodes_without_pycocotools_as_pycocotools_does() -> None:
    from pixellm_ros.muse.mask_codec import decode_uncompressed_rle

    rng = np.random.default_rng(3)
    masks = [rng.random((19, 13)) > p for p in (0.0, 0.3, 0.7, 1.01)]  # full, dense, sparse, empty
    masks.append(np.zeros((19, 13), dtype=bool))
    masks[-1][0, 0] = masks[-1][-1, -1] = True  # runs at both ends
    for mask in masks:
        rle = encode_rle(mask)
        ours = decode_uncompressed_rle(rle, 19, 13)
        theirs = coco_mask.decode(coco_mask.frPyObjects(rle, 19, 13)).astype(bool)
        np.testing.assert_array_equal(ours, mask)
        np.testing.assert_array_equal(ours, theirs)
    # several parts are united, as pycocotools' merge does
    union = decode_segmentation([encode_rle(masks[1]), encode_rle(masks[2])], 19, 13)
    np.testing.assert_array_equal(union, masks[1] | masks[2])
    with pytest.raises(ValueError, match="adding up"):
        decode_uncompressed_rle({"size": [19, 13], "counts": [5, 3]}, 19, 13)
    with pytest.raises(ValueError, match="does not match"):
        decode_segmentation({"size": [4, 4], "counts": [16]}, 19, 13)
