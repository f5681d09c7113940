"""The tracking desk in this process (a real rclpy node on a domain of its own, the real tracker): the
frame a tracked request was asked on is kept when the tracking thread falls behind."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.context import Context

from pixellm_ros.engine.result import SegmentationResult, Target
from pixellm_ros.msg import SegmentationResult as ResultMsg
from pixellm_ros.msg import SegmentedTarget
from pixellm_ros.ros import params as P
from pixellm_ros.ros.request_flow import RequestFlow, RunOutcome
from pixellm_ros.ros.requests import CameraInput, LatestFrame, SegmentRequest
from pixellm_ros.ros.tracking_desk import INBOX_FRAMES, TrackingDesk
from support.dds import rgb_image_msg

HEIGHT, WIDTH = 96, 128
FRAME_PERIOD_NS = 100_000_000  # 10 Hz


@pytest.fixture
def node(lone_domain_id: int) -> Iterator[Any]:
    context = Context()
    rclpy.init(context=context, domain_id=lone_domain_id)
    ros_node = rclpy.create_node("tracking_desk_test", context=context)
    yield ros_node
    ros_node.destroy_node()
    rclpy.try_shutdown(context=context)


def frame(index: int) -> Any:
    """Frame ``index`` of a still scene (a bright square on a textured table), stamped at 10 Hz."""
    rgb = np.random.default_rng(0).integers(40, 90, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[30:60, 40:70] = (220, 40, 40)
    stamp = index * FRAME_PERIOD_NS
    return rgb_image_msg(rgb, TimeMsg(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), "cam")


def answer_about_the_square() -> RunOutcome:
    """What the worker has after the model answered "the red square" (one target) on a frame."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[30:60, 40:70] = True
    msg = ResultMsg(status=ResultMsg.STATUS_OK, targets=[SegmentedTarget(name="red square")])
    result = SegmentationResult(text="The red square.", targets=[Target("red square", mask, (40, 30, 70, 60), 0.9)],
                                image_hw=(HEIGHT, WIDTH))
    return RunOutcome(msg, result)


def test_the_frame_a_tracked_request_was_asked_on_is_kept_when_tracking_falls_behind(node: Any) -> None:
    settings = P.settings_from_values(P.DEFAULTS)
    camera = CameraInput("default", LatestFrame(), "/cam/image_raw", lambda: 1)
    desk = TrackingDesk(node, lambda: settings)
    desk.create(settings, {"default": camera}, None, None)
    flow = RequestFlow(lambda _header: 0.0)
    try:
        on_frame = desk.frame_hook("default", camera.frames.put)
        on_frame(frame(0))
        asked = [SegmentRequest(f"r-{i}", "segment the red square", "service", camera="default", track=True)
                 for i in range(2)]
        desk.prepare(asked[0])  # a new tracker, seeded with frame 0
        desk.prepare(asked[1])  # the same instruction: the same tracker
        tracker = desk._cameras["default"].trackers["segment the red square"]
        images = []
        with tracker.lock:  # the tracking thread is held in a step, as on a loaded machine
            for index, request in enumerate(asked, start=1):
                on_frame(frame(index))
                images.append(flow.bind(request, settings, {"default": camera}))
                if request is asked[0]:
                    desk.bound(request, images[-1])  # the worker's hook; asked[1] goes without it
            for index in range(3, 3 + 3 * INBOX_FRAMES):  # the camera goes on
                on_frame(frame(index))
        answers = [answer_about_the_square() for _ in asked]
        tracked = [desk.on_result(request, image, outcome) for request, image, outcome in zip(asked, images, answers)]
        first, second = (outcome.msg for outcome in answers)
        # the kept frame: stepped by the tracker, so its answer is tracked
        assert tracked[0] and first.targets[0].track_id > 0, first.warnings
        assert not [w for w in first.warnings if w.startswith("not tracked")]
        # without the hook the frame was skipped like the others, and the answer says why it is not tracked
        assert second.targets[0].track_id == 0
        assert any("is not among the tracker's last" in w for w in second.warnings), second.warnings
    finally:
        desk.end_all("test over")
        desk.destroy()
