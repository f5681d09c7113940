"""Quality-of-service profiles of the node's topics.

Images: KEEP_LAST with depth 1 and the sensor-data profile (best effort, volatile) by default.
A best-effort subscription matches both best-effort and reliable camera publishers, so it is
the setting that works with every camera driver; ``qos.image_reliability: reliable`` is for
links where frames must not be dropped (and then only matches reliable publishers). A depth
above 1 only adds latency here: the node answers against the newest frame and ignores the rest.

Results and answers: reliable, KEEP_LAST, volatile, depth ``qos.result_depth``. Each result is
the one answer to one request, so the history is deeper than the default 10 to ride out bursts
(e.g. a flood of queue-full refusals) without dropping answers to a slow subscriber.

Debug overlay: reliable, depth 1 (a viewer only wants the newest picture; a reliable publisher
matches both reliable and best-effort viewers).
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

RELIABILITY_CHOICES: dict[str, ReliabilityPolicy] = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
}


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


def result_qos(depth: int = 50) -> QoSProfile:
    """Result and answer topics: every message is an answer somebody waits for."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max(1, depth),
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def debug_image_qos() -> QoSProfile:
    """The overlay image: newest only; reliable so that every kind of viewer matches it."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def instruction_qos() -> QoSProfile:
    """Instructions: reliable, deep enough that a burst of them reaches the queue policy intact."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=100,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
