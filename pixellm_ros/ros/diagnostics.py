"""The node's health on ``/diagnostics``, the topic robot monitors read (rqt_robot_monitor,
diagnostic_aggregator), as ``diagnostic_updater`` publishers do.

Why: a perception node that silently stops seeing its camera only shows up later, as refusals
(``STATUS_STALE_IMAGE``) or as a robot acting on old frames. Once per ``diagnostics_period_s`` the
node publishes one ``DiagnosticStatus`` saying whether it is active, how fast camera frames arrive
and how old the newest is, how full the request queue is and how requests ended.

Levels:
    ERROR  the latest request that reached the model failed (``STATUS_MODEL_ERROR``); cleared by the
           next successful one.
    WARN   active, but no camera frame yet, or the newest is older than ``max_image_age_s`` (when
           that check is on): instructions without an image of their own would be refused.
    OK     otherwise, including inactive (a commanded lifecycle state, said in the message).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from pixellm_ros.msg import SegmentationResult as ResultMsg


class RateMeter:
    """Frames per second between two readings of a running count."""

    def __init__(self) -> None:
        self._last: tuple[int, float] | None = None

    def update(self, count: int, now_s: float) -> float:
        """The rate since the previous call (0.0 on the first call or when no time passed)."""
        last, self._last = self._last, (count, now_s)
        if last is None or now_s <= last[1]:
            return 0.0
        return (count - last[0]) / (now_s - last[1])


class ResultTally:
    """How the node's requests ended, counted where each one's single result is sent (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ok = 0
        self.refused = 0  # every other status: bad input, no or stale image, queue full, not ready, cancelled
        self.model_errors = 0
        self.last_model_error = ""  # set by a model failure, cleared by the next success

    def record(self, status: int, error: str) -> None:
        with self._lock:
            if status == ResultMsg.STATUS_OK:
                self.ok += 1
                self.last_model_error = ""
            elif status == ResultMsg.STATUS_MODEL_ERROR:
                self.model_errors += 1
                self.last_model_error = error
            else:
                self.refused += 1

    def snapshot(self) -> tuple[int, int, int, str]:
        """(ok, refused, model_errors, last_model_error)."""
        with self._lock:
            return self.ok, self.refused, self.model_errors, self.last_model_error


@dataclass(frozen=True)
class Health:
    """What the node knows about itself at one moment."""

    name: str  # "<node name>: pixellm"
    hardware_id: str  # the model's device ("cpu", "cuda:0")
    active: bool
    camera_topic: str
    frames_received: int
    frame_rate_hz: float
    newest_frame_age_s: float | None  # None: no frame yet
    max_image_age_s: float  # 0: no age check
    queue_waiting: int
    queue_size: int
    results_ok: int
    results_refused: int
    model_errors: int
    last_model_error: str


def health_status(health: Health) -> DiagnosticStatus:
    """One DiagnosticStatus: level and message by the module's rules, every figure as a key-value."""
    if health.last_model_error:
        level, message = DiagnosticStatus.ERROR, f"model error on the latest request: {health.last_model_error}"
    elif not health.active:
        level, message = DiagnosticStatus.OK, "inactive: no model loaded (activate the lifecycle node)"
    elif health.newest_frame_age_s is None:
        level, message = DiagnosticStatus.WARN, f"no camera frame yet on '{health.camera_topic}'"
    elif 0 < health.max_image_age_s < health.newest_frame_age_s:
        level, message = DiagnosticStatus.WARN, (
            f"camera frames stale: the newest is {health.newest_frame_age_s:.1f} s old "
            f"(max_image_age_s {health.max_image_age_s:g})")
    else:
        level, message = DiagnosticStatus.OK, f"active: camera {health.frame_rate_hz:.1f} Hz"
    age = "none" if health.newest_frame_age_s is None else f"{health.newest_frame_age_s:.3f}"
    values = {
        "active": str(health.active).lower(),
        "camera topic": health.camera_topic,
        "camera frames received": str(health.frames_received),
        "camera rate (Hz)": f"{health.frame_rate_hz:.2f}",
        "newest frame age (s)": age,
        "requests waiting": f"{health.queue_waiting}/{health.queue_size}",
        "results ok": str(health.results_ok),
        "results refused": str(health.results_refused),
        "model errors": str(health.model_errors),
    }
    return DiagnosticStatus(level=level, name=health.name, message=message, hardware_id=health.hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])


def diagnostic_array(health: Health, stamp: object) -> DiagnosticArray:
    """The message to publish: the one status, with ``stamp`` (a builtin_interfaces Time) in its header."""
    msg = DiagnosticArray(status=[health_status(health)])
    msg.header.stamp = stamp
    return msg
