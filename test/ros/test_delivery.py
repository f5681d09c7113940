"""delivery.WriteLog: how long the drain keeps the writers up after the last reply (issue 25's
CI failure: a 39 MB action result and the three written behind it lost together when the node
exited 0.5 s after writing them). Real generated messages, real rclpy serialisation."""

from __future__ import annotations

import time

import numpy as np

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult, SegmentedTarget
from pixellm_ros.ros.delivery import SETTLE_BYTES_PER_S, WriteLog


def result_of(mask_bytes: int) -> SegmentAction.Impl.GetResultService.Response:
    target = SegmentedTarget()
    target.mask.data = np.zeros(mask_bytes, dtype=np.uint8).tobytes()
    return SegmentAction.Impl.GetResultService.Response(
        result=SegmentAction.Result(result=SegmentationResult(targets=[target])))


def test_while_draining_the_replies_size_keeps_the_writers_up() -> None:
    log = WriteLog()
    log.restart_timing()
    log.written(time.monotonic(), result_of(16_000_000))
    left = log.settling_left(0.5)
    # 16 MB at SETTLE_BYTES_PER_S: about 2 s, though the write itself took no time at all
    assert 16e6 / SETTLE_BYTES_PER_S - 0.3 < left <= 16e6 / SETTLE_BYTES_PER_S
    small = WriteLog()
    small.restart_timing()
    small.written(time.monotonic(), result_of(100))
    assert 0.3 < small.settling_left(0.5) <= 0.5  # a small reply: the minimum


def test_before_the_drain_no_reply_is_measured() -> None:
    """Sizes are measured only while draining (a serialisation per reply would cost every answer)."""
    log = WriteLog()
    log.written(time.monotonic() - 0.01, result_of(16_000_000))
    assert log.settling_left(0.0) < 0.05
