"""A second process for the interface tests: publishes, serves and acts with the generated types.

Run as `python interface_peer.py publish|service|action`. It builds its replies only from what it
receives, so a test on the other side checks that every field crossed DDS intact.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult, SegmentedTarget
from pixellm_ros.srv import Segment as SegmentService


def checker_mask(width: int, height: int) -> np.ndarray:
    """A 0/255 pattern every pixel of which depends on its position: (x // 7 + y // 5) odd."""
    ys, xs = np.mgrid[0:height, 0:width]
    return (((xs // 7 + ys // 5) % 2) * 255).astype(np.uint8)


def make_result(header: Header, instruction: str, width: int, height: int) -> SegmentationResult:
    mask = checker_mask(width, height)
    target = SegmentedTarget(
        name=f"target of '{instruction}'",
        index=0,
        score=0.875,
        box=RegionOfInterest(x_offset=1, y_offset=2, width=width - 1, height=height - 2),
        area=int(np.count_nonzero(mask)),
        mask_format=SegmentedTarget.MASK_FULL,
        mask=Image(header=header, height=height, width=width, encoding="mono8", is_bigendian=0,
                   step=width, data=mask.tobytes()),
    )
    return SegmentationResult(
        header=header, request_id="peer-1", instruction=instruction, answer=f"echo: {instruction}",
        targets=[target], image_width=width, image_height=height, status=SegmentationResult.STATUS_OK,
        warnings=["a warning"], vision_ms=1.5, generation_ms=2.5, decoding_ms=3.5, total_ms=7.5,
        generated_tokens=11,
    )


def run_publisher(node: Node) -> None:
    pub = node.create_publisher(SegmentationResult, "peer/result", 10)
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 1234, 5678
    msg = make_result(header, "publish test", 1920, 1080)
    # Publish until the test has seen a message and says so by closing stdin.
    deadline = time.monotonic() + 60.0
    while rclpy.ok() and time.monotonic() < deadline:
        if pub.get_subscription_count() > 0:
            pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.2)


def run_service(node: Node) -> None:
    def handle(request: SegmentService.Request, response: SegmentService.Response):
        response.result = make_result(request.image.header, request.instruction,
                                      request.image.width, request.image.height)
        response.result.request_id = request.request_id
        return response

    node.create_service(SegmentService, "peer/segment", handle)
    rclpy.spin(node)


def run_action(node: Node) -> None:
    def execute(goal_handle):
        words = goal_handle.request.instruction.split()
        text = ""
        for i, word in enumerate(words):
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result = SegmentAction.Result()
                result.result.status = SegmentationResult.STATUS_CANCELLED
                result.result.error = "cancelled"
                return result
            delta = ("" if i == 0 else " ") + word
            text += delta
            goal_handle.publish_feedback(
                SegmentAction.Feedback(partial_answer=text, delta=delta, generated_tokens=i + 1))
            time.sleep(0.05)
        goal_handle.succeed()
        image = goal_handle.request.image
        result = SegmentAction.Result()
        result.result = make_result(image.header, goal_handle.request.instruction, image.width, image.height)
        result.result.answer = text
        return result

    ActionServer(node, SegmentAction, "peer/segment_action", execute_callback=execute,
                 goal_callback=lambda _goal: GoalResponse.ACCEPT,
                 cancel_callback=lambda _goal: CancelResponse.ACCEPT)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.spin()


def main() -> None:
    mode = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node(f"interface_peer_{mode}")
    try:
        {"publish": run_publisher, "service": run_service, "action": run_action}[mode](node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
