"""Recent depth frames and the latest camera_info, matched to a colour frame by stamp.

message_filters is not on every ROS this package runs on (the pip ROS has none), and its
approximate-time policy drops colour frames that find no partner; the node needs the opposite: a
colour frame is taken when a request comes, and its depth is looked up then. So: a small
thread-safe cache, ROS-free (stamps are integer nanoseconds, frames opaque objects: the node
stores the ``sensor_msgs/Image`` messages and decodes only the matched one).

``match(stamp_ns)`` returns a ``DepthLookup``: the depth frame whose stamp is nearest the colour
stamp within ``tolerance_s`` together with the newest camera_info, or no frame and the ``reason``
(no depth yet, the newest depth too old, the colour frame older than everything cached, a gap in
the depth stream, no camera_info). ``may_arrive_later`` tells the caller that asking again later
can succeed (the depth for this stamp may still be on its way): the node asks when it takes the
colour frame and, failing that, once more when the answer is ready.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Any

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class DepthLookup:
    """The depth frame (and camera_info) for one colour stamp, or why there is none."""

    depth: Any | None = None  # the stored frame (a sensor_msgs/Image in the node)
    camera_info: Any | None = None  # the newest camera_info
    depth_stamp_ns: int | None = None
    offset_s: float | None = None  # depth stamp - colour stamp, seconds
    reason: str = ""  # "" when matched
    may_arrive_later: bool = False  # no match, but asking again later may find one

    @property
    def ok(self) -> bool:
        return not self.reason


class DepthCache:
    """The last ``capacity`` depth frames by stamp and the latest camera_info (thread-safe).

    Args:
        capacity: depth frames kept (the oldest go first); it must cover the time between a
            depth frame's arrival and the moment a request takes the colour frame of that stamp.
        tolerance_s: largest |depth stamp - colour stamp| that still matches.
        depth_topic, info_topic: names used in the reasons ("no depth image received yet on ...").
    """

    def __init__(self, capacity: int = 10, tolerance_s: float = 0.02, depth_topic: str = "depth/image_raw",
                 info_topic: str = "camera_info") -> None:
        if capacity < 1:
            raise ValueError(f"depth cache capacity must be >= 1, got {capacity}")
        if tolerance_s < 0:
            raise ValueError(f"depth stamp tolerance must be >= 0 s, got {tolerance_s}")
        self.capacity = int(capacity)
        self.tolerance_s = float(tolerance_s)
        self.depth_topic = depth_topic
        self.info_topic = info_topic
        self._lock = threading.Lock()
        self._stamps: list[int] = []  # sorted
        self._frames: list[Any] = []
        self._camera_info: Any | None = None
        self.received = 0

    def add_depth(self, stamp_ns: int, frame: Any) -> None:
        """Store a depth frame (out-of-order stamps are fine; a repeated stamp replaces the frame)."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            self.received += 1
            i = bisect.bisect_left(self._stamps, stamp_ns)
            if i < len(self._stamps) and self._stamps[i] == stamp_ns:
                self._frames[i] = frame
                return
            self._stamps.insert(i, stamp_ns)
            self._frames.insert(i, frame)
            if len(self._stamps) > self.capacity:
                del self._stamps[0]
                del self._frames[0]

    def set_camera_info(self, info: Any) -> None:
        """The newest camera_info (intrinsics rarely change: only the latest is kept)."""
        with self._lock:
            self._camera_info = info

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._frames.clear()
            self._camera_info = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._stamps)

    def match(self, stamp_ns: int) -> DepthLookup:
        """The depth frame nearest ``stamp_ns`` within the tolerance, with the camera_info; or the reason."""
        stamp_ns = int(stamp_ns)
        tolerance_ns = round(self.tolerance_s * NS_PER_S)
        with self._lock:
            stamps, frames, info = list(self._stamps), list(self._frames), self._camera_info
        if not stamps:
            return DepthLookup(camera_info=info, may_arrive_later=True,
                               reason=f"no depth image received yet on '{self.depth_topic}'")
        i = bisect.bisect_left(stamps, stamp_ns)
        nearest = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - stamp_ns))
        offset_ns = stamps[nearest] - stamp_ns
        if abs(offset_ns) > tolerance_ns:
            return self._no_match(stamps, stamp_ns, offset_ns, info)
        if info is None:
            return DepthLookup(depth=frames[nearest], depth_stamp_ns=stamps[nearest], offset_s=offset_ns / NS_PER_S,
                               reason=f"no camera_info received yet on '{self.info_topic}'", may_arrive_later=True)
        return DepthLookup(depth=frames[nearest], camera_info=info, depth_stamp_ns=stamps[nearest],
                           offset_s=offset_ns / NS_PER_S)

    def _no_match(self, stamps: list[int], stamp_ns: int, offset_ns: int, info: Any) -> DepthLookup:
        tol = f"tolerance {self.tolerance_s:g} s"
        if stamps[-1] < stamp_ns:
            age = (stamp_ns - stamps[-1]) / NS_PER_S
            return DepthLookup(camera_info=info, offset_s=offset_ns / NS_PER_S, may_arrive_later=True, reason=(
                f"stale depth: the newest depth image on '{self.depth_topic}' is {age:.3f} s older than the colour"
                f" image ({tol})"))
        if stamps[0] > stamp_ns:
            lead = (stamps[0] - stamp_ns) / NS_PER_S
            return DepthLookup(camera_info=info, offset_s=offset_ns / NS_PER_S, reason=(
                f"the colour image is {lead:.3f} s older than every cached depth image ({len(stamps)} kept, {tol}):"
                " a larger depth cache would hold its depth"))
        return DepthLookup(camera_info=info, offset_s=offset_ns / NS_PER_S, reason=(
            f"no depth image within {self.tolerance_s:g} s of the colour image"
            f" (nearest {abs(offset_ns) / NS_PER_S:.3f} s away): a gap in '{self.depth_topic}', or depth and colour stamped by different clocks"))
