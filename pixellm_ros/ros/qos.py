"""Every quality-of-service profile of the package's nodes and clients, in one place.

Camera images (``image_qos``): KEEP_LAST depth 1, best effort (the sensor-data profile) by
default. A best-effort subscription matches both best-effort and reliable camera publishers, so it
works with every camera driver; ``qos.image_reliability: reliable`` is for links where frames must
not be dropped (and then only matches reliable publishers). A depth above 1 only adds latency: the
node answers against the newest frame and ignores the rest.

Requests (``request_qos``): the instruction subscription, the ``~/segment`` service and every
channel of the ``~/segment`` action (goal, result and cancel services, feedback) are reliable
KEEP_LAST with depth ``qos.request_depth``. DDS keeps that many requests per channel until the
executor takes them; anything beyond it would be dropped inside the middleware with no answer, no
log and no count (rclpy's defaults are 10 for services and actions). So ``qos.request_depth`` is
the burst the node promises to receive whole on each channel; what the worker queue cannot hold
is then answered ``STATUS_QUEUE_FULL``. Clients need the same depth on their side (a reliable
KEEP_LAST writer overwrites requests that are not yet acknowledged): ``client_request_qos``, used
by ``pixellm_ros.ros.client``.

Results (``result_qos``): the result and answer topics are reliable KEEP_LAST with the same depth,
so a burst of answers (a flood of queue-full refusals) reaches a subscriber that is slower than
the node; each result is the one answer to one request.

Depth and camera_info (``depth_qos``, ``camera_info_qos``): sensor data like the colour images,
KEEP_LAST 5: the node keeps a few recent depth frames (``depth.cache_size``) to match them to a
colour frame by stamp.

Action status: rclpy's own profile (transient local, depth 1), so a late client sees the state.

Tracks (``tracks_qos``): reliable KEEP_LAST ``TRACKS_DEPTH`` (10): one message per camera frame, a
third of a second of them at 30 Hz for a subscriber that falls behind; reliable, so that the
events (a track ended, and why) that a message carries once reach a subscriber that keeps up.

Debug overlay (``debug_image_qos``): reliable, depth 1 (a viewer only wants the newest picture;
a reliable publisher matches both reliable and best-effort viewers).

Diagnostics (``diagnostics_qos``): what ``diagnostic_updater`` publishes with (reliable, depth 10).

Camera simulator (``camera_publisher_qos``): reliable KEEP_LAST depth 1, which both reliable and
best-effort subscribers accept.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_action_status_default,
    qos_profile_sensor_data,
)

RELIABILITY_CHOICES: dict[str, ReliabilityPolicy] = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
}
DIAGNOSTICS_DEPTH = 10
DEPTH_DEPTH = 5
TRACKS_DEPTH = 10


def _reliable(depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, int(depth)),
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def image_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """The camera subscription's profile: sensor data with the given reliability and depth >= 1."""
    if reliability not in RELIABILITY_CHOICES:
        raise ValueError(f"unknown reliability '{reliability}'; use one of {', '.join(RELIABILITY_CHOICES)}")
    if depth < 1:
        raise ValueError(f"image queue depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=RELIABILITY_CHOICES[reliability],
        durability=qos_profile_sensor_data.durability,
    )


def depth_qos(reliability: str = "best_effort") -> QoSProfile:
    """Aligned depth images: as the camera's colour images, a few deep (the cache matches them by stamp)."""
    return image_qos(reliability, DEPTH_DEPTH)


def camera_info_qos() -> QoSProfile:
    """camera_info: sensor data, best effort (matches reliable drivers too), the newest few."""
    return image_qos("best_effort", DEPTH_DEPTH)


def request_qos(depth: int) -> QoSProfile:
    """Instruction topic, ``~/segment`` service and action channels: a burst of ``depth`` arrives whole."""
    return _reliable(depth)


def result_qos(depth: int) -> QoSProfile:
    """Result and answer topics: every message is an answer somebody waits for."""
    return _reliable(depth)


def tracks_qos() -> QoSProfile:
    """``~/tracks``: every tracked camera frame, reliable (its events are said once), a few deep."""
    return _reliable(TRACKS_DEPTH)


def action_status_qos() -> QoSProfile:
    """The action's status topic: rclpy's default (transient local, depth 1)."""
    return qos_profile_action_status_default


def debug_image_qos() -> QoSProfile:
    """The overlay image: newest only; reliable so that every kind of viewer matches it."""
    return _reliable(1)


def diagnostics_qos() -> QoSProfile:
    """``/diagnostics``, as diagnostic_updater publishes it."""
    return _reliable(DIAGNOSTICS_DEPTH)


def camera_publisher_qos() -> QoSProfile:
    """camera_sim's image publisher: reliable depth 1, matched by reliable and best-effort readers."""
    return _reliable(1)


def client_request_qos(depth: int) -> QoSProfile:
    """A client's side of the request channels: deep enough that its own burst is not overwritten."""
    return _reliable(depth)
