"""The generated interfaces cross real DDS between two processes, intact.

The peer (test/support/interface_peer.py) runs in its own process; this process is the other side.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult, SegmentedTarget
from pixellm_ros.srv import Segment as SegmentService

from pixellm_ros.ros.client import DISCOVERY_SETTLE_S
from support import interface_peer
from support.interface_peer import checker_mask

PEER = Path(interface_peer.__file__)

DOMAIN_ID = 150 + os.getpid() % 60


@pytest.fixture(scope="module")
def ros():
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("interface_test_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def start_peer(mode: str) -> subprocess.Popen:
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID))
    return subprocess.Popen([sys.executable, str(PEER), mode], env=env)


def stop_peer(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def action_peer(ros):
    """One action server process for the action tests: a second server under the same name, started
    right after the first one stopped, can leave the client talking to the stale one."""
    node, executor = ros
    peer = start_peer("action")
    client = ActionClient(node, SegmentAction, "peer/segment_action")
    try:
        assert spin_until(executor, client.server_is_ready, timeout=30), "action server never appeared"
        # The server matches its responses' path a moment after the client sees it (Fast DDS drops a
        # response sent before: "failed to send response (timeout)"); the client library waits too.
        spin_until(executor, lambda: False, timeout=DISCOVERY_SETTLE_S)
        yield client
    finally:
        stop_peer(peer)


def spin_until(executor, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.1)
    return predicate()


def assert_checker_mask(target: SegmentedTarget, width: int, height: int) -> None:
    mask = target.mask
    assert (mask.width, mask.height, mask.encoding, mask.step) == (width, height, "mono8", width)
    pixels = np.frombuffer(bytes(mask.data), dtype=np.uint8).reshape(height, width)
    np.testing.assert_array_equal(pixels, checker_mask(width, height))
    assert target.area == int(np.count_nonzero(pixels))


def test_result_with_full_hd_mask_crosses_dds(ros):
    node, executor = ros
    received: list[SegmentationResult] = []
    node.create_subscription(SegmentationResult, "peer/result", received.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    peer = start_peer("publish")
    try:
        assert spin_until(executor, lambda: received, timeout=30), "no result arrived over DDS"
    finally:
        stop_peer(peer)
    msg = received[0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1234, 5678, "camera_optical")
    assert msg.instruction == "publish test" and msg.answer == "echo: publish test"
    assert (msg.image_width, msg.image_height) == (1920, 1080)
    assert msg.status == SegmentationResult.STATUS_OK and list(msg.warnings) == ["a warning"]
    assert (msg.vision_ms, msg.generation_ms, msg.decoding_ms, msg.total_ms) == (1.5, 2.5, 3.5, 7.5)
    assert msg.generated_tokens == 11
    (target,) = msg.targets
    assert target.name == "target of 'publish test'" and target.score == 0.875
    assert target.mask_format == SegmentedTarget.MASK_FULL
    assert (target.box.x_offset, target.box.y_offset, target.box.width, target.box.height) == (1, 2, 1919, 1078)
    assert_checker_mask(target, 1920, 1080)


def test_service_round_trip_between_processes(ros):
    node, executor = ros
    client = node.create_client(SegmentService, "peer/segment")
    peer = start_peer("service")
    try:
        assert spin_until(executor, client.service_is_ready, timeout=30), "service never appeared"
        request = SegmentService.Request(instruction="segment the red mug", request_id="req-7")
        request.image = Image(header=Header(frame_id="cam"), height=48, width=64, encoding="rgb8",
                              step=64 * 3, data=bytes(64 * 48 * 3))
        request.image.header.stamp.sec = 99
        # service_is_ready only sees the request topic matched: Fast DDS drops a response sent before
        # the reply topic has matched too ("failed to send response (timeout)" from the peer, seen
        # on a loaded machine), so a lost answer is asked for again; the echo peer is idempotent.
        for _attempt in range(6):
            future = client.call_async(request)
            if spin_until(executor, future.done, timeout=5):
                break
            client.remove_pending_request(future)
        assert future.done(), "no service response in 6 tries"
    finally:
        stop_peer(peer)
    result = future.result().result
    assert result.request_id == "req-7" and result.instruction == "segment the red mug"
    assert result.header.frame_id == "cam" and result.header.stamp.sec == 99
    assert_checker_mask(result.targets[0], 64, 48)


def test_action_streams_feedback_and_returns_result(ros, action_peer):
    _node, executor = ros
    feedback: list[SegmentAction.Feedback] = []
    goal = SegmentAction.Goal(instruction="the apple and the banana")
    goal.image = Image(height=10, width=20, encoding="rgb8", step=60, data=bytes(600))
    send = action_peer.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert spin_until(executor, send.done, timeout=30)
    handle = send.result()
    assert handle.accepted
    result_future = handle.get_result_async()
    assert spin_until(executor, result_future.done, timeout=30)
    result = result_future.result().result.result
    assert result.answer == "the apple and the banana"
    assert [fb.delta for fb in feedback] == ["the", " apple", " and", " the", " banana"]
    assert feedback[-1].partial_answer == result.answer and feedback[-1].generated_tokens == 5
    assert_checker_mask(result.targets[0], 20, 10)


def test_action_cancel_is_honoured(ros, action_peer):
    _node, executor = ros
    feedback: list[SegmentAction.Feedback] = []
    goal = SegmentAction.Goal(instruction=" ".join(f"w{i}" for i in range(200)))
    send = action_peer.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert spin_until(executor, send.done, timeout=30)
    handle = send.result()
    assert spin_until(executor, lambda: len(feedback) >= 2, timeout=30)
    cancel = handle.cancel_goal_async()
    assert spin_until(executor, cancel.done, timeout=30)
    result_future = handle.get_result_async()
    assert spin_until(executor, result_future.done, timeout=30)
    wrapped = result_future.result()
    assert wrapped.status == 5  # action_msgs/GoalStatus.STATUS_CANCELED
    assert wrapped.result.result.status == SegmentationResult.STATUS_CANCELLED
    assert len(feedback) < 200
