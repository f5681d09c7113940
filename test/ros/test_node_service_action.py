"""pixellm_node over real DDS through its service, its action and its lifecycle services.

The node (its own process, through the runner) serves a tiny model that keeps answering until
max_new_tokens, so an action goal runs long enough to be cancelled half-way. Masks are cropped
to their boxes here (output.mask_format: cropped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from lifecycle_msgs.msg import State, Transition
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult, SegmentedTarget
from pixellm_ros.ros.conversions import mask_from_msg
from support.dds import NodeRig, RosClient, ask_on_frame, compressed_png_msg, node_rig, rgb_image_msg, wait_until
from support.engine import reference_engine, rgb_image

NODE = "pixellm_srv"
HEIGHT, WIDTH = 36, 52  # the images of this module
MAX_NEW_TOKENS = 200


@dataclass
class ServiceRig(NodeRig):
    compressed_pub: object


@pytest.fixture(scope="module")
def rig(client: RosClient, domain_id: int, loop_model_dir: Path, tmp_path_factory) -> Iterator[ServiceRig]:
    compressed_pub = client.publisher(CompressedImage, f"/{NODE}/camera/compressed", depth=1)
    with node_rig(ServiceRig, client, domain_id, NODE, {
        "model.path": str(loop_model_dir), "model.device": "cpu", "generation.max_new_tokens": MAX_NEW_TOKENS,
        "queue_size": 2, "max_image_age_s": 5.0, "output.mask_format": "cropped",
        "topics.compressed_image": f"/{NODE}/camera/compressed",
    }, tmp_path_factory.mktemp("node_logs"), compressed_pub=compressed_pub) as started:
        yield started


@pytest.fixture(scope="module")
def engine(loop_model_dir: Path, single_thread_torch):
    return reference_engine(loop_model_dir)


def old_header(frame_id: str) -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 42, 7  # decades old: a given image is never refused for age
    return header


def given_image(rgb: np.ndarray, frame_id: str) -> Image:
    return rgb_image_msg(rgb, old_header(frame_id).stamp, frame_id)


def publish_compressed(rig: ServiceRig, frame: CompressedImage) -> Header:
    rig.compressed_pub.publish(frame)
    return frame.header


def assert_matches_engine(result: SegmentationResult, expected, width: int, height: int) -> None:
    assert result.status == SegmentationResult.STATUS_OK, result.error
    assert result.answer == expected.text
    assert (result.image_width, result.image_height) == (width, height)
    assert len(result.targets) == len(expected.targets) > 0
    for got, want in zip(result.targets, expected.targets):
        assert got.mask_format == SegmentedTarget.MASK_CROPPED
        x0, y0, x1, y1 = want.box
        assert (got.box.x_offset, got.box.y_offset, got.box.width, got.box.height) == (x0, y0, x1 - x0, y1 - y0)
        assert (got.mask.width, got.mask.height) == (x1 - x0, y1 - y0)  # the mask covers the box only
        np.testing.assert_array_equal(mask_from_msg(got, (width, height)), want.mask)


def run_goal(rig: ServiceRig, goal: SegmentAction.Goal, cancel_after_feedback: int | None = None):
    """Send a goal; optionally cancel it after that many feedback messages. Returns (status, result, feedback)."""
    feedback: list[SegmentAction.Feedback] = []
    send = rig.client.send_goal(NODE, goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert wait_until(send.done, 30)
    handle = send.result()
    assert handle.accepted
    if cancel_after_feedback is not None:
        assert wait_until(lambda: len(feedback) >= cancel_after_feedback, 30), rig.node.log_tail()
        cancel = handle.cancel_goal_async()
        assert wait_until(cancel.done, 30)
    result_future = handle.get_result_async()
    assert wait_until(result_future.done, 60), rig.node.log_tail()
    wrapped = result_future.result()
    return wrapped.status, wrapped.result.result, feedback


def test_service_without_image_before_any_frame(rig: ServiceRig) -> None:
    result = rig.client.segment_service(NODE, None, "segment the red cup", request_id="no-frame")
    assert result.status == SegmentationResult.STATUS_NO_IMAGE
    assert result.request_id == "no-frame"


def test_service_with_its_own_image_matches_the_engine(rig: ServiceRig, engine) -> None:
    rgb = rgb_image(HEIGHT, WIDTH, seed=10)
    image = given_image(rgb, "camera_left")
    result = rig.client.segment_service(NODE, image, "segment the red cup", request_id="srv-own-image")
    expected = engine.segment(rgb, "segment the red cup", max_new_tokens=MAX_NEW_TOKENS)
    assert result.request_id == "srv-own-image"
    assert result.header == image.header
    assert result.generated_tokens == expected.generated_tokens == MAX_NEW_TOKENS
    assert_matches_engine(result, expected, 52, 36)
    # every request, whatever its channel, is also published on the result topic (exactly once)
    assert wait_until(lambda: rig.results.by_id("srv-own-image"), 10)
    time.sleep(0.3)
    (published,) = rig.results.by_id("srv-own-image")
    assert published.answer == result.answer and published.header == result.header


def test_service_with_empty_image_uses_the_newest_frame(rig: ServiceRig) -> None:
    def send(attempt: int) -> Header:
        frame = rgb_image_msg(rgb_image(HEIGHT, WIDTH, seed=11), rig.client.now(), f"camera_newest_{attempt}")
        rig.image_pub.publish(frame)
        return frame.header

    result = ask_on_frame(send, lambda: rig.client.segment_service(NODE, None, "segment the red cup on the newest frame"))
    assert result.status == SegmentationResult.STATUS_OK, result.error
    assert result.request_id.startswith(f"{NODE}-")  # assigned by the node


def test_service_refuses_a_bad_given_image_at_once(rig: ServiceRig) -> None:
    image = given_image(rgb_image(HEIGHT, WIDTH, seed=12), "camera_depth")
    image.encoding = "16UC1"
    result = rig.client.segment_service(NODE, image, "segment the red cup", request_id="bad-given")
    assert result.status == SegmentationResult.STATUS_INVALID_IMAGE
    assert "the request's image" in result.error and "16UC1" in result.error


def test_action_streams_the_answer_as_feedback(rig: ServiceRig, engine) -> None:
    rgb = rgb_image(HEIGHT, WIDTH, seed=13)
    goal = SegmentAction.Goal(image=given_image(rgb, "camera_action"), instruction="find the cups",
                              request_id="goal-stream")
    status, result, feedback = run_goal(rig, goal)
    expected = engine.segment(rgb, "find the cups", max_new_tokens=MAX_NEW_TOKENS)
    assert status == GoalStatus.STATUS_SUCCEEDED
    assert result.request_id == "goal-stream"
    assert_matches_engine(result, expected, 52, 36)
    assert len(feedback) >= 10
    assert "".join(fb.delta for fb in feedback) == result.answer
    assert feedback[-1].partial_answer == result.answer
    tokens = [fb.generated_tokens for fb in feedback]
    assert tokens == sorted(tokens) and 0 < tokens[-1] <= result.generated_tokens
    for before, after in zip(feedback, feedback[1:]):
        assert after.partial_answer == before.partial_answer + after.delta


def test_a_program_with_its_own_node_asks_through_the_client_library(rig: ServiceRig, domain_id: int,
                                                                    engine) -> None:
    """PixelLMClient(ros_node=...) in a robot program of its own (a process with rclpy's default
    context, as a user's is): from a MultiThreadedExecutor callback that blocks in ``segment`` (the
    action, text streamed) and from a SingleThreadedExecutor callback through ``request`` and
    ``add_done_callback`` (the service); ``close`` takes back only what the client put on the node."""
    app = Path(__file__).parents[1] / "support" / "own_node_app.py"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(app), NODE, "21", "find the cups"], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    expected = engine.segment(rgb_image(HEIGHT, WIDTH, seed=21), "find the cups", max_new_tokens=MAX_NEW_TOKENS)
    for channel in ("action", "service"):
        answer = report[channel]
        assert "exception" not in answer, answer
        assert answer["status"] == SegmentationResult.STATUS_OK, answer["error"]
        assert answer["answer"] == expected.text and answer["targets"] == len(expected.targets) > 0
        assert (answer["frame_id"], answer["width"], answer["height"]) == ("pixellm_client", 52, 36)
    assert len(report["pieces"]) >= 10 and "".join(report["pieces"]) == expected.text
    assert report["same_node"]
    # the service and lifecycle clients, the action client (a waitable), the goal outbox; all gone after close
    assert report["with_client"]["clients"] == report["before"]["clients"] + 2
    assert report["with_client"]["waitables"] == report["before"]["waitables"] + 1
    assert report["with_client"]["guards"] == report["before"]["guards"] + 1  # its goal outbox
    assert report["after_close"] == report["before"]


def test_the_callers_raising_callbacks_stop_only_themselves(rig: ServiceRig, capfd) -> None:
    """on_text and done callbacks run on the client's spin thread: one that raises is reported, gets
    no more text, and the client still delivers this result and every later one."""
    pixellm = rig.client.pixellm(NODE)
    image = given_image(rgb_image(HEIGHT, WIDTH, seed=22), "cam_raising")
    pieces: list[str] = []

    def on_text(delta: str) -> None:
        pieces.append(delta)
        if len(pieces) == 2:
            raise RuntimeError("the caller's own bug")

    result = pixellm.segment("find the cups", image, on_text=on_text, timeout=60)
    assert result.status == SegmentationResult.STATUS_OK and len(result.answer) > len("".join(pieces))
    assert len(pieces) == 2  # nothing more after the exception
    pending = pixellm.request("find the cups", image, channel="service")
    pending.add_done_callback(lambda _: 1 / 0)
    assert pending.result(60).answer == result.answer
    again = pixellm.segment("find the cups", image, timeout=60)
    assert again.status == SegmentationResult.STATUS_OK and again.answer == result.answer
    err = capfd.readouterr().err
    assert "on_text raised" in err and "RuntimeError: the caller's own bug" in err
    assert "a done callback raised" in err and "ZeroDivisionError" in err


def test_action_cancel_stops_generation(rig: ServiceRig) -> None:
    goal = SegmentAction.Goal(image=given_image(rgb_image(HEIGHT, WIDTH, seed=14), "camera_cancel"),
                              instruction="find all the cups", request_id="goal-cancel")
    status, result, feedback = run_goal(rig, goal, cancel_after_feedback=2)
    assert status == GoalStatus.STATUS_CANCELED
    assert result.status == SegmentationResult.STATUS_CANCELLED
    assert result.request_id == "goal-cancel" and not result.targets
    assert result.generated_tokens < MAX_NEW_TOKENS  # stopped before the end
    assert wait_until(lambda: rig.results.by_id("goal-cancel"), 10)


def test_action_cancelled_while_waiting_in_the_queue(rig: ServiceRig) -> None:
    first_feedback: list[object] = []
    first = rig.client.send_goal(NODE, SegmentAction.Goal(image=given_image(rgb_image(HEIGHT, WIDTH, seed=15), "cam"),
                                                            instruction="long one", request_id="goal-first"),
                                 feedback_callback=first_feedback.append)
    assert wait_until(first.done, 30) and wait_until(lambda: first_feedback, 30)  # the first one is running
    second = rig.client.send_goal(NODE, SegmentAction.Goal(image=given_image(rgb_image(HEIGHT, WIDTH, seed=16), "cam"),
                                                             instruction="waiting one", request_id="goal-second"))
    assert wait_until(second.done, 30)
    cancel = second.result().cancel_goal_async()
    assert wait_until(cancel.done, 30)
    first_result = first.result().get_result_async()
    second_result = second.result().get_result_async()
    assert wait_until(lambda: first_result.done() and second_result.done(), 60)
    assert first_result.result().status == GoalStatus.STATUS_SUCCEEDED
    assert second_result.result().status == GoalStatus.STATUS_CANCELED
    waiting = second_result.result().result.result
    assert waiting.status == SegmentationResult.STATUS_CANCELLED
    assert "before it started" in waiting.error and waiting.generated_tokens == 0


def test_topic_callbacks_stay_responsive_while_the_model_runs(rig: ServiceRig) -> None:
    """With the worker busy on a long goal and queue_size 2, a third instruction is refused at once:
    its refusal arrives while the goal still runs, so the executor was never blocked by inference."""
    publisher = rig.client.publisher(String, f"/{NODE}/instruction", depth=10)
    assert wait_until(lambda: publisher.get_subscription_count() > 0, 20)
    feedback: list[object] = []
    send = rig.client.send_goal(NODE, SegmentAction.Goal(image=given_image(rgb_image(HEIGHT, WIDTH, seed=21), "cam"),
                                                           instruction="long", request_id="goal-busy"),
                                feedback_callback=feedback.append)
    assert wait_until(send.done, 30) and wait_until(lambda: feedback, 30)
    running = send.result().get_result_async()
    texts = [f"while busy {i}" for i in range(3)]
    for text in texts:
        publisher.publish(String(data=text))
    assert wait_until(lambda: rig.results.where(lambda m: m.status == SegmentationResult.STATUS_QUEUE_FULL
                                                and m.instruction in texts), 10)
    assert not running.done(), "the refusal should come while the model is still busy"
    assert wait_until(running.done, 30)
    assert wait_until(lambda: len(rig.results.where(lambda m: m.instruction in texts)) == 3, 30)


def test_deactivate_frees_the_model_and_activate_reloads_it(rig: ServiceRig, engine) -> None:
    client = rig.client
    # A goal running when the node is deactivated is stopped and answered NOT_READY.
    feedback: list[object] = []
    send = client.send_goal(NODE, SegmentAction.Goal(image=given_image(rgb_image(HEIGHT, WIDTH, seed=17), "cam"),
                                                       instruction="running", request_id="goal-deactivated"),
                            feedback_callback=feedback.append)
    assert wait_until(send.done, 30) and wait_until(lambda: feedback, 30)
    assert client.change_state(NODE, Transition.TRANSITION_DEACTIVATE)
    running = send.result().get_result_async()
    assert wait_until(running.done, 30)
    assert running.result().status == GoalStatus.STATUS_ABORTED
    assert running.result().result.result.status == SegmentationResult.STATUS_NOT_READY
    assert client.lifecycle_state(NODE) == State.PRIMARY_STATE_INACTIVE
    assert wait_until(lambda: "model released" in rig.node.log_tail(20), 5)

    refused = client.segment_service(NODE, given_image(rgb_image(HEIGHT, WIDTH, seed=18), "cam"), "while inactive",
                                     request_id="inactive")
    assert refused.status == SegmentationResult.STATUS_NOT_READY and "not active" in refused.error

    assert client.change_state(NODE, Transition.TRANSITION_ACTIVATE)
    assert client.lifecycle_state(NODE) == State.PRIMARY_STATE_ACTIVE
    rgb = rgb_image(HEIGHT, WIDTH, seed=19)
    result = client.segment_service(NODE, given_image(rgb, "cam"), "segment the red cup", request_id="reactivated")
    assert_matches_engine(result, engine.segment(rgb, "segment the red cup", max_new_tokens=MAX_NEW_TOKENS), 52, 36)


def test_a_bad_device_is_refused_then_compressed_images_work(rig: ServiceRig, engine) -> None:
    client = rig.client
    assert client.change_state(NODE, Transition.TRANSITION_DEACTIVATE)
    assert client.change_state(NODE, Transition.TRANSITION_CLEANUP)
    assert client.lifecycle_state(NODE) == State.PRIMARY_STATE_UNCONFIGURED

    [refused] = client.set_parameters_results(NODE, {"model.device": "quantum"})
    assert not refused.successful and "'model.device'" in refused.reason and "quantum" in refused.reason

    results = client.set_parameters_results(NODE, {"model.device": "cpu", "topics.use_compressed": True})
    assert [r.successful for r in results] == [True, True]
    # rclpy drops the reason of an accepted value; the node logs when it applies (also on /rosout)
    assert wait_until(lambda: "'model.device' applies at the next activate" in rig.node.log_tail(20)
                      and "'topics.use_compressed' applies at the next configure" in rig.node.log_tail(20), 5)
    assert client.change_state(NODE, Transition.TRANSITION_CONFIGURE)
    assert client.change_state(NODE, Transition.TRANSITION_ACTIVATE)
    assert wait_until(lambda: rig.compressed_pub.get_subscription_count() > 0, 20)

    rgb = rgb_image(HEIGHT, WIDTH, seed=20)
    result = ask_on_frame(lambda attempt: publish_compressed(rig, compressed_png_msg(rgb, client.now(),
                                                                                   f"camera_png_{attempt}")),
                          lambda: client.segment_service(NODE, None, "segment the red cup in the png"))
    # PNG is lossless: the node decoded exactly the image the engine sees here
    assert_matches_engine(result, engine.segment(rgb, "segment the red cup in the png",
                                                 max_new_tokens=MAX_NEW_TOKENS), 52, 36)

    result = ask_on_frame(lambda attempt: publish_compressed(rig, CompressedImage(
                              header=Header(stamp=client.now(), frame_id=f"garbage_{attempt}"), format="jpeg",
                              data=b"not a jpeg at all")),
                          lambda: client.segment_service(NODE, None, "segment the red cup in garbage"))
    assert result.status == SegmentationResult.STATUS_INVALID_IMAGE and "not an image file" in result.error
