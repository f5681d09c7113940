"""The node's tracking: the answers' targets followed on every camera frame (``pixellm_ros.tracking``),
with ids that stay across answers, published on ``~/tracks`` (README, "Targets that persist").

One ``Tracker`` per (camera, instruction): the standing instruction's (``tracking.standing``) and
that of every request that asks with ``track``; the same instruction on the same camera shares its
tracker, so its answers keep their targets' ids. Ids come from one node-wide counter: unique across
cameras and instructions, never reused. A tracker lives while it has tracks or a request of its
own is under way; deactivate ends every track.

The node's hooks (its only contact with this module):

    create(settings, cameras, debug_pub, markers_pub)  at configure: ~/tracks and the tracking thread
    destroy()                                          at cleanup / shutdown: the thread joined, ~/tracks removed
    frame_hook(camera, put) -> callback                the camera subscription's callback (queues the frame)
    on_depth(camera)                                   a depth frame came: a colour frame waiting for it may go
    prepare(request)                                   the worker, before it binds a tracked request's frame
    bound(request, image)                              the worker, once it has: that frame is kept for the answer
    on_result(request, image, outcome) -> tracked      the worker, before the answer: ids into the result
    end_all(reason)                                    deactivate / shutdown: every track ends with the reason

Threads, on purpose (the tracker is not thread-safe; each has a lock, held for one step or update):

    the camera callback (node's "image" group)  ``frame_hook``: the frame into the camera's inbox, the
                                                tracking thread woken; no conversion, no step
    the tracking thread ("pixellm-tracking",    ``_drain`` and ``_watch``: convert, depth, every tracker's
    this desk's own, like the model's worker)   step, ~/tracks, the debug image and markers; every
                                                ``WATCH_PERIOD_S`` it also looks for stopped cameras. It
                                                holds no executor thread: the executor's threads stay free
                                                for the cameras, instructions, services and lifecycle, and
                                                neither the model's worker nor a service callback ever runs a
                                                step or waits for the queue of frames.
    the worker thread                           ``prepare`` (a new tracker is seeded with the newest frame)
                                                and ``on_result`` (the answer's update: waits at most for
                                                the step of its own frame, then one step's hold of the lock)

(A guard condition and a timer in a callback group of the node's executor came first: once they were
destroyed at shutdown, the process hung at exit in an rclpy handle's destructor, seen under gdb.)

Never silent: tracks end or pause with a reason in their event: the tracker's (a frame of another
size, a gap in the stamps, a mask lost for too long, no answer naming it), the node's (the camera
stopped: no frame for ``tracking.max_frame_gap_s``; the node deactivated); a frame whose depth did
not come pauses the 3D fields with the depth lookup's reason; an answer's target that cannot be
tracked keeps track_id 0 and its result says why.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from pixellm_ros.msg import SegmentationResult as ResultMsg
from pixellm_ros.msg import TrackEvent, Tracks
from pixellm_ros.spatial import AlignedDepth, Target3D
from pixellm_ros.tracking import Detection, Tracker

from . import qos
from .conversions import ImageConversionError, compressed_msg_to_rgb, image_msg_to_rgb, rgb_to_image_msg
from .params import tracker_options
from .requests import CameraInput, SegmentRequest
from .spatial_conversions import DEPTH_ERRORS, aligned_depth, stamp_ns, targets_marker_array
from .tracking_conversions import TrackedFrameParts, drawn_tracks, event_msg, tracks_msg

NS = 1_000_000_000
INBOX_FRAMES = 8  # frames waiting for the tracking thread; when it falls further behind they are thinned (_thin)
DEPTH_WAIT_S = 0.1  # a colour frame waits this long for its depth frame while no later depth frame has come
WATCH_PERIOD_S = 0.1  # how often the tracking thread looks for stopped cameras and frames done waiting
JOIN_TIMEOUT_S = 10.0  # destroy waits this long for the tracking thread's step under way
ANSWER_FRAME_WAIT_S = 1.0  # an answer waits at most this long for its frame's step before its update
OWN_IMAGE = "not tracked: tracking follows camera frames, and this request came with its own image"


@dataclass
class _Frame:
    """A camera frame as it arrived; converted (rgb, depth) once, when a tracker first needs it."""

    msg: Any
    stamp_ns: int
    arrival_ns: int  # node clock
    rgb: np.ndarray | None = None
    depth: AlignedDepth | None = None
    depth_header: Header | None = None
    depth_reason: str = ""  # why there is no depth ("" with depth, or when depth is off)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns / NS  # the one conversion: step and update must see the same float

    @property
    def size(self) -> tuple[int, int]:
        assert self.rgb is not None
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


class _Tracked:
    """One tracker (one instruction on one camera) and what the node keeps beside it."""

    def __init__(self, instruction: str, tracker: Tracker) -> None:
        self.instruction = instruction
        self.tracker = tracker
        self.lock = threading.Lock()  # around every call of the tracker
        self.pending = 0  # tracked requests prepared on it and not answered yet (desk lock)
        self.stepped_ns = -1  # the newest frame it has stepped
        self.events: list[TrackEvent] = []  # of answers, published with the camera's next message
        self.seen_s: dict[int, float] = {}  # track id -> stamp of the frame the model last saw it on
        self.closed = ""  # why every track was ended (end_all): later answers are not tracked


class _CameraTracks:
    """One camera's frames on their way to its trackers."""

    def __init__(self, camera: CameraInput) -> None:
        self.name = camera.name
        self.topic = camera.topic
        self.depth = camera.depth  # its DepthCache or None
        self.inbox: deque[_Frame] = deque()
        self.last: _Frame | None = None  # the newest frame taken for stepping (nothing tracked: the newest)
        self.trackers: dict[str, _Tracked] = {}
        self.warned: set[str] = set()


