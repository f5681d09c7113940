"""The node's health on ``/diagnostics``, the topic robot monitors read (rqt_robot_monitor,
diagnostic_aggregator), as ``diagnostic_updater`` publishers do.

Why: a perception node that silently stops seeing its camera only shows up later, as refusals
(``STATUS_STALE_IMAGE``) or as a robot acting on old frames. Once per ``diagnostics_period_s`` the
node publishes one ``DiagnosticStatus`` for itself (``"<node's full name>: pixellm"``: active or
not, the queue, how requests ended) and one per camera (``"<node's full name>: camera <name>"``:
its topic, how fast frames arrive and how old the newest is).

Levels:
    node    ERROR  the latest request that reached the model failed (``STATUS_MODEL_ERROR``);
                   cleared by the next successful one. Bad input never counts as a model error.
            OK     otherwise, including inactive (a commanded lifecycle state, said in the message).
    camera  WARN   active, but no frame yet, or the newest is older than ``max_image_age_s`` (when
                   that check is on): instructions without an image of their own would be refused.
                   The message says the likely cause when a publisher is still connected (frames
                   too large for the transport) or when none is (wrong topic, camera down).
            OK     otherwise.
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
        self.largest_batch = 0  # the most requests the worker decoded together

    def record_batch(self, size: int) -> None:
        with self._lock:
            self.largest_batch = max(self.largest_batch, size)

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

    def batch_high_water(self) -> int:
        with self._lock:
            return self.largest_batch


@dataclass(frozen=True)
class NodeHealth:
    """What the node knows about itself at one moment."""

    name: str  # the node's fully qualified name, e.g. "/robot1/pixellm"
    hardware_id: str  # the model's device ("cpu", "cuda:0")
    active: bool
    queue_waiting: int
    queue_size: int
    results_ok: int
    results_refused: int
    model_errors: int
    last_model_error: str
    largest_batch: int = 0
    decode_mode: str = ""  # the loaded engine's ("" while no model is loaded)


@dataclass(frozen=True)
class CameraHealth:
    """One camera input at one moment."""

    camera: str
    topic: str  # as subscribed, remappings applied
    active: bool
    frames_received: int
    frame_rate_hz: float
    newest_frame_age_s: float | None  # None: no frame yet
    max_image_age_s: float  # 0: no age check
    hint: str = ""  # the likely cause when frames are missing (CameraInput.transport_hint)


def node_status(health: NodeHealth) -> DiagnosticStatus:
    """The node's DiagnosticStatus by the module's rules, every figure as a key-value."""
    if health.last_model_error:
        level, message = DiagnosticStatus.ERROR, f"model error on the latest request: {health.last_model_error}"
    elif not health.active:
        level, message = DiagnosticStatus.OK, "inactive: no model loaded (activate the lifecycle node)"
    else:
        level, message = DiagnosticStatus.OK, f"active: {health.queue_waiting} of {health.queue_size} waiting"
    values = {
        "active": str(health.active).lower(),
        "requests waiting": f"{health.queue_waiting}/{health.queue_size}",
        "results ok": str(health.results_ok),
        "results refused": str(health.results_refused),
        "model errors": str(health.model_errors),
        "largest batch": str(health.largest_batch),
        "decode mode": health.decode_mode,
    }
    return DiagnosticStatus(level=level, name=f"{health.name}: pixellm", message=message,
                            hardware_id=health.hardware_id, values=_key_values(values))


def camera_status(node_name: str, hardware_id: str, health: CameraHealth) -> DiagnosticStatus:
    """One camera's DiagnosticStatus by the module's rules."""
    if not health.active:
        level, message = DiagnosticStatus.OK, "inactive"
    elif health.newest_frame_age_s is None:
        level, message = DiagnosticStatus.WARN, f"no camera frame yet on '{health.topic}'.{health.hint}"
    elif 0 < health.max_image_age_s < health.newest_frame_age_s:
        level, message = DiagnosticStatus.WARN, (
            f"camera frames stale on '{health.topic}': the newest is {health.newest_frame_age_s:.1f} s old "
            f"(max_image_age_s {health.max_image_age_s:g}).{health.hint}")
    else:
        level, message = DiagnosticStatus.OK, f"camera {health.frame_rate_hz:.1f} Hz"
    age = "none" if health.newest_frame_age_s is None else f"{health.newest_frame_age_s:.3f}"
    values = {
        "camera topic": health.topic,
        "camera frames received": str(health.frames_received),
        "camera rate (Hz)": f"{health.frame_rate_hz:.2f}",
        "newest frame age (s)": age,
    }
    return DiagnosticStatus(level=level, name=f"{node_name}: camera {health.camera}", message=message,
                            hardware_id=hardware_id, values=_key_values(values))


def _key_values(values: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=v) for k, v in values.items()]


def diagnostic_array(node: NodeHealth, cameras: list[CameraHealth], stamp: object) -> DiagnosticArray:
    """The message to publish: the node's status, then one per camera, ``stamp`` in its header."""
    statuses = [node_status(node)] + [camera_status(node.name, node.hardware_id, c) for c in cameras]
    msg = DiagnosticArray(status=statuses)
    msg.header.stamp = stamp
    return msg
