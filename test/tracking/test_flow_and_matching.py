"""The tracker's parts: DIS flow on a region read back as a similarity motion, and the Hungarian
assignment of answer targets to tracks by IoU and 3D distance."""

from __future__ import annotations

import cv2
import numpy as np

from pixellm_ros.tracking.flow import RoiFlow, compose, fit_similarity
from pixellm_ros.tracking.matching import FORBIDDEN, Candidate, assign, match_cost, mask_iou


def _textured(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, (height // 8, width // 8)).astype(np.float32)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def test_the_flow_of_a_region_gives_back_the_motion_that_moved_it() -> None:
    before = _textured()
    truth = cv2.getRotationMatrix2D((160.0, 120.0), 3.0, 1.02)  # turn 3 degrees, grow 2%
    truth[:, 2] += (2.5, -1.5)
    after = cv2.warpAffine(before, truth, (320, 240), borderMode=cv2.BORDER_REFLECT)
    flow = RoiFlow("fast", 0.5)
    field = flow.compute(flow.shrink(before), flow.shrink(after), (100, 60, 220, 180))
    assert field.roi[0] <= 100 and field.roi[2] >= 220
    ys, xs = np.mgrid[80:160:6, 120:200:6]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    moved, inside = field.displacement(points)
    assert inside.all()
    motion = fit_similarity(points, moved)
    assert motion is not None
    expected = points @ truth[:, :2].T + truth[:, 2]
    got = points @ motion[:, :2].T + motion[:, 2]
    assert np.abs(got - expected).max() < 0.6  # sub-pixel, though the flow ran at half resolution
    # Points outside the region read no motion and say so.
    _, inside = field.displacement(np.array([[10.0, 10.0]]))
    assert not inside[0]


def test_compose_applies_the_later_motion_after_the_earlier() -> None:
    first = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -2.0]])
    second = cv2.getRotationMatrix2D((0.0, 0.0), 90.0, 2.0)
    point = np.array([3.0, 4.0, 1.0])
    np.testing.assert_allclose(compose(second, first) @ point, second @ np.append(first @ point, 1.0))


def _disk(cx: int, cy: int, r: int, size=(100, 100)) -> np.ndarray:
    ys, xs = np.mgrid[: size[0], : size[1]]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def _crop(mask: np.ndarray, centroid=None) -> Candidate:
    ys, xs = np.nonzero(mask)
    return Candidate(mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], (int(xs.min()), int(ys.min())), centroid)


def test_iou_of_crops_equals_the_iou_of_the_full_masks() -> None:
    a, b = _disk(40, 40, 15), _disk(50, 45, 12)
    assert abs(mask_iou(_crop(a), _crop(b)) - (a & b).sum() / (a | b).sum()) < 1e-12
    assert mask_iou(_crop(a), Candidate(None, (0, 0), None)) == 0.0


def test_the_assignment_takes_the_best_pairs_and_leaves_the_rest_unmatched() -> None:
    tracks = [_crop(_disk(30, 30, 10)), _crop(_disk(70, 70, 10))]
    targets = [_crop(_disk(72, 70, 10)), _crop(_disk(31, 30, 10)), _crop(_disk(50, 10, 5))]
    cost = match_cost(targets, tracks, min_iou=0.2, max_distance_m=0.08)
    assert cost[2].min() == FORBIDDEN  # overlaps nothing: a new track
    assert sorted(assign(cost)) == [(0, 1), (1, 0)]
    # With 3D on both sides the distance decides: near in 3D, no overlap at all -> allowed;
    # overlapping but far in 3D (one object in front of another) -> forbidden.
    near = match_cost([_crop(_disk(50, 50, 8), np.array([0.0, 0.0, 0.80]))],
                      [_crop(_disk(20, 20, 8), np.array([0.03, 0.0, 0.80]))], 0.2, 0.08)
    assert 0.5 < near[0, 0] < 1.0
    far = match_cost([_crop(_disk(50, 50, 8), np.array([0.0, 0.0, 0.80]))],
                     [_crop(_disk(50, 50, 8), np.array([0.0, 0.0, 0.95]))], 0.2, 0.08)
    assert far[0, 0] == FORBIDDEN