class TrackingDesk:
    """Trackers per camera and instruction, their thread and their messages (module docstring)."""

    def __init__(self, node: Any, settings: Callable[[], Any]) -> None:
        self._node = node
        self._settings = settings  # the node's current NodeSettings (None while unconfigured)
        self._logger = node.get_logger()
        self._ids = itertools.count(1)  # every tracker's: one namespace of ids for the node's life
        self._lock = threading.Condition()  # cameras, inboxes, trackers, pending counts
        self._cameras: dict[str, _CameraTracks] = {}
        self._prepared: dict[int, tuple[_CameraTracks, _Tracked]] = {}  # id(request) -> its tracker
        self._bound: dict[int, int] = {}  # id(request) of a prepared one -> the stamp of the frame it was asked on
        self._tracks_pub: Any = None
        self._debug_pub: Any = None
        self._markers_pub: Any = None
        self._thread: threading.Thread | None = None
        self._woken = False  # frames or depth came since the thread last looked (desk lock)
        self._stopping = False

    # ------------------------------------------------------------------ entities (configure / cleanup)
    def create(self, settings: Any, cameras: Mapping[str, CameraInput], debug_pub: Any, markers_pub: Any) -> None:
        """~/tracks and the tracking thread; the cameras to follow."""
        self._tracks_pub = self._node.create_publisher(Tracks, settings.tracks_topic, qos.tracks_qos())
        self._debug_pub, self._markers_pub = debug_pub, markers_pub
        with self._lock:
            self._cameras = {name: _CameraTracks(camera) for name, camera in cameras.items()}
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pixellm-tracking", daemon=True)
        self._thread.start()

    def destroy(self) -> None:
        """Stop the tracking thread and remove ~/tracks (after ``end_all``: nothing is left to say)."""
        with self._lock:
            self._stopping = True
            self._cameras, self._prepared, self._bound = {}, {}, {}
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            self._thread = None
        if self._tracks_pub is not None:
            self._node.destroy_publisher(self._tracks_pub)
        self._tracks_pub = self._debug_pub = self._markers_pub = None

    # ------------------------------------------------------------------ camera callbacks
    def frame_hook(self, camera: str, put: Callable[[Any], None]) -> Callable[[Any], None]:
        """The camera subscription's callback: the frame to tracking first, then ``put`` (the newest frame
        for requests), so a request never binds a frame its tracker will not see."""
        def on_frame(msg: Any) -> None:
            self._on_frame(camera, msg)
            put(msg)
        return on_frame

    def _on_frame(self, camera: str, msg: Any) -> None:
        frame = _Frame(msg, stamp_ns(msg.header.stamp), self._now_ns())
        with self._lock:
            state = self._cameras.get(camera)
            if state is None:
                return
            if not state.trackers:  # nothing tracked: kept only to seed a tracker a request may make
                state.inbox.clear()  # older frames would follow the seed: nobody needs them now
                state.last = frame
                return
            if len(state.inbox) >= INBOX_FRAMES:
                _thin(state, {stamp for key, stamp in self._bound.items() if self._prepared[key][0] is state})
                self._warn(state, "behind", f"tracking on camera '{camera}' fell {INBOX_FRAMES} frames behind: the "
                           "waiting frames are thinned (never the frame a tracked request under way was asked on)")
            state.inbox.append(frame)
            self._woken = True
            self._lock.notify_all()

    def on_depth(self, camera: str) -> None:
        """A depth frame arrived: a colour frame of this camera waiting for it may be stepped now."""
        with self._lock:
            state = self._cameras.get(camera)
            if state is not None and state.inbox:
                self._woken = True
                self._lock.notify_all()

    # ------------------------------------------------------------------ the worker's hooks
    def wants(self, request: SegmentRequest) -> bool:
        """Whether the request's targets are to be tracked: it asked (``track``), or it is the standing
        instruction's and ``tracking.standing`` is on."""
        settings = self._settings()
        return request.track or (request.channel == "standing" and settings is not None and settings.tracking_standing)

    def prepare(self, request: SegmentRequest) -> None:
        """Before the worker binds a tracked request's frame: its tracker exists, and a new one has
        stepped the camera's newest frame (so the frame the request binds, that one or a later one,
        is in its history when the answer comes)."""
        settings = self._settings()
        if request.image is not None or settings is None or not self.wants(request):
            return
        seed = None
        with self._lock:
            state = self._cameras.get(request.camera)
            if state is None:
                return
            tracked = state.trackers.get(request.instruction)
            new = tracked is None
            if tracked is None:
                tracked = state.trackers[request.instruction] = _Tracked(
                    request.instruction, Tracker(tracker_options(settings), self._ids))
                tracked.lock.acquire()  # seeded before the tracking thread can step it with a newer frame
                seed = state.last
            tracked.pending += 1
            self._prepared[id(request)] = (state, tracked)
        if not new:
            return
        try:
            if seed is not None and self._materialise(state, seed, settings):
                tracked.tracker.step(seed.rgb, seed.stamp_s, seed.depth)
                tracked.stepped_ns = seed.stamp_ns
        except ValueError as error:  # a frame the tracker refuses: the answer will say it is not tracked
            self._warn(state, "seed", f"tracking on camera '{state.name}': {error}")
        finally:
            tracked.lock.release()
        with self._lock:
            self._lock.notify_all()

    def bound(self, request: SegmentRequest, image: Any) -> None:
        """The worker bound a prepared request's frame (``image``, the camera's message): until its answer
        comes, that frame is not skipped when tracking falls behind (its tracker steps it, and the answer's
        update finds it in the tracker's history)."""
        with self._lock:
            if id(request) in self._prepared:
                self._bound[id(request)] = stamp_ns(image.header.stamp)

    def on_result(self, request: SegmentRequest, image: Any, outcome: Any) -> bool:
        """After the worker ran a request (``outcome``: its RunOutcome, or the refusal), before its
        result goes out: the answer's targets into the request's tracker and each target's
        ``track_id`` into the result (0 and a warning when one cannot be tracked). True when the
        result is tracked (its debug image and markers then come from the tracks, keyed by id)."""
        with self._lock:
            prepared = self._prepared.pop(id(request), None)
            self._bound.pop(id(request), None)
        msg = getattr(outcome, "msg", None)
        ok = msg is not None and msg.status == ResultMsg.STATUS_OK
        if prepared is None:
            if ok and request.image is not None and self.wants(request):
                msg.warnings.append(OWN_IMAGE)
            return False
        state, tracked = prepared
        try:
            if not ok:
                return False
            stamp = stamp_ns(image.header.stamp)
            with self._lock:  # the frame it was asked on may still wait for the tracking thread
                self._lock.wait_for(lambda: tracked.stepped_ns >= stamp or bool(tracked.closed), ANSWER_FRAME_WAIT_S)
            detections = [Detection(t.name, t.mask, float(t.score), tuple(int(v) for v in t.box))
                          for t in outcome.result.targets]
            with tracked.lock:
                if tracked.closed:
                    msg.warnings.append(f"not tracked: {tracked.closed}")
                    return False
                update = tracked.tracker.update(detections, stamp / NS)
                tracked.events += [event_msg(event, tracked.instruction) for event in update.events]
                for track_id in update.track_ids:
                    if track_id is not None:
                        tracked.seen_s[track_id] = stamp / NS
            for target, track_id in zip(msg.targets, update.track_ids):
                target.track_id = track_id or 0
            msg.warnings += [f"not tracked: {event.reason}" for event in update.events if event.kind == "refused"]
            return True
        finally:
            with self._lock:
                tracked.pending -= 1

    # ------------------------------------------------------------------ the tracking thread
    def _run(self) -> None:
        """The tracking thread: woken by frames and depth, and every WATCH_PERIOD_S, until destroy."""
        while True:
            with self._lock:
                if not self._woken and not self._stopping:
                    self._lock.wait(WATCH_PERIOD_S)
                if self._stopping:
                    return
                self._woken = False
            try:
                self._drain()
                self._watch()
            except Exception as error:  # noqa: BLE001 - the thread outlives a bug; said once per kind
                self._logger.error(f"tracking: {type(error).__name__}: {error}", throttle_duration_sec=10.0)

    def _drain(self) -> None:
        """Every waiting frame of every camera through its trackers."""
        with self._lock:
            states = list(self._cameras.values())
        for state in states:
            while True:
                taken = self._next_frame(state)
                if taken is None:
                    break
                frame, trackers = taken
                if trackers:
                    try:
                        self._track(state, frame, trackers)
                    except Exception as error:  # noqa: BLE001 - a tracking bug must not stop the camera's frames
                        self._warn(state, "error", f"tracking on camera '{state.name}' failed on a frame: "
                                   f"{type(error).__name__}: {error}")

    def _next_frame(self, state: _CameraTracks) -> tuple[_Frame, list[_Tracked]] | None:
        """The camera's next frame to step and the trackers to step it in (None: none ready)."""
        while True:
            jumped: list[_Tracked] = []
            with self._lock:
                if not state.inbox:
                    return None
                frame = state.inbox[0]
                if state.depth is not None:
                    lookup = state.depth.match(frame.stamp_ns)
                    if (not lookup.ok and lookup.may_arrive_later
                            and self._now_ns() - frame.arrival_ns < DEPTH_WAIT_S * NS):
                        return None  # its depth may still come: on_depth, the next frame or _watch brings it back
                state.inbox.popleft()
                last = state.last
                if last is not None and frame.stamp_ns == last.stamp_ns:
                    self._warn(state, "stamps", f"camera '{state.name}' sent a frame with the stamp of the one "
                               "before: tracking skips repeated frames (a camera that does not stamp its frames "
                               "cannot be tracked)")
                    continue
                if last is not None and frame.stamp_ns < last.stamp_ns:  # a restarted camera, a replayed bag
                    jumped, state.trackers = list(state.trackers.values()), {}
                state.last = frame
                if not jumped:
                    return frame, list(state.trackers.values())
            self._end(state, jumped, f"the camera's stamps jumped back by {(last.stamp_ns - frame.stamp_ns) / NS:.3f} s"
                      " (a restarted camera or a replayed recording)", drop=True)

    def _track(self, state: _CameraTracks, frame: _Frame, trackers: list[_Tracked]) -> None:
        """Step every tracker of the camera with ``frame``; publish its Tracks (and the pictures)."""
        started = time.perf_counter()
        settings = self._settings()
        if settings is None or not self._materialise(state, frame, settings):
            return
        parts = TrackedFrameParts()
        seen: dict[int, float] = {}
        step_s = 0.0  # thread CPU time: what the steps cost, whatever else the machine runs
        for tracked in trackers:
            with tracked.lock:
                if tracked.closed or frame.stamp_ns <= tracked.stepped_ns:
                    continue
                step_started = time.thread_time()
                try:
                    result = tracked.tracker.step(frame.rgb, frame.stamp_s, frame.depth)
                except ValueError as error:
                    self._warn(state, "step", f"tracking on camera '{state.name}': {error}")
                    continue
                step_s += time.thread_time() - step_started
                tracked.stepped_ns = frame.stamp_ns
                parts.events += tracked.events
                parts.events += [event_msg(e, tracked.instruction, frame.depth_reason) for e in result.events]
                tracked.events = []
                for event in result.events:
                    if event.kind == "ended":
                        tracked.seen_s.pop(event.track_id, None)
                parts.views += [(tracked.instruction, view) for view in result.tracks]
                seen.update(tracked.seen_s)
        with self._lock:
            for tracked in trackers:  # a tracker with no track and no request under way is done
                if (state.trackers.get(tracked.instruction) is tracked and tracked.pending == 0
                        and not tracked.tracker.tracks and not tracked.events):
                    del state.trackers[tracked.instruction]
            self._lock.notify_all()
        header = frame.msg.header
        msg = tracks_msg(state.name, header, frame.size, frame.depth_header, parts, settings.mask_format, seen,
                         frame.stamp_s, frame.depth_reason, step_s * 1e3)
        msg.total_ms = (time.perf_counter() - started) * 1e3
        self._publish(msg)
        self._publish_pictures(settings, frame, header, [view for _, view in parts.views])

    def _materialise(self, state: _CameraTracks, frame: _Frame, settings: Any) -> bool:
        """The frame's RGB and depth (once; False when the image cannot be converted, which is said)."""
        with frame.lock:
            if frame.rgb is not None:
                return True
            try:
                if isinstance(frame.msg, CompressedImage):
                    rgb = compressed_msg_to_rgb(frame.msg, settings.max_image_pixels, settings.max_compressed_bytes)
                else:
                    rgb = image_msg_to_rgb(frame.msg, settings.max_image_pixels)
            except ImageConversionError as error:
                self._warn(state, "image", f"tracking on camera '{state.name}' skips frames it cannot read: {error}")
                return False
            if state.depth is not None:
                lookup = state.depth.match(frame.stamp_ns)
                if lookup.ok:
                    try:
                        frame.depth = aligned_depth(lookup, (rgb.shape[1], rgb.shape[0]))
                        frame.depth_header = lookup.depth.header
                    except DEPTH_ERRORS as error:
                        frame.depth_reason = str(error)
                else:
                    frame.depth_reason = lookup.reason
            frame.rgb = rgb
            return True

    def _watch(self) -> None:
        """A camera that stopped (no frame for tracking.max_frame_gap_s) ends its tracks, with the reason."""
        settings = self._settings()
        if settings is None:
            return
        now = self._now_ns()
        with self._lock:
            states = list(self._cameras.values())
        for state in states:
            with self._lock:
                newest = state.inbox[-1] if state.inbox else state.last
                if not state.trackers or newest is None:
                    continue
                gap_s = (now - newest.arrival_ns) / NS
                if gap_s <= settings.tracking_max_frame_gap_s:
                    continue
                trackers = list(state.trackers.values())
            reason = (f"camera stopped: no frame on '{state.topic}' for {gap_s:.2f} s (more than "
                      f"tracking.max_frame_gap_s = {settings.tracking_max_frame_gap_s:g} s)")
            self._end(state, trackers, reason, drop=False)

    # ------------------------------------------------------------------ ending
    def end_all(self, reason: str) -> None:
        """Every track of every camera ends with ``reason`` (published); the trackers are dropped and an
        answer still under way is not tracked (its result says why). Deactivate, shutdown."""
        with self._lock:
            states = list(self._cameras.values())
            ending = []
            for state in states:
                ending.append((state, list(state.trackers.values())))
                state.trackers = {}
                state.inbox.clear()
        for state, trackers in ending:
            self._end(state, trackers, reason, drop=True)

    def _end(self, state: _CameraTracks, trackers: list[_Tracked], reason: str, drop: bool) -> None:
        """End every track of ``trackers`` with ``reason`` and publish that, under the camera's last frame."""
        parts = TrackedFrameParts()
        for tracked in trackers:
            with tracked.lock:
                ended = tracked.tracker.end_all(reason)
                if not ended and not tracked.events:
                    continue
                parts.events += tracked.events + [event_msg(e, tracked.instruction) for e in ended]
                tracked.events, tracked.seen_s = [], {}
                if drop:
                    tracked.closed = reason
        with self._lock:
            if drop:
                self._lock.notify_all()
            else:
                for tracked in trackers:
                    if state.trackers.get(tracked.instruction) is tracked and tracked.pending == 0:
                        del state.trackers[tracked.instruction]
        last = state.last
        if parts.events and last is not None:
            size = last.size if last.rgb is not None else (int(getattr(last.msg, "width", 0)),
                                                            int(getattr(last.msg, "height", 0)))
            settings = self._settings()
            mask_format = settings.mask_format if settings is not None else 0
            self._publish(tracks_msg(state.name, last.msg.header, size, None, parts, mask_format, {}, last.stamp_s))

    # ------------------------------------------------------------------ output
    def _publish(self, msg: Tracks) -> None:
        publisher = self._tracks_pub
        if publisher is not None:
            publisher.publish(msg)

    def _publish_pictures(self, settings: Any, frame: _Frame, header: Header, views: list[Any]) -> None:
        """With tracking on, the debug image and the markers show the tracks, keyed by track id."""
        try:
            if settings.debug_image and _wanted(self._debug_pub):
                from pixellm_ros.engine.overlay import draw_targets

                self._debug_pub.publish(rgb_to_image_msg(draw_targets(frame.rgb, drawn_tracks(views, frame.size)),
                                                         header))
            if _wanted(self._markers_pub):
                targets = [view.target_3d if view.target_3d is not None else Target3D.failed(view.no_3d_reason)
                           for view in views]
                self._markers_pub.publish(targets_marker_array(targets, header, [v.name for v in views],
                                                               keys=[v.track_id for v in views]))
        except Exception as error:  # noqa: BLE001 - a picture for people must never cost the tracks
            self._logger.warning(f"tracks' debug image / markers not published: {type(error).__name__}: {error}",
                                 throttle_duration_sec=10.0)

    def _warn(self, state: _CameraTracks, kind: str, text: str) -> None:
        """Say it once per camera and kind (a camera's stream repeats its faults at frame rate)."""
        if kind not in state.warned:
            state.warned.add(kind)
            self._logger.warning(text)

    def _now_ns(self) -> int:
        return self._node.get_clock().now().nanoseconds


def _thin(state: _CameraTracks, asked_on: set[int]) -> None:
    """Skip one waiting frame of a full inbox (desk lock held): never the newest, nor one whose stamp is in
    ``asked_on``, the frames tracked requests under way were asked on (their answers need the tracker to
    have stepped them); of the others the one whose
    going leaves the shortest gap between the frames around it. A stall is thinned evenly, so the tracker
    sees frames spread over it rather than one jump the length of it, which it would take for a stopped
    camera (``max_frame_gap_s``) and end every track."""
    frames = state.inbox
    skip, shortest = 0, None
    for index in range(len(frames) - 1):
        if frames[index].stamp_ns in asked_on:
            continue
        before = frames[index - 1] if index > 0 else (state.last or frames[index])
        gap = frames[index + 1].stamp_ns - before.stamp_ns
        if shortest is None or gap < shortest:
            skip, shortest = index, gap
    del frames[skip]


def _wanted(publisher: Any) -> bool:
    return publisher is not None and publisher.get_subscription_count() > 0
