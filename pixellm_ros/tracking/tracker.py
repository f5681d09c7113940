"""The tracker: every target of the model's answers followed at camera rate with an id that stays.

    tracker = Tracker(TrackerOptions())
    for each camera frame:  view = tracker.step(rgb, stamp_s, depth=aligned_depth_or_None)
    for each answer:        update = tracker.update(detections, answer_frame_stamp_s)

``step`` carries every track onto the new frame: DIS optical flow (``flow``) between the previous
and this frame at reduced resolution, inside the union of the tracks' boxes; each track's
similarity motion fitted to the flow of its visible pixels (RANSAC) and composed onto its
template's transform; its visible mask = the warped template where the frame's colours still
match it (``track``); box, score and 3D (``spatial``) recomputed. A track whose visible share
drops below ``lost_fraction`` (hidden, lost, out of view) COASTS: its template moves with the
flow around it (the camera's motion) and it comes back by itself when enough of it is seen again;
it ends after ``lost_timeout_s`` of coasting. A track no answer has named for
``unnamed_timeout_s`` ends.

``update`` takes an answer about an EARLIER frame (the frame the model was asked on, still among
the last ``history_frames``): its masks are carried to the newest frame by one flow between the
two, matched to the tracks (``matching``: mask IoU, 3D distance with depth, Hungarian), the
matched tracks take the answer's mask as their new template, the others start tracks. Ids count
up from 1 and are never reused.

State is bounded: per track one template and one mask crop; ``history_frames`` grey frames at
the flow's scale; the newest colour frame. Every step's cost is that of the live tracks.
Whenever tracks end or pause, the event says why: a frame size change, a camera gap longer than
``max_frame_gap_s``, a lost mask, no answer naming it, no depth on this frame (3D paused).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import Field, dataclass, field, fields
from typing import Any, Iterator, Mapping

import cv2
import numpy as np

from pixellm_ros.spatial import AlignedDepth, Targets3DOptions
from pixellm_ros.tracking.flow import PRESETS, FlowField, RoiFlow, compose, fit_similarity, union_box
from pixellm_ros.tracking.matching import Candidate, assign, match_cost
from pixellm_ros.tracking.track import Box, Prediction, Track, new_track
from pixellm_ros.tracking.types import AnswerUpdate, Detection, TrackedFrame, TrackEvent, TrackView

NS = 1_000_000_000
NO_DEPTH = "no depth this frame"
REPREDICT_PX = 0.5


def _option(default: Any, help: str, minimum: float | None = None, maximum: float | None = None,
            exclusive: bool = False, choices: tuple[str, ...] = ()) -> Any:
    """A TrackerOptions field with what it means and its range in the field's metadata: read by
    ``__post_init__`` (the check) and by the node's parameter table (``option_fields``)."""
    return field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum,
                                            "exclusive": exclusive, "choices": choices})


@dataclass(frozen=True)
class TrackerOptions:
    """How the tracker carries, matches and ends tracks (defaults measured by
    ``benchmarks/bench_tracking.py`` on the moving world at 30 Hz). Each field's meaning and range
    are in its metadata (``option_fields``); bounds are inclusive unless ``exclusive``."""

    flow_preset: str = _option("fast", "OpenCV DIS optical flow preset", choices=tuple(PRESETS))
    flow_scale: float = _option(0.5, "the flow runs on frames scaled by this", 0.1, 1.0)
    roi_margin_px: int = _option(24, "the flow's region: the tracks' boxes grown by this many pixels", 0)
    colour_tolerance: int = _option(120, "a predicted pixel is seen when its |RGB - template's| summed is at most this",
                                    0, 765)
    lost_fraction: float = _option(0.15, "a track coasts when less than this share of its predicted shape is seen",
                                   0.01, 1.0)
    resume_fraction: float = _option(0.35, "a coasting track tracks again from this share on (>= lost_fraction)",
                                     0.01, 1.0)
    min_area_px: int = _option(16, "fewer visible pixels: the track coasts; an answer's target smaller: refused", 1)
    lost_timeout_s: float = _option(2.0, "a track coasting this long ends", 0.0, exclusive=True)
    unnamed_timeout_s: float = _option(3.0, "a track no answer named for this long ends", 0.0, exclusive=True)
    max_frame_gap_s: float = _option(0.5, "a longer gap between frames ends every track (the camera stopped)", 0.0,
                                     exclusive=True)
    history_frames: int = _option(90, "an answer may be about one of the last this many frames (cover the model's "
                                  "latency)", 1)
    max_tracks: int = _option(32, "more live tracks than this: an answer's new targets are refused", 1)
    min_iou: float = _option(0.2, "without 3D, an answer's target and a track match from this mask IoU on", 0.0, 1.0)
    max_distance_m: float = _option(0.08, "with 3D on both sides, they match within this distance (metres)", 0.0,
                                    exclusive=True)
    points_per_track: int = _option(100, "flow samples per track for its motion fit", 1)
    align: bool = _option(True, "correct each track's drift with ECC alignment of its template")
    targets_3d: Targets3DOptions = field(default_factory=lambda: Targets3DOptions(keep_points=False))

    def __post_init__(self) -> None:
        for option in option_fields():
            value = getattr(self, option.name)
            problem = _out_of_range(value, option.metadata)
            if problem:
                raise ValueError(f"{option.name} {problem}, got {value!r}")
        if self.lost_fraction > self.resume_fraction:
            raise ValueError("need lost_fraction <= resume_fraction, got "
                             f"{self.lost_fraction}, {self.resume_fraction}")


