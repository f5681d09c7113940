"""The node's health on /diagnostics: the level rules on their own, then the node over real DDS
going from "no camera frame yet" (WARN) to a measured frame rate (OK), counting how its requests
ended, and back to WARN when the camera stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from pixellm_ros.msg import SegmentationResult as ResultMsg
from pixellm_ros.ros.diagnostics import (
    CameraHealth,
    NodeHealth,
    RateMeter,
    ResultTally,
    camera_status,
    diagnostic_array,
    node_status,
)
from support.dds import HealthLog, NodeProcess, RosClient, active_node, rgb_image_msg
from support.dds import status_values as values

NODE = "pixellm_health"
MAX_AGE_S = 1.5


def node_health(**changes: Any) -> NodeHealth:
    base = dict(name="/robot/n", hardware_id="cpu", active=True, queue_waiting=0, queue_size=4, results_ok=0,
                results_refused=0, model_errors=0, last_model_error="")
    base.update(changes)
    return NodeHealth(**base)


def camera_health(**changes: Any) -> CameraHealth:
    base = dict(camera="default", topic="/cam", active=True, frames_received=10, frame_rate_hz=5.0,
                newest_frame_age_s=0.1, max_image_age_s=1.0)
    base.update(changes)
    return CameraHealth(**base)


def test_levels_follow_the_rules() -> None:
    ok = node_status(node_health())
    assert ok.level == DiagnosticStatus.OK and ok.name == "/robot/n: pixellm"  # the namespace is in the name
    assert values(ok)["requests waiting"] == "0/4"
    inactive = node_status(node_health(active=False))
    assert inactive.level == DiagnosticStatus.OK and inactive.message.startswith("inactive")
    failed = node_status(node_health(model_errors=1, last_model_error="RuntimeError: boom"))
    assert failed.level == DiagnosticStatus.ERROR and "RuntimeError: boom" in failed.message
    assert values(failed)["model errors"] == "1"

    streaming = camera_status("/robot/n", "cpu", camera_health())
    assert streaming.level == DiagnosticStatus.OK and streaming.message == "camera 5.0 Hz"
    assert streaming.name == "/robot/n: camera default" and values(streaming)["camera rate (Hz)"] == "5.00"
    no_frame = camera_status("/robot/n", "cpu", camera_health(newest_frame_age_s=None, frames_received=0,
                                                              hint=" No publisher is connected"))
    assert no_frame.level == DiagnosticStatus.WARN and "no camera frame yet on '/cam'" in no_frame.message
    assert no_frame.message.endswith("No publisher is connected") and values(no_frame)["newest frame age (s)"] == "none"
    stale = camera_status("/robot/n", "cpu", camera_health(newest_frame_age_s=3.0))
    assert stale.level == DiagnosticStatus.WARN and "3.0 s old" in stale.message
    assert camera_status("/r", "cpu", camera_health(newest_frame_age_s=3.0, max_image_age_s=0.0)).level == DiagnosticStatus.OK
    assert camera_status("/r", "cpu", camera_health(active=False, newest_frame_age_s=None)).level == DiagnosticStatus.OK


def test_tally_and_rate_meter() -> None:
    tally = ResultTally()
    tally.record(ResultMsg.STATUS_MODEL_ERROR, "RuntimeError: boom")
    tally.record(ResultMsg.STATUS_QUEUE_FULL, "queue full")
    assert tally.snapshot() == (0, 1, 1, "RuntimeError: boom")
    tally.record(ResultMsg.STATUS_OK, "")
    assert tally.snapshot() == (1, 1, 1, "")  # a success clears the standing model error

    meter = RateMeter()
    assert meter.update(5, 10.0) == 0.0  # nothing to compare with yet
    assert meter.update(15, 12.0) == pytest.approx(5.0)
    assert meter.update(15, 12.0) == 0.0  # no time passed


def test_array_carries_the_stamp_and_one_status_per_camera() -> None:
    from builtin_interfaces.msg import Time

    msg = diagnostic_array(node_health(), [camera_health(), camera_health(camera="wrist")], Time(sec=7, nanosec=9))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7, 9)
    assert [s.name for s in msg.status] == ["/robot/n: pixellm", "/robot/n: camera default", "/robot/n: camera wrist"]


@pytest.fixture(scope="module")
def node(client: RosClient, domain_id: int, chain_model_dir: Path, tmp_path_factory) -> Iterator[NodeProcess]:
    process = NodeProcess(domain_id, NODE, {
        "model.path": str(chain_model_dir), "model.device": "cpu", "max_image_age_s": MAX_AGE_S,
        "diagnostics_period_s": 0.2,
    }, tmp_path_factory.mktemp("node_logs") / f"{NODE}.log", remappings={"image_raw": f"/{NODE}/camera"})
    with active_node(process, client):
        yield process


def test_the_node_reports_its_camera_and_its_requests(client: RosClient, node: NodeProcess) -> None:
    log = HealthLog(client, f"/{NODE}: pixellm")
    camera_log = HealthLog(client, f"/{NODE}: camera default")
    waiting = camera_log.wait_for(lambda s: s.level == DiagnosticStatus.WARN)
    # the topic as remapped, and the likely cause: nobody publishes there yet
    assert f"no camera frame yet on '/{NODE}/camera'" in waiting.message and "No publisher" in waiting.message
    assert values(waiting)["camera frames received"] == "0" and waiting.hardware_id == "cpu"
    assert values(log.wait_for(lambda s: s.level == DiagnosticStatus.OK))["active"] == "true"

    publisher = client.image_publisher(f"/{NODE}/camera")
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    stop = threading.Event()

    def camera() -> None:  # 10 Hz, stamped now
        while not stop.is_set():
            publisher.publish(rgb_image_msg(rgb, client.now(), "camera"))
            time.sleep(0.1)

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    try:
        streaming = camera_log.wait_for(
            lambda s: s.level == DiagnosticStatus.OK and float(values(s)["camera rate (Hz)"]) > 5)
        assert float(values(streaming)["camera rate (Hz)"]) < 15  # a rate, not a count
        assert float(values(streaming)["newest frame age (s)"]) < MAX_AGE_S

        assert client.segment_service(NODE, None, "segment the red cup").status == ResultMsg.STATUS_OK
        assert client.segment_service(NODE, None, "   ").status == ResultMsg.STATUS_INVALID_INSTRUCTION
        # bad user input is never a model error: a line-scan frame and the image placeholder in the text
        line_scan = rgb_image_msg(np.zeros((1, 4000, 3), np.uint8), client.now(), "line_scan")
        assert client.segment_service(NODE, line_scan, "segment it").status == ResultMsg.STATUS_INVALID_IMAGE
        assert client.segment_service(NODE, None, "what is <image>?").status == ResultMsg.STATUS_INVALID_INSTRUCTION
        counted = log.wait_for(lambda s: values(s)["results ok"] == "1" and values(s)["results refused"] == "3")
        assert counted.level == DiagnosticStatus.OK and values(counted)["model errors"] == "0"
    finally:
        stop.set()
        thread.join()

    stale = camera_log.wait_for(lambda s: s.level == DiagnosticStatus.WARN and "stale" in s.message,
                                timeout=MAX_AGE_S + 10)
    assert float(values(stale)["newest frame age (s)"]) > MAX_AGE_S
    # the test's publisher is still matched: the message names the transport as the likely cause
    assert "still connected" in stale.message and "large-frames profile" in stale.message
