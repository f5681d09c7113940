"""Targets that persist, through the node over real DDS: the moving world's colour, aligned depth and
camera_info published frame by frame (one header each), the real tiny model answering, ~/tracks read
back. Ids persist across the standing instruction's answers and across a moment of hiding; a camera
that stops, a frame of another size and a frame without its depth end or pause tracks with the
reason; deactivate ends every track; a request that asks (``track``) gets its targets' ids.

The scripted model's masks at the default threshold are pixel noise (a random decoder's logits near
0): two answers' masks overlap by chance only, which no tracker can match. At output.mask_threshold
0.45 its one target is the whole frame, a mask the tracker carries and matches like any other: the
node's tracking path (ids, events, reasons, messages) is what these tests check; how well masks are
followed is the core's (test/tracking, benchmarks/bench_tracking.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from pixellm_ros.msg import SegmentationResult, SegmentedTarget, TrackedTarget, TrackEvent, Tracks
from pixellm_ros.ros.conversions import mask_from_msg, rgb_to_image_msg
from pixellm_ros.ros.qos import tracks_qos
from pixellm_ros.ros.spatial_conversions import camera_info_msg, depth_to_msg
from pixellm_ros.ros.tracking_desk import OWN_IMAGE
from pixellm_ros.spatial import PinholeIntrinsics
from pixellm_ros.world.motion import CameraPath, MovingWorld, WorldFrame
from support.dds import NodeProcess, RosClient, active_node, rgb_image_msg, wait_until

NODE = "pixellm_tracks"
HEIGHT, WIDTH = 240, 320
RATE = 15.0  # frames a second, published and stamped
MAX_GAP_S = 5.0  # tracking.max_frame_gap_s: a pause of the test's own publishing never reads as a stop
START_S = 300.0  # the node's start-up (imports and model) on a machine shared with a training run
STOP_S = 120.0  # and its orderly end
NS = 1_000_000_000


def start(client: RosClient, domain_id: int, model: Path, log: Path) -> NodeProcess:
    return NodeProcess(domain_id, NODE, {
        "model.path": str(model), "model.device": "cpu", "max_image_age_s": 0.0, "depth.enabled": True,
        "qos.image_reliability": "reliable", "qos.image_depth": 10, "output.mask_format": "cropped",
        "output.mask_threshold": 0.45,
        "tracking.max_frame_gap_s": MAX_GAP_S, "tracking.unnamed_timeout_s": 20.0, "tracking.lost_timeout_s": 5.0,
    }, log, remappings={"image_raw": f"/{NODE}/image_raw", "depth/image_raw": f"/{NODE}/depth",
                        "camera_info": f"/{NODE}/camera_info"})


@pytest.fixture(scope="module")
def node(client: RosClient, domain_id: int, chain_model_dir: Path, tmp_path_factory) -> Iterator[NodeProcess]:
    process = start(client, domain_id, chain_model_dir, tmp_path_factory.mktemp("tracks") / "n.log")
    try:
        process.wait_active(client, timeout=START_S)
    except BaseException:
        process.stop()
        raise
    with active_node(process, client) as n:
        yield n
        n.stop(STOP_S)


class TracksLog:
    """Every Tracks message of the node, in arrival order."""

    def __init__(self, client: RosClient) -> None:
        self._items = client.collect(Tracks, f"/{NODE}/tracks", tracks_qos())

    def all(self) -> list[Tracks]:
        return list(self._items)

    def events(self, kind: str, instruction: str) -> list[tuple[Tracks, TrackEvent]]:
        return [(m, e) for m in self.all() for e in m.events if e.kind == kind and e.instruction == instruction]

    def tracks_of(self, instruction: str) -> list[tuple[Tracks, TrackedTarget]]:
        return [(m, t) for m in self.all() for t in m.tracks if t.instruction == instruction]


class Camera:
    """The test's camera: the moving world's frames with their depth and camera_info, stamped
    ``RATE`` apart (one header per frame), published at about that rate."""

    def __init__(self, client: RosClient) -> None:
        self.client = client
        self.colour = client.publisher(Image, f"/{NODE}/image_raw", depth=2)
        self.depth = client.publisher(Image, f"/{NODE}/depth", depth=5)
        self.info = client.publisher(CameraInfo, f"/{NODE}/camera_info", depth=5)
        assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in (self.colour, self.depth, self.info)), 20)
        self._next_ns = 0

    def play(self, frames: Iterable[tuple[np.ndarray, np.ndarray | None, WorldFrame]]) -> list[Header]:
        """Publish (rgb, depth or None: that frame's depth is dropped, world frame) frames; returns
        their headers. Stamps go on from the last play's (or now, if later), 1 / RATE apart. Frames
        are rendered as they go (a generator): the camera never pauses for long between frames,
        which the node would take for a camera that stopped."""
        start = max(self._next_ns, self.client.node.get_clock().now().nanoseconds)
        headers = []
        began = time.monotonic()
        for k, (rgb, depth, world) in enumerate(frames):
            stamp = start + round(k * NS / RATE)
            header = Header(frame_id="world_cam")
            header.stamp.sec, header.stamp.nanosec = divmod(stamp, NS)
            cam = world.camera
            intrinsics = PinholeIntrinsics.from_matrix(cam.K, cam.width, cam.height, "plumb_bob", [0.0] * 5)
            self.info.publish(camera_info_msg(intrinsics, header))
            if depth is not None:
                self.depth.publish(depth_to_msg(depth, header))
            self.colour.publish(rgb_to_image_msg(rgb, header))
            headers.append(header)
            time.sleep(max(0.0, began + (k + 1) / RATE - time.monotonic()))
        self._next_ns = start + round(len(headers) * NS / RATE)
        return headers


@pytest.fixture(scope="module")
def camera(client: RosClient, node: NodeProcess) -> Camera:
    return Camera(client)


@pytest.fixture(scope="module")
def tracks(client: RosClient, node: NodeProcess) -> TracksLog:
    return TracksLog(client)


@pytest.fixture(scope="module")
def world() -> MovingWorld:
    return MovingWorld.sample(np.random.default_rng(3), (HEIGHT, WIDTH), 60.0)


def frames_of(world: MovingWorld, first: int, count: int) -> Iterator[tuple[np.ndarray, np.ndarray, WorldFrame]]:
    """The world's frames ``first`` .. ``first + count - 1`` with their depth, rendered one by one."""
    for index in range(first, first + count):
        frame = world.frame(index, RATE)
        yield frame.rgb, frame.depth_image("16UC1"), frame


def ask(client: RosClient, instruction: str, **kw: Any) -> Any:
    """A tracked service request about the newest frame, sent now (answered while frames go on)."""
    return client.pixellm(NODE).request(instruction, channel=kw.pop("channel", "service"), track=kw.pop("track", True),
                                        **kw)


ATTEMPTS = 3  # a tracked request asked again when its frame was skipped by a tracking thread behind under load


def tracked_result(client: RosClient, camera: Camera, world: MovingWorld, instruction: str, first: int,
                   channel: str = "service") -> tuple[SegmentationResult, int]:
    """Frames play while a tracked request is answered; (the result, the index after the last frame).

    Under load the tracking thread can fall INBOX_FRAMES behind and skip the frame a request was
    asked on; the answer then says it is not tracked (the node warns "fell ... behind"). Such a
    request is asked again on later frames (at most ATTEMPTS times, printed), as a user would."""
    index = first
    for attempt in range(1, ATTEMPTS + 1):
        camera.play(frames_of(world, index, 4))
        pending = ask(client, instruction, channel=channel)
        index += 4
        while not pending.done():
            camera.play(frames_of(world, index, 3))
            index += 3
            assert index < first + 900 * attempt, "no answer"
        result = pending.result(1.0)
        assert result.status == SegmentationResult.STATUS_OK, result.error
        skipped = [w for w in result.warnings if w.startswith("not tracked:") and "is not among the tracker's last" in w]
        if not skipped:
            return result, index
        print(f"tracked_result: attempt {attempt} of {ATTEMPTS} not tracked ({skipped[0]}): asking again")
    raise AssertionError(f"{ATTEMPTS} tracked requests in a row had their frame skipped by the tracking thread")


def test_standing_instruction_tracks_keep_their_ids_across_answers(
        client: RosClient, node: NodeProcess, camera: Camera, tracks: TracksLog, world: MovingWorld) -> None:
    instruction = "segment the red cup on the table"
    results = client.result_log(f"/{NODE}/result")
    assert all(client.set_parameters(NODE, {"standing_instruction": instruction, "standing_rate_hz": 2.0,
                                            "tracking.standing": True}))
    try:
        index, headers = 0, []
        while len([r for r in results.where(lambda m: "-standing-" in m.request_id) if r.targets]) < 3:
            headers += camera.play(frames_of(world, index, 15))
            index += 15
            assert index < 1500, f"fewer than 3 standing answers in {index} frames: {node.log_tail()}"
        headers += camera.play(frames_of(world, index, 8))
        # the tracking thread may be a few frames behind (a model answer under way): its last frame's
        # Tracks comes (the newest frame is never thinned) before the frames are counted
        assert wait_until(lambda: any(m.header == headers[-1] for m in tracks.all()), 30), node.log_tail()
    finally:
        assert all(client.set_parameters(NODE, {"standing_instruction": "", "tracking.standing": False}))
    standing = [r for r in results.where(lambda m: "-standing-" in m.request_id and m.instruction == instruction)]
    ids = {t.track_id for r in standing for t in r.targets}
    assert len(ids) == 1 and 0 not in ids, f"one target, one id across {len(standing)} answers: {ids} {[list(r.warnings) for r in standing]}"
    (track_id,) = ids
    seen = tracks.tracks_of(instruction)
    assert seen and {t.track_id for _, t in seen} == {track_id}
    first_tracked = min(i for i, h in enumerate(headers) if any(m.header == h for m, _ in seen))
    tracked_headers = {(m.header.stamp.sec, m.header.stamp.nanosec) for m, _ in seen}
    after = [(h.stamp.sec, h.stamp.nanosec) for h in headers[first_tracked:]]
    assert sum(a in tracked_headers for a in after) >= 0.8 * len(after), "~/tracks on (nearly) every frame"
    name = standing[0].targets[0].name
    for message, track in seen:
        assert message.header.frame_id == "world_cam" and message.camera == "default"
        assert (message.image_width, message.image_height) == (WIDTH, HEIGHT)
        assert track.name == name and track.mask_format == SegmentedTarget.MASK_CROPPED
        assert track.since_seen_s >= 0.0 and track.age_s >= 0.0  # seen on the asked frame, started on a later one
        if track.status == TrackedTarget.STATUS_TRACKING:
            mask = mask_from_msg(track, (WIDTH, HEIGHT))
            assert mask.sum() == track.area > 0 and (track.mask.width, track.mask.height) == (
                track.box.width, track.box.height)
    # the answers keep refreshing the one track: the model's last sight of it is never far behind
    assert max(t.since_seen_s for _, t in seen) < 5.0
    assert any(e.kind == TrackEvent.KIND_REFRESHED for m in tracks.all() for e in m.events
               if e.track_id == track_id)


def test_a_target_hidden_for_a_moment_keeps_its_id(
        client: RosClient, node: NodeProcess, camera: Camera, tracks: TracksLog, world: MovingWorld) -> None:
    instruction = "segment the red cup, even when it hides"
    still = world.replaced(path=CameraPath.still())
    result, index = tracked_result(client, camera, still, instruction, 0)
    (target,) = result.targets
    assert target.track_id > 0
    camera.play(frames_of(still, index, 8))
    def board() -> Iterator[tuple[np.ndarray, np.ndarray, WorldFrame]]:
        """A board in front of the camera for 0.8 s, of a colour far from the scene's: every pixel hidden."""
        for rgb, depth, frame in frames_of(still, index + 8, 12):
            far = np.where(rgb.reshape(-1, 3).mean(axis=0) > 127, 0, 255).astype(np.uint8)
            yield np.broadcast_to(far, rgb.shape).copy(), np.full_like(depth, 250), frame

    hidden = camera.play(board())
    camera.play(frames_of(still, index + 20, 15))
    again, _ = tracked_result(client, camera, still, instruction, index + 35)
    assert [t.track_id for t in again.targets] == [target.track_id], "the same id after the hiding"
    paused = tracks.events(TrackEvent.KIND_PAUSED, instruction)
    assert [e.track_id for _, e in paused] == [target.track_id] and paused[0][1].reason
    assert paused[0][0].header in hidden
    assert [e.track_id for _, e in tracks.events(TrackEvent.KIND_RESUMED, instruction)][:1] == [target.track_id]
    assert not tracks.events(TrackEvent.KIND_ENDED, instruction)
    coasting = [m for m, t in tracks.tracks_of(instruction) if t.status == TrackedTarget.STATUS_COASTING]
    assert coasting and all(m.header in hidden for m in coasting)
    for message, track in tracks.tracks_of(instruction):
        if track.status == TrackedTarget.STATUS_COASTING:
            assert track.area == 0 and track.box.width == 0 and not track.has_3d and track.reason


def test_a_camera_that_stops_ends_its_tracks_with_the_reason(
        client: RosClient, node: NodeProcess, camera: Camera, tracks: TracksLog, world: MovingWorld) -> None:
    instruction = "segment the red cup until the camera stops"
    result, index = tracked_result(client, camera, world, instruction, 100)
    last = camera.play(frames_of(world, index, 3))[-1]
    assert wait_until(lambda: tracks.events(TrackEvent.KIND_ENDED, instruction), MAX_GAP_S + 15)
    ((message, event),) = tracks.events(TrackEvent.KIND_ENDED, instruction)
    assert event.track_id == result.targets[0].track_id
    assert "camera stopped: no frame on" in event.reason and "tracking.max_frame_gap_s" in event.reason
    assert message.header == last and not message.tracks


def test_a_frame_of_another_size_ends_the_tracks_with_the_reason(
        client: RosClient, node: NodeProcess, camera: Camera, tracks: TracksLog, world: MovingWorld) -> None:
    instruction = "segment the red cup at any size"
    result, index = tracked_result(client, camera, world, instruction, 200)
    small = ((cv2.resize(rgb, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA),
              cv2.resize(depth, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_NEAREST), frame)
             for rgb, depth, frame in frames_of(world, index, 4))
    headers = camera.play(small)
    assert wait_until(lambda: tracks.events(TrackEvent.KIND_ENDED, instruction), 30)
    ((message, event),) = tracks.events(TrackEvent.KIND_ENDED, instruction)
    assert event.track_id == result.targets[0].track_id
    assert f"frame size changed from {WIDTH}x{HEIGHT} to {WIDTH // 2}x{HEIGHT // 2}" in event.reason
    assert message.header in headers and (message.image_width, message.image_height) == (WIDTH // 2, HEIGHT // 2)


def test_a_frame_without_its_depth_pauses_the_3d_fields_with_the_reason(
        client: RosClient, node: NodeProcess, camera: Camera, tracks: TracksLog, world: MovingWorld) -> None:
    instruction = "segment the red cup in 3D"
    result, index = tracked_result(client, camera, world, instruction, 300)
    track_id = result.targets[0].track_id
    before = camera.play(frames_of(world, index, 4))
    dropped = camera.play((rgb, None, frame) for rgb, _, frame in frames_of(world, index + 4, 3))
    back = camera.play(frames_of(world, index + 7, 5))
    assert wait_until(lambda: any(m.header in back for m, _ in tracks.events(TrackEvent.KIND_DEPTH_BACK, instruction)), 30)
    # On a loaded machine a depth frame can also come after its colour frame was tracked: that frame
    # pauses the 3D fields too, and says so with an event of its own (CI: 4 pauses, 3 of them late
    # depth), so the dropped frames' pause is looked for among the events, not counted alone.
    lost = tracks.events(TrackEvent.KIND_DEPTH_LOST, instruction)
    in_dropped = [(m, e) for m, e in lost if m.header in dropped]
    assert len(in_dropped) == 1, [(m.header, e.reason) for m, e in lost]
    assert "no depth this frame" in in_dropped[0][1].reason and "depth" in in_dropped[0][1].reason.split("(", 1)[1]
    by_header = {(m.header.stamp.sec, m.header.stamp.nanosec): t for m, t in tracks.tracks_of(instruction)}
    for header in dropped:  # 2D tracking goes on, the 3D fields pause and say why
        track = by_header.get((header.stamp.sec, header.stamp.nanosec))
        if track is None:
            continue  # a frame the tracking thread skipped (it fell behind): no message to check
        assert track.track_id == track_id and track.status == TrackedTarget.STATUS_TRACKING
        assert not track.has_3d and track.no_3d_reason.startswith("no depth this frame: ")
    for header in before[1:] + back:  # with depth: measured, or a reason of its own (too few points, ...)
        track = by_header.get((header.stamp.sec, header.stamp.nanosec))
        if track is None:
            continue
        # a frame whose depth came late says so in its track, after a depth_lost event (one a pause)
        late_depth = track.no_3d_reason.startswith("no depth this frame: ") and any(
            (m.header.stamp.sec, m.header.stamp.nanosec) <= (header.stamp.sec, header.stamp.nanosec) for m, _ in lost)
        assert track.has_3d or (track.no_3d_reason and (late_depth or not track.no_3d_reason.startswith("no depth")))
        if track.has_3d:
            assert track.num_3d_points > 0 and 0.2 < track.centroid.z < 3.0


def test_requests_get_track_ids_only_when_they_ask_and_on_camera_frames(
        client: RosClient, node: NodeProcess, camera: Camera, tracks: TracksLog, world: MovingWorld) -> None:
    by_action, index = tracked_result(client, camera, world, "segment the red cup by action", 400, channel="action")
    assert by_action.targets and all(t.track_id > 0 for t in by_action.targets)
    camera.play(frames_of(world, index, 3))
    untracked = client.pixellm(NODE).segment("segment the red cup, no tracking", channel="service")
    assert untracked.status == SegmentationResult.STATUS_OK and [t.track_id for t in untracked.targets] == [0]
    assert not any(w.startswith("not tracked") for w in untracked.warnings)
    own = client.pixellm(NODE).segment("segment the red cup in my picture", rgb_image_msg(
        world.frame(0, RATE).rgb, client.now(), "mine"), channel="service", track=True)
    assert own.status == SegmentationResult.STATUS_OK and [t.track_id for t in own.targets] == [0]
    assert OWN_IMAGE in own.warnings
    assert not tracks.tracks_of("segment the red cup, no tracking") and not tracks.tracks_of(
        "segment the red cup in my picture")


def test_deactivate_ends_every_track_and_ids_are_never_reused(
        client: RosClient, node: NodeProcess, camera: Camera, tracks: TracksLog, world: MovingWorld) -> None:
    instruction = "segment the red cup before deactivate"
    result, index = tracked_result(client, camera, world, instruction, 500)
    track_id = result.targets[0].track_id
    assert track_id > 0, result.warnings
    assert client.change_state(NODE, Transition.TRANSITION_DEACTIVATE)
    try:
        assert wait_until(lambda: tracks.events(TrackEvent.KIND_ENDED, instruction), 30)
        ((message, event),) = tracks.events(TrackEvent.KIND_ENDED, instruction)
        assert event.track_id == track_id and event.reason == "the node was deactivated" and not message.tracks
        count = len(tracks.all())
        camera.play(frames_of(world, index, 6))  # inactive: nothing is tracked
        time.sleep(0.5)
        assert len(tracks.all()) == count
    finally:
        assert client.change_state(NODE, Transition.TRANSITION_ACTIVATE)
    node.wait_active(client)
    again, _ = tracked_result(client, camera, world, instruction, index + 6)
    assert again.targets[0].track_id > track_id  # a new track: the old one is gone, its id not reused
    assert all(t.track_id != track_id for m in tracks.all()[count:] for t in m.tracks)