def option_fields() -> tuple[Field, ...]:
    """The plain-valued TrackerOptions fields (each with ``metadata``: help, minimum, maximum,
    exclusive, choices), in declaration order: what the node offers as ``tracking.*`` parameters."""
    return tuple(f for f in fields(TrackerOptions) if "help" in f.metadata)


def _out_of_range(value: Any, meta: Mapping[str, Any]) -> str:
    """What is wrong with ``value`` under a field's metadata ("" when nothing)."""
    if meta["choices"] and value not in meta["choices"]:
        return f"must be one of {', '.join(meta['choices'])}"
    low, high, exclusive = meta["minimum"], meta["maximum"], meta["exclusive"]
    if low is not None and (value < low or (exclusive and value == low)):
        return f"must be {'>' if exclusive else '>='} {low:g}"
    if high is not None and (value > high or (exclusive and value == high)):
        return f"must be {'<' if exclusive else '<='} {high:g}"
    return ""


class Tracker:
    """Tracks of an answer's targets, carried frame by frame between answers (not thread-safe:
    one caller, or a lock around it)."""

    def __init__(self, options: TrackerOptions | None = None, ids: Iterator[int] | None = None) -> None:
        """ids: where new tracks' ids come from (default: 1, 2, 3, ...); several trackers that hand
        out ids in one namespace (the node's, one tracker per camera and instruction) share one."""
        self.options = options or TrackerOptions()
        self._flow = RoiFlow(self.options.flow_preset, self.options.flow_scale)
        self._ids = ids if ids is not None else itertools.count(1)
        self._tracks: dict[int, Track] = {}
        self._history: deque[tuple[int, np.ndarray]] = deque(maxlen=self.options.history_frames)
        self._image: np.ndarray | None = None
        self._depth: AlignedDepth | None = None
        self._had_depth = False
        self._depth_lost = False
        self._stamp_ns: int | None = None
        self._predictions: dict[int, Prediction] = {}

    # ------------------------------------------------------------------ per camera frame
    def step(self, image: np.ndarray, stamp_s: float, depth: AlignedDepth | None = None) -> TrackedFrame:
        """Carry every track onto this frame.

        Args:
            image: (H, W, 3) uint8 RGB, the camera frame.
            stamp_s: its time in seconds; later than the previous frame's (ValueError otherwise).
            depth: this frame's ``spatial.AlignedDepth`` for the 3D fields (image_size (W, H)),
                or None: no depth on this frame (the 3D fields pause, with that reason).

        Returns:
            The live tracks on this frame and what happened to tracks in this step.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        stamp_ns = round(stamp_s * NS)
        events: list[TrackEvent] = []
        height, width = image.shape[:2]
        if self._stamp_ns is not None and stamp_ns <= self._stamp_ns:
            raise ValueError(f"frame stamp {stamp_s:.6f} s is not after the previous one ({self._stamp_ns / NS:.6f} s)")
        if self._image is not None and self._image.shape != image.shape:
            old_h, old_w = self._image.shape[:2]
            events += self._end_all(f"frame size changed from {old_w}x{old_h} to {width}x{height}")
        elif self._stamp_ns is not None and (stamp_ns - self._stamp_ns) / NS > self.options.max_frame_gap_s:
            events += self._end_all(f"camera stopped: no frame for {(stamp_ns - self._stamp_ns) / NS:.2f} s"
                                    f" (more than max_frame_gap_s {self.options.max_frame_gap_s} s)")
        if depth is not None and depth.image_size != (width, height):
            raise ValueError(f"depth is aligned to a {depth.image_size[0]}x{depth.image_size[1]} image, the frame is"
                             f" {width}x{height}")
        small = self._flow.shrink(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        now = stamp_ns / NS
        if self._tracks and self._history:
            self._carry(self._history[-1][1], small, image)
        self._image, self._depth, self._stamp_ns = image, depth, stamp_ns
        self._history.append((stamp_ns, small))
        events += self._observe(image, small, now)
        events += self._expire(now)
        events += self._measure_3d(depth)
        return self._frame(events)

    def _carry(self, previous: np.ndarray, current: np.ndarray, image: np.ndarray) -> None:
        """Compose each track's motion from ``previous`` to ``current`` (scaled grey) onto its transform.

        A track's own motion is the similarity fitted to the flow of its visible pixels; the
        table's is the one fitted to the flow outside every track's box (how a still, hidden
        object moves when the camera does). Where the two disagree (an occluder sliding over the
        object drags the flow of its last visible pixels along), the one under which the
        template's colours match ``image`` better wins. Hidden tracks move with the table."""
        height, width = image.shape[:2]
        boxes = {}
        for track in self._tracks.values():
            box = track.box if track.status == "tracking" else track.predicted_box(width, height)
            if box is not None:
                boxes[track.track_id] = box
        grown = [_grow(b, 0.6) for b in boxes.values()]
        roi = union_box([b for b in grown if b is not None], self.options.roi_margin_px, width, height)
        if roi is None:
            return
        flow = self._flow.compute(previous, current, roi)
        table = _table_motion(flow, list(boxes.values()), self.options.points_per_track)
        for track in self._tracks.values():
            own = None
            if track.status == "tracking" and track.mask is not None:
                points = _sample_points(track.mask, track.offset, self.options.points_per_track)
                moved, inside = flow.displacement(points)
                own = fit_similarity(points[inside], moved[inside])
            motion = own if own is not None else table
            if own is not None and table is not None and _differ(own, table, track):
                tolerance = self.options.colour_tolerance
                if track.seen_pixels(image, compose(table, track.transform), tolerance) > \
                        track.seen_pixels(image, compose(own, track.transform), tolerance):
                    motion = table
            if motion is not None:
                track.transform = compose(motion, track.transform)

    def _observe(self, image: np.ndarray, small: np.ndarray, now: float) -> list[TrackEvent]:
        """Each track's visible mask on ``image``: its warped template where the colours match,
        a pixel claimed by two tracks going to the one whose colours match it better."""
        options = self.options
        self._predictions = {}
        seen: dict[int, np.ndarray] = {}
        for track in self._tracks.values():
            prediction = track.predict(image)
            # The alignment's correction shows on the next frame, or on this one when it is large.
            if prediction is not None and options.align and track.status == "tracking" \
                    and track.align(small, self._flow.scale, prediction) > REPREDICT_PX:
                prediction = track.predict(image)
            if prediction is None:
                continue
            self._predictions[track.track_id] = prediction
            seen[track.track_id] = prediction.shape & (prediction.error <= options.colour_tolerance)
        _settle_overlaps(self._predictions, seen)
        events: list[TrackEvent] = []
        for track in self._tracks.values():
            prediction = self._predictions.get(track.track_id)
            if prediction is None:
                visible, shown, reason = 0, 0.0, "out of view"
            else:
                visible = int(np.count_nonzero(seen[track.track_id]))
                track.predicted_area = int(np.count_nonzero(prediction.shape))
                shown = visible / max(track.predicted_area, 1)
                reason = f"hidden or lost: {100 * shown:.0f}% of its shape seen"
            if track.status == "tracking" and (visible < options.min_area_px or shown < options.lost_fraction):
                track.status, track.reason, track.lost_since_s = "coasting", reason, now
                track.mask = track.box = None
                events.append(TrackEvent("paused", track.track_id, reason))
            elif track.status == "coasting" and visible >= options.min_area_px and shown >= options.resume_fraction:
                track.status, track.reason = "tracking", ""
                events.append(TrackEvent("resumed", track.track_id))
            if track.status == "tracking" and prediction is not None:
                x0, y0 = prediction.box[:2]
                track.set_visible(seen[track.track_id], (x0, y0))
            elif prediction is None:
                track.reason = reason
        return events

    def _expire(self, now: float) -> list[TrackEvent]:
        events = []
        for track_id, track in list(self._tracks.items()):
            reason = ""
            if track.status == "coasting" and now - track.lost_since_s > self.options.lost_timeout_s:
                reason = f"mask lost for {now - track.lost_since_s:.1f} s ({track.reason})"
            elif now - track.named_s > self.options.unnamed_timeout_s:
                reason = f"not named by an answer for {now - track.named_s:.1f} s"
            if reason:
                del self._tracks[track_id]
                events.append(TrackEvent("ended", track_id, reason))
        return events

    def _measure_3d(self, depth: AlignedDepth | None) -> list[TrackEvent]:
        events = []
        if depth is None and self._had_depth:
            events.append(TrackEvent("depth_lost", None, f"{NO_DEPTH}: the tracks' 3D fields pause"))
            self._depth_lost = True
        elif depth is not None and self._depth_lost:
            events.append(TrackEvent("depth_back", None, "depth again: the tracks' 3D fields resume"))
            self._depth_lost = False
        self._had_depth = depth is not None
        for track in self._tracks.values():
            self._track_3d(track, depth)
        return events

    def _track_3d(self, track: Track, depth: AlignedDepth | None) -> None:
        """The track's 3D fields from this frame's mask and depth (or why there are none)."""
        track.target_3d = None
        if track.status != "tracking" or track.mask is None:
            track.no_3d_reason = track.reason
        elif depth is None:
            track.no_3d_reason = NO_DEPTH
        else:
            track.target_3d = depth.target(track.mask, offset=track.offset, box=track.box,
                                           options=self.options.targets_3d)
            track.no_3d_reason = track.target_3d.reason
            if track.target_3d.ok:
                track.last_centroid = np.asarray(track.target_3d.centroid, dtype=np.float64)

    # ------------------------------------------------------------------ per answer
    def update(self, detections: list[Detection], stamp_s: float) -> AnswerUpdate:
        """An answer about the frame stamped ``stamp_s`` (one of the last ``history_frames`` frames
        given to ``step``): its targets carried to the newest frame, matched to the tracks,
        refreshing them or starting new ones.

        Args:
            detections: the answer's targets, masks (H, W) bool at the frame's size.
            stamp_s: the stamp of the frame the model was asked about.

        Returns:
            Each detection's track id (None: refused, with the reason in a "refused" event).
        """
        refused: list[TrackEvent] = []
        if self._image is None:
            reason = "no camera frame yet"
            return AnswerUpdate(tuple(None for _ in detections),
                                tuple(TrackEvent("refused", None, reason) for _ in detections), 0)
        image = self._image
        height, width = image.shape[:2]
        stamp_ns = round(stamp_s * NS)
        stamps = [s for s, _ in self._history]
        if stamp_ns not in stamps:
            reason = (f"the answer's frame ({stamp_s:.6f} s) is not among the tracker's last {len(stamps)} frames"
                      " (older, or of another size or camera run)")
            return AnswerUpdate(tuple(None for _ in detections),
                                tuple(TrackEvent("refused", None, reason) for _ in detections), 0)
        behind = len(stamps) - 1 - stamps.index(stamp_ns)
        flow = None
        if behind:
            flow = self._flow.compute(self._history[-1 - behind][1], self._history[-1][1], (0, 0, width, height))
        carried: list[tuple[int, np.ndarray, tuple[int, int]]] = []
        for index, detection in enumerate(detections):
            mask = np.asarray(detection.mask, dtype=bool)
            if mask.shape != (height, width):
                refused.append(TrackEvent("refused", None, f"target {index}: mask {mask.shape[1]}x{mask.shape[0]}"
                                          f" is not the frame's {width}x{height}"))
                continue
            moved = _carry_mask(mask, flow, self.options.points_per_track)
            if moved is None or int(np.count_nonzero(moved[0])) < self.options.min_area_px:
                refused.append(TrackEvent("refused", None, f"target {index} ('{detection.name}'): mask smaller than"
                                          f" min_area_px {self.options.min_area_px} on the newest frame"))
                continue
            carried.append((index, moved[0], moved[1]))
        now = self._stamp_ns / NS if self._stamp_ns is not None else 0.0
        centroids = [self._centroid(m, o) for _, m, o in carried]
        live = list(self._tracks.values())
        cost = match_cost([Candidate(m, o, c) for (_, m, o), c in zip(carried, centroids)],
                          [self._candidate(t) for t in live], self.options.min_iou, self.options.max_distance_m)
        ids: list[int | None] = [None] * len(detections)
        events: list[TrackEvent] = []
        matched = set()
        for row, col in assign(cost):
            index, mask, offset = carried[row]
            track = live[col]
            was = track.status
            d = detections[index]
            track.reseed(mask, offset, image, d.name, d.score, now)
            self._track_3d(track, self._depth)
            ids[index] = track.track_id
            matched.add(row)
            events.append(TrackEvent("resumed" if was == "coasting" else "refreshed", track.track_id))
        for row, (index, mask, offset) in enumerate(carried):
            if row in matched:
                continue
            if len(self._tracks) >= self.options.max_tracks:
                refused.append(TrackEvent("refused", None, f"target {index}: max_tracks ({self.options.max_tracks})"
                                          " tracks are live"))
                continue
            d = detections[index]
            track = new_track(next(self._ids), mask, offset, image, d.name, d.score, now)
            self._tracks[track.track_id] = track
            self._track_3d(track, self._depth)
            ids[index] = track.track_id
            events.append(TrackEvent("started", track.track_id))
        return AnswerUpdate(tuple(ids), tuple(events + refused), behind)

    def _centroid(self, mask: np.ndarray, offset: tuple[int, int]) -> np.ndarray | None:
        if self._depth is None:
            return None
        t = self._depth.target(mask, offset=offset, options=self.options.targets_3d)
        return np.asarray(t.centroid, dtype=np.float64) if t.ok else None

    def _candidate(self, track: Track) -> Candidate:
        if track.status == "tracking" and track.mask is not None:
            centroid = track.last_centroid if track.target_3d is not None and track.target_3d.ok else None
            return Candidate(track.mask, track.offset, centroid)
        prediction = self._predictions.get(track.track_id)
        shape = prediction.shape if prediction is not None else None
        offset = prediction.box[:2] if prediction is not None else (0, 0)
        centroid = track.last_centroid if self._depth is not None else None
        return Candidate(shape, offset, centroid)

    # ------------------------------------------------------------------ the rest
    def end_all(self, reason: str) -> tuple[TrackEvent, ...]:
        """End every track with ``reason`` (e.g. the node deactivates); history and frame kept."""
        return tuple(self._end_all(reason, keep_history=True))

    def _end_all(self, reason: str, keep_history: bool = False) -> list[TrackEvent]:
        events = [TrackEvent("ended", track_id, reason) for track_id in self._tracks]
        self._tracks.clear()
        self._predictions = {}
        if not keep_history:
            self._history.clear()
            self._image = None
        return events

    @property
    def tracks(self) -> tuple[TrackView, ...]:
        """The live tracks on the newest frame."""
        return self._frame(()).tracks

    def state_bytes(self) -> int:
        """Bytes of arrays the tracker holds: templates, masks, the frame history, the newest frame."""
        held = sum(t.state_bytes() for t in self._tracks.values())
        held += sum(small.nbytes for _, small in self._history)
        held += sum(p.shape.nbytes + p.error.nbytes for p in self._predictions.values())
        return held + (self._image.nbytes if self._image is not None else 0)

    def _frame(self, events: list[TrackEvent] | tuple[TrackEvent, ...]) -> TrackedFrame:
        now = (self._stamp_ns or 0) / NS
        size = (self._image.shape[1], self._image.shape[0]) if self._image is not None else (0, 0)
        views = tuple(
            TrackView(track_id=t.track_id, name=t.name, status=t.status, reason=t.reason,
                      score=t.answer_score * (t.area / max(t.predicted_area, 1)) if t.status == "tracking" else 0.0,
                      box=t.box, area=t.area, mask=t.mask, offset=t.offset, since_named_s=now - t.named_s,
                      age_s=now - t.started_s, target_3d=t.target_3d, no_3d_reason=t.no_3d_reason)
            for t in sorted(self._tracks.values(), key=lambda t: t.track_id))
        return TrackedFrame(stamp_s=now, image_size=size, tracks=views, events=tuple(events))


