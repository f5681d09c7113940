"""Several cameras in one node over real DDS: each request names its camera (service, action,
per-camera instruction topic), the result says which camera answered and carries that camera's
source header; an unknown camera is an invalid request; diagnostics report every camera."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from std_msgs.msg import Header, String

from pixellm_ros.msg import SegmentationResult
from pixellm_ros.ros.client import PixelLMClient
from support.dds import HealthLog, NodeProcess, RosClient, active_node, rgb_image_msg, status_values, wait_until

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
    health = {camera: HealthLog(client, f"/{NODE}: camera {camera}") for camera in CAMERAS}
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
        return all(log.seen(lambda s: int(status_values(s)["camera frames received"]) > 0) for log in health.values())

    assert wait_until(every_camera_has_a_frame, 20, interval=0.2), "frames never reached the node"
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
    for camera, topic in CAMERAS.items():
        status = HealthLog(client, f"/{NODE}: camera {camera}").wait_for(lambda s: True, 10)
        assert status_values(status)["camera topic"] == topic
    HealthLog(client, f"/{NODE}: pixellm").wait_for(lambda s: True, 10)
