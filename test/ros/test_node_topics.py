"""pixellm_node over real DDS, through its topics: camera images and instructions in, results out.

The node runs in its own process (started through the runner with config/pixellm.yaml), on a
tiny model folder written by the test; this process is the client. Answers are compared with the
engine run here on the same model folder and the same image.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.duration import Duration
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from pixellm_ros.msg import SegmentationResult, SegmentedTarget
from pixellm_ros.ros.conversions import mask_from_msg
from support.dds import NodeRig, RosClient, ask_on_frame, node_rig, rgb_image_msg, wait_until
from support.engine import reference_engine, rgb_image

NODE = "pixellm_topics"
HEIGHT, WIDTH = 48, 64  # the images of this module
QUEUE_SIZE = 4
MAX_AGE_S = 5.0
_counter = itertools.count()


@dataclass
class TopicRig(NodeRig):
    answers: list[String]
    instruction_pub: object


@pytest.fixture(scope="module")
def rig(client: RosClient, domain_id: int, chain_model_dir: Path, tmp_path_factory) -> Iterator[TopicRig]:
    answers = client.collect(String, f"/{NODE}/answer")
    instruction_pub = client.publisher(String, f"/{NODE}/instruction", depth=100)
    with node_rig(TopicRig, client, domain_id, NODE, {
        "model.path": str(chain_model_dir), "model.device": "cpu", "queue_size": QUEUE_SIZE,
        "max_image_age_s": MAX_AGE_S, "output.mask_format": "full",
    }, tmp_path_factory.mktemp("node_logs"), tail=60,
            ready=lambda: instruction_pub.get_subscription_count() > 0
            and client.node.count_publishers(f"/{NODE}/result") > 0,
            answers=answers, instruction_pub=instruction_pub) as started:
        yield started


@pytest.fixture(scope="module")
def engine(chain_model_dir: Path, single_thread_torch):
    return reference_engine(chain_model_dir)


def fresh_stamp(rig: TopicRig, age_s: float = 0.0) -> TimeMsg:
    """The client clock's now, minus age_s."""
    return (rig.client.node.get_clock().now() - Duration(nanoseconds=int(age_s * 1e9))).to_msg()


def instruct(rig: TopicRig, text: str, timeout: float = 30.0) -> SegmentationResult:
    """Publish one instruction (text must be unique) and return its one result."""
    rig.instruction_pub.publish(String(data=text))
    assert wait_until(lambda: rig.results.where(lambda m: m.instruction == text.strip()), timeout), \
        f"no result for {text!r}; node log:\n{rig.node.log_tail()}"
    (result,) = rig.results.where(lambda m: m.instruction == text.strip())
    return result


def ask_about(rig: TopicRig, frame: Image, text: str) -> SegmentationResult:
    """Publish a frame, then an instruction, until the answer is about that frame.

    Images and instructions travel on different topics, so the instruction may overtake the
    frame (or a best-effort frame be dropped); the result's header tells which frame was used.
    """
    def send(_attempt: int) -> Header:
        rig.image_pub.publish(frame)
        return frame.header

    return ask_on_frame(send, lambda: instruct(rig, f"{text} #{next(_counter)}"))


def test_instruction_before_any_image_is_refused(rig: TopicRig) -> None:
    result = instruct(rig, "segment the red cup (no image yet)")
    assert result.status == SegmentationResult.STATUS_NO_IMAGE
    assert "no camera image" in result.error and not result.targets
    assert result.request_id.startswith(f"{NODE}-")