def _grow(box: Box | None, share: float) -> Box | None:
    if box is None:
        return None
    x0, y0, x1, y1 = box
    dx, dy = int((x1 - x0) * share / 2), int((y1 - y0) * share / 2)
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


def _sample_points(mask: np.ndarray, offset: tuple[int, int], count: int) -> np.ndarray:
    """Up to ``count`` (x, y) full-frame points spread over the mask's inside (eroded by 2 px when
    enough is left: the flow at an edge is partly the background's)."""
    inner = cv2.erode(mask.view(np.uint8), np.ones((5, 5), np.uint8), borderValue=0)
    if cv2.countNonZero(inner) < 12:
        inner = mask.view(np.uint8)
    step = max(1, int(np.sqrt(cv2.countNonZero(inner) / count)))  # a grid of about ``count`` points
    ys, xs = np.nonzero(inner[::step, ::step])
    return np.stack([xs * step + offset[0], ys * step + offset[1]], axis=1).astype(np.float64)


def _table_motion(flow: FlowField, boxes: list[Box], count: int) -> np.ndarray | None:
    """The similarity motion of the flow's region outside every track's box (grown by 8 px): the
    table's image motion, the camera's doing. None when too little of the region is free."""
    x0, y0, x1, y1 = flow.roi
    step = max(4, int(np.sqrt(max((x1 - x0) * (y1 - y0), 1) / (2 * count))))
    xs, ys = np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step))
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    keep = np.ones(len(points), dtype=bool)
    for bx0, by0, bx1, by1 in boxes:
        keep &= ~((points[:, 0] >= bx0 - 8) & (points[:, 0] < bx1 + 8) & (points[:, 1] >= by0 - 8)
                  & (points[:, 1] < by1 + 8))
    moved, inside = flow.displacement(points[keep])
    return fit_similarity(points[keep][inside], moved[inside])


