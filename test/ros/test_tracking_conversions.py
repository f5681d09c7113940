"""The tracks' messages without DDS: a real tracker on the moving world (real flow, real depth) and
its views as TrackedTarget / Tracks messages: the masks in both formats as SegmentedTarget's, the 3D
fields as the spatial core computed them, a coasting track with no mask and the reason, events."""

from __future__ import annotations

import numpy as np
import pytest
from std_msgs.msg import Header

from pixellm_ros.msg import SegmentedTarget, TrackedTarget, TrackEvent
from pixellm_ros.ros.conversions import mask_from_msg
from pixellm_ros.ros.tracking_conversions import TrackedFrameParts, event_msg, tracked_target_msg, tracks_msg
from pixellm_ros.spatial import AlignedDepth, DepthImage, PinholeIntrinsics
from pixellm_ros.tracking import NO_DEPTH, Detection, Tracker
from pixellm_ros.tracking import TrackEvent as CoreEvent
from pixellm_ros.world.motion import MovingWorld, WorldFrame

SIZE = (240, 320)


def _depth(frame: WorldFrame) -> AlignedDepth:
    cam = frame.camera
    intrinsics = PinholeIntrinsics.from_matrix(cam.K, cam.width, cam.height, "plumb_bob", [0.0] * 5)
    return AlignedDepth(DepthImage(frame.depth_image("16UC1")), intrinsics, image_size=(cam.width, cam.height))


@pytest.fixture(scope="module")
def tracked() -> tuple[Tracker, WorldFrame]:
    world = MovingWorld.sample(np.random.default_rng(5), SIZE, 2.0)
    tracker = Tracker()
    frame = world.frame(0)
    tracker.step(frame.rgb, frame.time_s, _depth(frame))
    detections = [Detection(frame.scene.objects[k].name, frame.masks[k], 0.8)
                  for k in range(len(frame.object_ids)) if frame.masks[k].sum() >= 200]
    assert len(tracker.update(detections, frame.time_s).track_ids) >= 2
    frame = world.frame(1)
    tracker.step(frame.rgb, frame.time_s, _depth(frame))
    return tracker, frame


@pytest.mark.parametrize("mask_format", [SegmentedTarget.MASK_FULL, SegmentedTarget.MASK_CROPPED])
def test_a_track_is_a_segmented_target_with_its_id(tracked, mask_format: int) -> None:
    tracker, frame = tracked
    header = Header(frame_id="cam")
    header.stamp.sec = 7
    for view in tracker.tracks:
        msg = tracked_target_msg(view, "find the cups", header, (SIZE[1], SIZE[0]), mask_format, 0.25)
        assert (msg.track_id, msg.instruction, msg.name) == (view.track_id, "find the cups", view.name)
        assert msg.status == TrackedTarget.STATUS_TRACKING and msg.since_seen_s == pytest.approx(0.25)
        np.testing.assert_array_equal(mask_from_msg(msg, (SIZE[1], SIZE[0])), view.full_mask(*SIZE))
        assert msg.mask.header == header and msg.area == view.area and msg.mask_format == mask_format
        x0, y0, x1, y1 = view.box
        assert (msg.box.x_offset, msg.box.y_offset, msg.box.width, msg.box.height) == (x0, y0, x1 - x0, y1 - y0)
        expected_size = (SIZE[1], SIZE[0]) if mask_format == SegmentedTarget.MASK_FULL else (x1 - x0, y1 - y0)
        assert (msg.mask.width, msg.mask.height) == expected_size
        t = view.target_3d
        assert msg.has_3d == t.ok and msg.no_3d_reason == t.reason
        if t.ok:
            np.testing.assert_allclose([msg.centroid.x, msg.centroid.y, msg.centroid.z], t.centroid)
            np.testing.assert_allclose([msg.box_size.x, msg.box_size.y, msg.box_size.z], t.box.size)
            assert msg.num_3d_points == t.num_points


def test_a_coasting_track_has_no_mask_and_says_why(tracked) -> None:
    tracker, frame = tracked
    far = np.where(frame.rgb.reshape(-1, 3).mean(axis=0) > 127, 0, 255).astype(np.uint8)
    blank = np.broadcast_to(far, frame.rgb.shape).copy()  # everything hidden by a colour far from the scene's
    view = tracker.step(blank, frame.time_s + 0.04).tracks[0]
    assert view.status == "coasting"
    for mask_format, size in ((SegmentedTarget.MASK_CROPPED, (0, 0)), (SegmentedTarget.MASK_FULL, (SIZE[1], SIZE[0]))):
        msg = tracked_target_msg(view, "x", Header(), (SIZE[1], SIZE[0]), mask_format, 0.0)
        assert msg.status == TrackedTarget.STATUS_COASTING and msg.reason == view.reason != ""
        assert (msg.box.width, msg.box.height, msg.area, msg.score) == (0, 0, 0, 0.0)
        assert (msg.mask.width, msg.mask.height) == size and not any(msg.mask.data)
        assert not msg.has_3d and msg.no_3d_reason == view.reason


def test_a_frame_without_depth_says_why_in_the_tracks_and_the_event() -> None:
    world = MovingWorld.sample(np.random.default_rng(5), SIZE, 2.0)
    tracker = Tracker()
    frame = world.frame(0)
    tracker.step(frame.rgb, frame.time_s, _depth(frame))
    tracker.update([Detection("ball", frame.masks[0], 0.9)], frame.time_s)
    frame = world.frame(1)
    step = tracker.step(frame.rgb, frame.time_s, None)
    why = "stale depth: the newest depth image is 0.066 s older"
    (lost,) = [event_msg(e, "x", why) for e in step.events if e.kind == "depth_lost"]
    assert lost.kind == TrackEvent.KIND_DEPTH_LOST and lost.track_id == 0 and lost.reason.endswith(f"({why})")
    parts = TrackedFrameParts([("x", view) for view in step.tracks], [lost])
    msg = tracks_msg("default", Header(), (SIZE[1], SIZE[0]), None, parts, SegmentedTarget.MASK_CROPPED,
                     {1: frame.time_s - 0.5}, frame.time_s, why, 1.5, 2.0)
    assert msg.tracks[0].no_3d_reason == f"{NO_DEPTH}: {why}" and not msg.tracks[0].has_3d
    assert msg.tracks[0].since_seen_s == pytest.approx(0.5) and msg.events == [lost]
    assert (msg.step_ms, msg.total_ms, msg.depth_header) == (1.5, 2.0, Header())
    assert event_msg(CoreEvent("ended", 4, "why"), "x").track_id == 4
