"""Several cameras in one node over real DDS: each request names its camera (service, action,
per-camera instruction topic), the result says which camera answered and carries that camera's
source header; an unknown camera is an invalid request; diagnostics report every camera."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Header, String

from pixellm_ros.msg import SegmentationResult
from pixellm_ros.ros.client import PixelLMClient
from support.dds import NodeProcess, RosClient, active_node, rgb_image_msg, wait_until

NODE = "pixellm_cams"
CAMERAS = {"head": "/mc/head/image_raw", "wrist": "/mc/arm/wrist_cam"}


@pytest.fixture(scope="module")
def node(client: RosClient, domain_id: int, chain_model_dir: Path, tmp_path_factory) -> Iterator[NodeProcess]:
    process = NodeProcess(domain_id, NODE, {
        "model.path": str(chain_model_dir), "model.device": "cpu", "max_image_age_s": 0.0, "diagnostics_period_s": 0.3,
        "cameras.names": list(CAMERAS), "cameras.wrist.image": CAMERAS["wrist"],
    }, tmp_path_factory.mktemp("cams") / f"{NODE}.log", remappings={"head/image_raw": CAMERAS["head"]})
    with active_node(process, client):
        yield process


@pytest.fixture(scope="module")
def frames(client: RosClient, node: NodeProcess) -> dict[str, Header]:
    """One distinct frame per camera, published (sensor-data QoS: best effort, so one publish may be
    dropped while discovery settles) until the node's diagnostics count a frame on every camera;
    their headers."""
    received: dict[str, int] = {}
    lock = threading.Lock()

    def on_array(msg: DiagnosticArray) -> None:
        with lock:
            for status in msg.status:
                count = {kv.key: kv.value for kv in status.values}.get("camera frames received")
                if count is not None:
                    received[status.name] = int(count)

    client.node.create_subscription(DiagnosticArray, "/diagnostics", on_array, 10)
    headers, messages = {}, {}
    for index, (camera, topic) in enumerate(CAMERAS.items()):
        publisher = client.image_publisher(topic)
        assert wait_until(lambda: publisher.get_subscription_count() > 0, 20), f"nobody subscribes to {topic}"
        rgb = np.random.default_rng(index).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        headers[camera] = Header(stamp=client.now(), frame_id=f"{camera}_optical")
        messages[camera] = (publisher, rgb_image_msg(rgb, headers[camera].stamp, headers[camera].frame_id))

    def every_camera_has_a_frame() -> bool:
        for publisher, msg in messages.values():  # the same frame again: the node keeps the newest
            publisher.publish(msg)
        with lock:
            return all(received.get(f"/{NODE}: camera {camera}", 0) > 0 for camera in CAMERAS)

    assert wait_until(every_camera_has_a_frame, 20, interval=0.2), f"frames never reached the node: {received}"
    return headers


def ask(client: RosClient, camera: str) -> SegmentationResult:
    return client.segment_service(NODE, None, "segment the red cup", camera=camera)


@pytest.mark.parametrize("camera", ["head", "wrist"])
def test_a_service_request_names_its_camera(client: RosClient, frames: dict[str, Header], camera: str) -> None:
    result = ask(client, camera)
    assert result.status == SegmentationResult.STATUS_OK
    assert result.camera == camera and result.header == frames[camera]


def test_no_camera_named_means_the_first_and_an_unknown_one_is_refused(
        client: RosClient, frames: dict[str, Header]) -> None:
    first = ask(client, "")
    assert first.camera == "head" and first.header == frames["head"]
    unknown = ask(client, "tail")
    assert unknown.status == SegmentationResult.STATUS_INVALID_REQUEST and "head, wrist" in unknown.error


def test_the_action_and_the_per_camera_instruction_topic(client: RosClient, domain_id: int,
                                                          frames: dict[str, Header]) -> None:
    with PixelLMClient(f"/{NODE}", domain_id, name="cams_client") as library:
        result = library.segment("segment the red cup", camera="wrist")
        assert result.camera == "wrist" and result.header == frames["wrist"]
    results = client.result_log(f"/{NODE}/result")
    publisher = client.publisher(String, f"/{NODE}/wrist/instruction")
    assert wait_until(lambda: publisher.get_subscription_count() > 0, 20)
    publisher.publish(String(data="segment the wrist's cup"))
    assert wait_until(lambda: results.where(lambda m: m.instruction == "segment the wrist's cup"), 20)
    (answer,) = results.where(lambda m: m.instruction == "segment the wrist's cup")
    assert answer.camera == "wrist" and answer.header == frames["wrist"]


def test_diagnostics_report_every_camera(client: RosClient, frames: dict[str, Header]) -> None:
    seen: dict[str, str] = {}
    lock = threading.Lock()

    def on_array(msg: DiagnosticArray) -> None:
        with lock:
            for status in msg.status:
                seen[status.name] = {kv.key: kv.value for kv in status.values}.get("camera topic", "")

    client.node.create_subscription(DiagnosticArray, "/diagnostics", on_array, 10)
    assert wait_until(lambda: {f"/{NODE}: camera head", f"/{NODE}: camera wrist"} <= set(seen), 10)
    assert seen[f"/{NODE}: camera head"] == CAMERAS["head"] and seen[f"/{NODE}: camera wrist"] == CAMERAS["wrist"]
    assert f"/{NODE}: pixellm" in seen