def _differ(a: np.ndarray, b: np.ndarray, track: Track, tolerance_px: float = 0.75) -> bool:
    """Whether two motions move the track's template corners apart by more than ``tolerance_px``."""
    h, w = track.mask_template.shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64) @ track.transform.T
    homogeneous = np.concatenate([corners, np.ones((4, 1))], axis=1)
    return float(np.abs(homogeneous @ a.T - homogeneous @ b.T).max()) > tolerance_px


def _settle_overlaps(predictions: dict[int, Prediction], seen: dict[int, np.ndarray]) -> None:
    """Pixels two tracks both see go to the track whose template colours match them better."""
    ids = list(seen)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            pa, pb = predictions[a], predictions[b]
            x0, y0 = max(pa.box[0], pb.box[0]), max(pa.box[1], pb.box[1])
            x1, y1 = min(pa.box[2], pb.box[2]), min(pa.box[3], pb.box[3])
            if x1 <= x0 or y1 <= y0:
                continue
            sa = (slice(y0 - pa.box[1], y1 - pa.box[1]), slice(x0 - pa.box[0], x1 - pa.box[0]))
            sb = (slice(y0 - pb.box[1], y1 - pb.box[1]), slice(x0 - pb.box[0], x1 - pb.box[0]))
            both = seen[a][sa] & seen[b][sb]
            if not both.any():
                continue
            a_better = pa.error[sa] <= pb.error[sb]
            seen[a][sa] &= ~(both & ~a_better)
            seen[b][sb] &= ~(both & a_better)


def _carry_mask(mask: np.ndarray, flow: FlowField | None, count: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """An answer's full-frame mask (H, W) bool carried by ``flow`` (None: it is about the newest
    frame) with the similarity motion of its pixels: (crop, offset) on the newest frame, or None."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1])
    if flow is None:
        return crop.copy(), (x0, y0)
    points = _sample_points(crop, (x0, y0), count)
    moved, inside = flow.displacement(points)
    motion = fit_similarity(points[inside], moved[inside])
    if motion is None:
        return crop.copy(), (x0, y0)
    height, width = mask.shape
    to_frame = compose(motion, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]))
    h, w = crop.shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64) @ to_frame.T
    bx0, by0 = max(0, int(np.floor(corners[:, 0].min()))), max(0, int(np.floor(corners[:, 1].min())))
    bx1 = min(width, int(np.ceil(corners[:, 0].max())) + 1)
    by1 = min(height, int(np.ceil(corners[:, 1].max())) + 1)
    if bx1 - bx0 < 1 or by1 - by0 < 1:
        return None
    to_frame[:, 2] -= (bx0, by0)
    warped = cv2.warpAffine(crop.astype(np.uint8) * 255, to_frame, (bx1 - bx0, by1 - by0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
    return warped, (bx0, by0)