def test_result_matches_the_engine_on_the_same_image(rig: TopicRig, engine) -> None:
    rgb = rgb_image(HEIGHT, WIDTH, seed=1)
    frame = rgb_image_msg(rgb, fresh_stamp(rig), "camera_optical")
    result = ask_about(rig, frame, "segment the red cup")
    expected = engine.segment(rgb, "segment the red cup")

    assert result.status == SegmentationResult.STATUS_OK, result.error
    assert result.header == frame.header  # the SOURCE image's stamp and frame_id
    assert (result.image_width, result.image_height) == (64, 48)
    assert result.answer == expected.text == " the red cup"
    assert result.generated_tokens == expected.generated_tokens
    assert len(result.targets) == len(expected.targets) == 1
    for index, (got, want) in enumerate(zip(result.targets, expected.targets)):
        assert got.index == index and got.name == want.name
        assert got.mask_format == SegmentedTarget.MASK_FULL
        assert (got.mask.width, got.mask.height, got.mask.encoding) == (64, 48, "mono8")
        assert got.mask.header == frame.header
        pixels = np.frombuffer(bytes(got.mask.data), np.uint8)
        assert set(np.unique(pixels)) <= {0, 255}
        np.testing.assert_array_equal(mask_from_msg(got, (64, 48)), want.mask)
        x0, y0, x1, y1 = want.box
        assert (got.box.x_offset, got.box.y_offset, got.box.width, got.box.height) == (x0, y0, x1 - x0, y1 - y0)
        assert got.area == int(want.mask.sum())
        assert got.score == pytest.approx(want.score, abs=1e-6)
    assert result.generation_ms > 0 and result.decoding_ms > 0
    assert result.total_ms >= result.vision_ms + result.generation_ms + result.decoding_ms - 1e-3
    # The plain-text answer of the same request.
    assert wait_until(lambda: any(a.data == " the red cup" for a in rig.answers), 10)


def test_bgr_frames_give_the_same_answer_as_rgb(rig: TopicRig, engine) -> None:
    rgb = rgb_image(40, 30, seed=2)
    frame = rgb_image_msg(rgb, fresh_stamp(rig), "camera_bgr", encoding="bgr8")
    result = ask_about(rig, frame, "segment the cup in bgr")
    expected = engine.segment(rgb, "segment the cup in bgr")
    assert result.status == SegmentationResult.STATUS_OK, result.error
    np.testing.assert_array_equal(mask_from_msg(result.targets[0], (30, 40)), expected.targets[0].mask)


def test_debug_image_is_published_while_subscribed(rig: TopicRig) -> None:
    overlays = rig.client.collect(Image, f"/{NODE}/debug_image")
    assert wait_until(lambda: rig.client.node.count_publishers(f"/{NODE}/debug_image") > 0, 10)
    # The node only draws while it sees a subscriber; discovery of ours may take a moment.
    for attempt in range(5):
        frame = rgb_image_msg(rgb_image(HEIGHT, WIDTH, seed=3), fresh_stamp(rig), f"camera_debug_{attempt}")
        result = ask_about(rig, frame, "segment the cup for the overlay")
        assert result.status == SegmentationResult.STATUS_OK, result.error
        if wait_until(lambda: any(o.header == frame.header for o in overlays), 3):
            break
    overlay = next(o for o in overlays if o.header == frame.header)
    assert (overlay.width, overlay.height, overlay.encoding) == (64, 48, "rgb8")
    # masks are painted over the frame, so the overlay differs from it
    assert bytes(overlay.data) != bytes(frame.data)


def bad_frame(rig: TopicRig, frame_id: str, **fields) -> Image:
    msg = rgb_image_msg(rgb_image(HEIGHT, WIDTH, seed=4), fresh_stamp(rig), frame_id)
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize(
    ("fields", "error_part"),
    [
        ({"encoding": "32FC1"}, "unsupported image encoding '32FC1'"),
        ({"encoding": "bayer_rggb8"}, "unsupported image encoding"),
        ({"step": 64 * 3 + 8}, "image data has"),
        ({"step": 10}, "step 10 is smaller"),
        ({"height": 0, "width": 0, "step": 0, "data": b""}, "zero-size image"),
    ],
    ids=["depth-encoding", "bayer", "step-size-mismatch", "step-too-small", "zero-size"],
)
def test_bad_camera_frames_are_refused_with_their_reason(rig: TopicRig, fields: dict, error_part: str) -> None:
    frame = bad_frame(rig, f"bad_{next(_counter)}", **fields)
    result = ask_about(rig, frame, "segment the cup in a bad frame")
    assert result.status == SegmentationResult.STATUS_INVALID_IMAGE
    assert error_part in result.error and not result.targets
    assert rig.node.alive()


def test_stale_frame_is_refused(rig: TopicRig) -> None:
    frame = rgb_image_msg(rgb_image(HEIGHT, WIDTH, seed=5), fresh_stamp(rig, age_s=60.0), "camera_stale")
    result = ask_about(rig, frame, "segment the cup in an old frame")
    assert result.status == SegmentationResult.STATUS_STALE_IMAGE
    assert "max_image_age_s" in result.error and "older" in result.error
    assert not result.targets


