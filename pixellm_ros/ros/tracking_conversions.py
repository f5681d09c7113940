"""Messages of the tracks: the tracking core's views and events as ``pixellm_ros/msg/Tracks``.

A ``TrackedTarget`` has the layout of a ``SegmentedTarget`` where they share a meaning, and is
filled by the same code: the mask fields by ``conversions.mask_fields`` (full frame or cropped as
``output.mask_format``), the 3D fields by ``spatial_conversions.fill_target_3d``. A coasting track
has no mask: its box is all zero, its mask empty (cropped) or all zero (full), its 3D fields zero
with ``no_3d_reason`` saying why. Everything carries the camera frame's header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from std_msgs.msg import Header

from pixellm_ros.msg import TrackedTarget, TrackEvent, Tracks
from pixellm_ros.spatial import Target3D
from pixellm_ros.tracking import NO_DEPTH, TrackEvent as CoreEvent, TrackView

from .conversions import mask_fields
from .spatial_conversions import fill_target_3d

STATUS = {"tracking": TrackedTarget.STATUS_TRACKING, "coasting": TrackedTarget.STATUS_COASTING}
_NO_BOX = (0, 0, 0, 0)


@dataclass
class TrackedFrameParts:
    """What one camera frame's message is made of: per tracked instruction its views, and the
    events (in order) of the answers since the last message and of this frame's steps."""

    views: list[tuple[str, TrackView]] = field(default_factory=list)  # (instruction, view), any order
    events: list[TrackEvent] = field(default_factory=list)


def event_msg(event: CoreEvent, instruction: str, depth_reason: str = "") -> TrackEvent:
    """A core ``TrackEvent`` of the tracker of ``instruction``; a depth_lost event also says why the
    frame had no depth (``depth_reason``: the depth lookup's reason)."""
    reason = event.reason
    if event.kind == "depth_lost" and depth_reason:
        reason = f"{reason} ({depth_reason})"
    return TrackEvent(kind=event.kind, track_id=event.track_id or 0, instruction=instruction, reason=reason)


def tracked_target_msg(view: TrackView, instruction: str, header: Header, frame_size: tuple[int, int],
                       mask_format: int, since_seen_s: float, depth_reason: str = "") -> TrackedTarget:
    """One track on one frame. frame_size: (W, H); since_seen_s: seconds from the frame the model last
    saw it on to this one; depth_reason: why this frame has no depth (added to "no depth this frame")."""
    mask = view.mask if view.mask is not None and view.box is not None else np.zeros((0, 0), dtype=bool)
    box = view.box if view.box is not None else _NO_BOX
    msg = TrackedTarget(track_id=view.track_id, instruction=instruction, name=view.name, status=STATUS[view.status],
                        reason=view.reason, score=float(view.score), since_seen_s=float(since_seen_s),
                        age_s=float(view.age_s), **mask_fields(mask, box, header, mask_format, frame_size))
    reason = view.no_3d_reason
    if reason == NO_DEPTH and depth_reason:
        reason = f"{NO_DEPTH}: {depth_reason}"
    fill_target_3d(msg, view.target_3d if view.target_3d is not None else Target3D.failed(reason))
    return msg


def tracks_msg(camera: str, header: Header, frame_size: tuple[int, int], depth_header: Header | None,
               parts: TrackedFrameParts, mask_format: int, seen_s: dict[int, float], stamp_s: float,
               depth_reason: str = "", step_ms: float = 0.0, total_ms: float = 0.0) -> Tracks:
    """The Tracks message of one camera frame (``header``, ``frame_size`` (W, H)); tracks in id order.

    seen_s: track id -> stamp (s) of the frame the model last saw it on; stamp_s: this frame's.
    """
    views = sorted(parts.views, key=lambda pair: pair[1].track_id)
    tracks = [tracked_target_msg(view, instruction, header, frame_size, mask_format,
                                 stamp_s - seen_s.get(view.track_id, stamp_s), depth_reason)
              for instruction, view in views]
    return Tracks(header=header, camera=camera, image_width=frame_size[0], image_height=frame_size[1],
                  depth_header=depth_header if depth_header is not None else Header(), tracks=tracks,
                  events=list(parts.events), step_ms=float(step_ms), total_ms=float(total_ms))


def drawn_tracks(views: Sequence[TrackView], frame_size: tuple[int, int]) -> list:
    """The tracks seen on a frame as ``engine.overlay.DrawnTarget`` s keyed by track id ("#id name")."""
    from pixellm_ros.engine.overlay import DrawnTarget

    width, height = frame_size
    return [DrawnTarget(view.full_mask(height, width), view.box, f"#{view.track_id} {view.name}", view.track_id)
            for view in views if view.box is not None]
