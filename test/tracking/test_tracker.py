"""The tracker on the moving world (real OpenCV flow, real SciPy assignment, exact ground truth):
ids across answers, occlusions, ends with reasons, depth pauses, flat memory, 3D matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixellm_ros.spatial import AlignedDepth, DepthImage, PinholeIntrinsics
from pixellm_ros.tracking import NO_DEPTH, Detection, Tracker, TrackerOptions
from pixellm_ros.world.motion import CameraPath, MovingWorld, WorldFrame, occlusion

SIZE = (240, 320)
RATE = 30.0


def _world(seed: int = 3, seconds: float = 6.0) -> MovingWorld:
    return MovingWorld.sample(np.random.default_rng(seed), SIZE, seconds)


def _depth(frame: WorldFrame) -> AlignedDepth:
    cam = frame.camera
    intrinsics = PinholeIntrinsics.from_matrix(cam.K, cam.width, cam.height, "plumb_bob", [0.0] * 5)
    return AlignedDepth(DepthImage(frame.depth_image("16UC1")), intrinsics, image_size=(cam.width, cam.height))


def _answer(frame: WorldFrame, object_ids=None) -> tuple[list[Detection], list[int]]:
    """Every (or the listed) object in view and seen enough, as an answer would name it."""
    detections, ids = [], []
    for k, object_id in enumerate(frame.object_ids):
        if object_ids is not None and int(object_id) not in object_ids:
            continue
        if frame.visible_fraction[k] >= 0.5 and frame.masks[k].sum() >= 64:
            detections.append(Detection(frame.scene.objects[k].name, frame.masks[k], 0.9))
            ids.append(int(object_id))
    return detections, ids


def _iou(view, frame: WorldFrame, object_id: int) -> float:
    truth = frame.mask_of(object_id)
    mask = view.full_mask(*SIZE)
    return float((mask & truth).sum() / max((mask | truth).sum(), 1))


def test_ids_persist_across_answers_while_camera_and_objects_move() -> None:
    world = _world()
    tracker = Tracker()
    first: dict[int, int] = {}
    for index in range(61):
        frame = world.frame(index, RATE)
        tracker.step(frame.rgb, frame.time_s)
        if index in (0, 30, 60):
            detections, objects = _answer(frame)
            update = tracker.update(detections, frame.time_s)
            assert None not in update.track_ids
            for object_id, track_id in zip(objects, update.track_ids):
                assert first.setdefault(object_id, track_id) == track_id, f"object {object_id} changed id"
        if index == 29:  # a second after the first answer, just before the next: still on the objects
            views = {t.track_id: t for t in tracker.tracks if t.status == "tracking"}
            ious = [_iou(views[t], frame, o) for o, t in first.items() if t in views and frame.mask_of(o) is not None]
            assert len(ious) >= 3 and np.mean(ious) > 0.8
    assert len(set(first.values())) == len(first)
    assert sorted(first.values()) == list(range(1, len(first) + 1))  # ids count up from 1


def _occluded_world() -> tuple[MovingWorld, int, int]:
    world = _world(seed=5).replaced(pushes=(), path=CameraPath.still())
    radii = [o.radius_m for o in world.objects]
    big, small = int(np.argmax(radii)), int(np.argmin(radii))
    pushes = occlusion(world.objects, big, small, world.objects[big].xy_m, world.objects[small].xy_m,
                       start_s=0.1, approach_s=0.8, hide_s=0.6, leave_s=0.6, away_m=(0.0, -0.25))
    return world.replaced(pushes=pushes), big, small


def test_an_object_hidden_for_a_moment_and_back_keeps_its_id() -> None:
    world, big, small = _occluded_world()
    tracker = Tracker()
    frame = world.frame(0, RATE)
    tracker.step(frame.rgb, frame.time_s)
    detections, objects = _answer(frame, {big, small})
    ids = dict(zip(objects, tracker.update(detections, frame.time_s).track_ids))
    kinds: list[tuple[str, int | None]] = []
    for index in range(1, 80):
        frame = world.frame(index, RATE)
        view = tracker.step(frame.rgb, frame.time_s)
        kinds += [(e.kind, e.track_id) for e in view.events]
    assert ("paused", ids[small]) in kinds and ("resumed", ids[small]) in kinds
    assert not any(kind == "ended" for kind, _ in kinds)
    back = {t.track_id: t for t in view.tracks}[ids[small]]
    assert back.status == "tracking" and _iou(back, frame, small) > 0.7
    # The next answer names it again: the same track.
    detections, objects = _answer(frame, {small})
    assert tracker.update(detections, frame.time_s).track_ids == (ids[small],)


def test_a_track_no_answer_names_ends_after_the_configured_time() -> None:
    world = _world().replaced(pushes=(), path=CameraPath.still())
    tracker = Tracker(TrackerOptions(unnamed_timeout_s=1.0))
    frame = world.frame(0, RATE)
    tracker.step(frame.rgb, frame.time_s)
    detections, objects = _answer(frame)
    keep, drop = tracker.update(detections[:2], frame.time_s).track_ids
    ended_at = None
    for index in range(1, 50):
        frame = world.frame(index, RATE)
        view = tracker.step(frame.rgb, frame.time_s)
        if index % 9 == 0:  # answers keep naming only the first object
            assert tracker.update(detections[:1], frame.time_s).track_ids == (keep,)
        for event in view.events:
            if event.kind == "ended":
                assert event.track_id == drop and "not named by an answer" in event.reason
                ended_at = frame.time_s
    assert ended_at is not None and 1.0 < ended_at <= 1.0 + 1.5 / RATE
    assert [t.track_id for t in tracker.tracks] == [keep]


def test_frame_size_change_camera_stop_and_stale_answers_end_or_refuse_with_a_reason() -> None:
    world = _world()
    tracker = Tracker(TrackerOptions(max_frame_gap_s=0.3))
    frame = world.frame(0, RATE)
    tracker.step(frame.rgb, 1.0)
    ids = tracker.update(_answer(frame)[0], 1.0).track_ids
    small = frame.rgb[::2, ::2].copy()
    view = tracker.step(small, 1.033)
    assert {e.track_id for e in view.events if e.kind == "ended"} == set(ids)
    assert all("frame size changed from 320x240 to 160x120" in e.reason for e in view.events)
    assert view.tracks == ()
    # An answer about a frame of the old size is not in the history any more.
    update = tracker.update(_answer(frame)[0], 1.0)
    assert set(update.track_ids) == {None} and "not among" in update.events[0].reason

    frame = world.frame(1, RATE)
    tracker.step(frame.rgb, 2.0)
    ids = tracker.update(_answer(frame)[0], 2.0).track_ids
    view = tracker.step(world.frame(2, RATE).rgb, 2.5)  # 0.5 s without a frame: the camera stopped
    assert {e.track_id for e in view.events if e.kind == "ended"} == set(ids)
    assert all(e.reason.startswith("camera stopped: no frame for 0.50 s") for e in view.events)
    with pytest.raises(ValueError, match="not after the previous"):
        tracker.step(frame.rgb, 2.5)
    # A mask of another size than the frame is refused on its own.
    update = tracker.update([Detection("x", np.ones((10, 10), bool))], 2.5)
    assert update.track_ids == (None,) and "is not the frame's 320x240" in update.events[0].reason


def test_missing_depth_pauses_the_3d_fields_with_a_reason_and_they_come_back() -> None:
    world = _world()
    tracker = Tracker()
    frame = world.frame(0, RATE)
    tracker.step(frame.rgb, frame.time_s, _depth(frame))
    tracker.update(_answer(frame)[0], frame.time_s)
    assert all(t.target_3d is not None and t.target_3d.ok for t in tracker.tracks)
    truth = {int(o): frame.scene.geometry.object_centroid(k) for k, o in enumerate(frame.object_ids)}
    kinds: list[list[str]] = []
    reasons: list[str] = []
    for index in range(1, 10):
        frame = world.frame(index, RATE)
        view = tracker.step(frame.rgb, frame.time_s, None if index in (4, 5) else _depth(frame))
        kinds.append([e.kind for e in view.events])
        reasons += [e.reason for e in view.events]
        if index in (4, 5):
            assert all(t.target_3d is None and t.no_3d_reason == NO_DEPTH for t in view.tracks)
            assert all(t.status == "tracking" and t.mask is not None for t in view.tracks)  # 2D goes on
        else:
            assert all(t.target_3d is not None and t.target_3d.ok and t.no_3d_reason == "" for t in view.tracks)
    assert kinds[3] == ["depth_lost"] and kinds[4] == [] and kinds[5] == ["depth_back"]
    assert reasons[0] == f"{NO_DEPTH}: the tracks' 3D fields pause" and "resume" in reasons[1]
    # The 3D fields follow the objects: each track's centroid is near some object's true one.
    for t in view.tracks:
        assert min(np.linalg.norm(t.target_3d.centroid - c) for c in truth.values()) < 0.05


def test_state_stays_flat_over_many_frames() -> None:
    world = _world(seconds=20.0).replaced(path=CameraPath.still(), pushes=())
    tracker = Tracker(TrackerOptions(history_frames=20))
    sizes = []
    for index in range(150):
        frame = world.frame(index % 2, RATE)  # a still world: two frames differing only by noise
        tracker.step(frame.rgb, index / RATE)
        if index % 30 == 0:
            tracker.update(_answer(frame)[0], index / RATE)
        if index >= 30:
            sizes.append(tracker.state_bytes())
    assert len({t.track_id for t in tracker.tracks}) == len(_answer(frame)[0])
    assert max(sizes) <= min(sizes) * 1.02  # no per-frame history growth
    assert len(tracker._history) == 20


def test_with_depth_a_target_matches_its_track_by_3d_distance_where_the_masks_barely_overlap() -> None:
    world = _world().replaced(pushes=(), path=CameraPath.still())
    frame = world.frame(0, RATE)
    detections, objects = _answer(frame)
    k = int(np.argmin([d.mask.sum() for d in detections]))  # a small object: a few cm across
    mask = detections[k].mask
    ys, xs = np.nonzero(mask)
    shift = int(0.8 * (xs.max() - xs.min()))  # the same object, its mask drawn too far to the side
    shifted = np.roll(mask, shift, axis=1)
    assert (mask & shifted).sum() / (mask | shifted).sum() < TrackerOptions().min_iou
    depth = _depth(frame)
    apart = np.linalg.norm(depth.target(mask).centroid - depth.target(shifted).centroid)
    assert apart < TrackerOptions().max_distance_m
    for with_depth in (True, False):
        tracker = Tracker()
        tracker.step(frame.rgb, 0.0, _depth(frame) if with_depth else None)
        (first,) = tracker.update([detections[k]], 0.0).track_ids
        (second,) = tracker.update([Detection("same", shifted)], 0.0).track_ids
        assert (second == first) is with_depth, f"depth {with_depth}: {first} -> {second}"
