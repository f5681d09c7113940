"""What goes into the tracker and what comes out: plain dataclasses of numpy arrays.

Coordinates are colour-image pixels (x right, y down); a box is (x0, y0, x1, y1) ints,
inclusive-exclusive, as the engine's ``Target.box``; a mask is bool, either full frame (H, W) or a
crop (h, w) whose pixel (0, 0) is image pixel ``offset`` = (x0, y0). 3D fields are
``spatial.Target3D`` (camera optical frame, metres).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pixellm_ros.spatial import Target3D

TrackStatus = Literal["tracking", "coasting"]
EventKind = Literal["started", "refreshed", "paused", "resumed", "ended", "depth_lost", "depth_back", "refused"]


@dataclass(frozen=True)
class Detection:
    """One target of a model's answer about one frame.

    name: the answer's phrase for it. mask: (H, W) bool at that frame's size. score: in [0, 1].
    box: (x0, y0, x1, y1) tight around the mask, or None (then found from the mask).
    """

    name: str
    mask: np.ndarray
    score: float = 1.0
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class TrackEvent:
    """Something that happened to a track (``track_id``) or to all of them (``track_id`` None):
    ``kind`` with its ``reason`` in words ("" for started / refreshed / resumed)."""

    kind: EventKind
    track_id: int | None
    reason: str = ""


@dataclass(frozen=True)
class TrackView:
    """One live track on one frame.

    status: "tracking" (its mask is seen on this frame) or "coasting" (hidden, lost by the flow or
    out of view since ``reason``; its mask, box and 3D are None, it keeps its id until the
    tracker's ``lost_timeout_s``). mask: (h, w) bool crop at ``offset`` (x0, y0); box: (x0, y0,
    x1, y1) tight around it; area: its pixels. score: the last answer's score times the share of
    the track's predicted shape seen on this frame. since_named_s: time since an answer last named
    it; age_s: since it started. target_3d: ``spatial.Target3D`` of this frame's mask (None
    without depth or while coasting; ``no_3d_reason`` says why, "" when there is one).
    """

    track_id: int
    name: str
    status: TrackStatus
    reason: str
    score: float
    box: tuple[int, int, int, int] | None
    area: int
    mask: np.ndarray | None
    offset: tuple[int, int]
    since_named_s: float
    age_s: float
    target_3d: Target3D | None
    no_3d_reason: str

    def full_mask(self, height: int, width: int) -> np.ndarray:
        """(height, width) bool: the mask at its place in the frame (all False while coasting)."""
        out = np.zeros((height, width), dtype=bool)
        if self.mask is not None:
            x0, y0 = self.offset
            h, w = self.mask.shape
            out[y0 : y0 + h, x0 : x0 + w] = self.mask
        return out


@dataclass(frozen=True)
class TrackedFrame:
    """The tracks on one camera frame: ``stamp_s``, ``image_size`` (W, H), every live track (in id
    order) and the events of this step (tracks ended by timeouts, a frame-size change or a camera
    gap; paused and resumed tracks; depth lost or back)."""

    stamp_s: float
    image_size: tuple[int, int]
    tracks: tuple[TrackView, ...]
    events: tuple[TrackEvent, ...]


@dataclass(frozen=True)
class AnswerUpdate:
    """What an answer did: ``track_ids[i]`` is the track of detection i (None when it was refused:
    ``events`` has a "refused" event saying why), ``events`` the tracks started, refreshed and
    resumed. ``frames_behind``: how many frames the answer's frame was older than the newest one
    (its masks were carried over that many frames)."""

    track_ids: tuple[int | None, ...]
    events: tuple[TrackEvent, ...]
    frames_behind: int