@pytest.mark.parametrize(("text", "error_part"), [("", "empty"), ("   \n", "empty"), ("x" * 100_000, "100000 characters")],
                         ids=["empty", "whitespace", "100kB"])
def test_bad_instructions_are_refused_at_once(rig: TopicRig, text: str, error_part: str) -> None:
    before = {m.request_id for m in rig.results.all()}
    rig.instruction_pub.publish(String(data=text))
    assert wait_until(lambda: len({m.request_id for m in rig.results.all()} - before) == 1, 20)
    (result,) = [m for m in rig.results.all() if m.request_id not in before]
    assert result.status == SegmentationResult.STATUS_INVALID_INSTRUCTION
    assert error_part in result.error
    assert len(result.instruction) <= 4000  # the echo is cut to max_instruction_chars


def test_burst_of_50_instructions_every_one_answered(rig: TopicRig) -> None:
    frame = rgb_image_msg(rgb_image(HEIGHT, WIDTH, seed=6), fresh_stamp(rig), "camera_burst")
    ask_about(rig, frame, "warm up on the burst frame")
    texts = [f"burst {i}" for i in range(50)]
    for text in texts:
        rig.instruction_pub.publish(String(data=text))
    burst = lambda: rig.results.where(lambda m: m.instruction in texts)  # noqa: E731
    assert wait_until(lambda: len(burst()) >= 50, 60), f"{len(burst())} of 50 answered\n{rig.node.log_tail()}"
    time.sleep(0.5)  # nothing more may come: exactly one result per request
    results = burst()
    assert len(results) == 50
    assert len({m.request_id for m in results}) == 50
    assert sorted(m.instruction for m in results) == sorted(texts)
    statuses = [m.status for m in results]
    assert set(statuses) <= {SegmentationResult.STATUS_OK, SegmentationResult.STATUS_QUEUE_FULL}
    assert statuses.count(SegmentationResult.STATUS_QUEUE_FULL) >= 1
    accepted = [m for m in results if m.status == SegmentationResult.STATUS_OK]
    assert len(accepted) >= 1 and all(m.header == frame.header for m in accepted)
    # accepted requests are answered in acceptance order (ids count up as they are accepted)
    numbers = [int(m.request_id.rsplit("-", 1)[1]) for m in accepted]
    assert numbers == sorted(numbers)
    refused = [m for m in results if m.status == SegmentationResult.STATUS_QUEUE_FULL]
    assert all("queue is full" in m.error for m in refused)
    # and the node is still serving
    assert rig.node.alive()
    assert ask_about(rig, frame, "after the burst").status == SegmentationResult.STATUS_OK


def test_the_readme_order_echo_first_then_publish_once_reads_the_answer_and_a_later_reader_sees_none(
        rig: TopicRig) -> None:
    """README: start ``ros2 topic echo /pixellm/result`` first, then ``ros2 topic pub --once
    .../instruction``. ``~/result`` keeps no old messages (volatile, like every results topic of the
    node), so the other order misses the answer: a reader that starts after it sees nothing."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    echo_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # what ros2 topic echo asks here
    node, text = rig.client.node, f"segment the red cup, echo first #{next(_counter)}"
    echoed: list[SegmentationResult] = []
    echo = node.create_subscription(SegmentationResult, f"/{NODE}/result", echoed.append, echo_qos)
    pub_once = node.create_publisher(String, f"/{NODE}/instruction", echo_qos)
    try:
        assert wait_until(lambda: echo.get_publisher_count() > 0 and pub_once.get_subscription_count() > 0, 20)
        pub_once.publish(String(data=text))  # ros2 topic pub --once: once matched, publish, then go
        time.sleep(0.1)
        node.destroy_publisher(pub_once)
        assert wait_until(lambda: any(m.instruction == text for m in echoed), 30), rig.node.log_tail()
        late: list[SegmentationResult] = []
        # ros2 topic echo asks for the durability the publisher offers: transient local would replay
        [offered] = node.get_publishers_info_by_topic(f"/{NODE}/result")
        late_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                              durability=offered.qos_profile.durability)
        later = node.create_subscription(SegmentationResult, f"/{NODE}/result", late.append, late_qos)
        try:
            assert wait_until(lambda: later.get_publisher_count() > 0, 20)
            time.sleep(1.0)
            assert not [m for m in late if m.instruction == text]
        finally:
            node.destroy_subscription(later)
    finally:
        node.destroy_subscription(echo)
