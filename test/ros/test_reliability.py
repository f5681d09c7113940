"""Every request answered exactly once, from the caller's side, over real DDS: 200 requests at once
on each channel from several clients; at shutdown (SIGINT / SIGTERM) the running request finishes,
the waiting ones get STATUS_NOT_READY, and every result reaches its caller before the node goes;
a second signal neither raises nor skips the clean-up; the client library says when a node is not
active instead of waiting forever."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from pixellm_ros.msg import SegmentationResult
from pixellm_ros.ros.client import NodeNotActiveError, PixelLMClient
from support.dds import HealthLog, NodeProcess, RosClient, active_node, rgb_image_msg, status_values, wait_until

BURST = 200
CLIENTS = 4
QUEUE_SIZE = 2
TOKENS = 2000  # the running answer of the shutdown test: seconds on the slow loop model


def frame(client: RosClient, seed: int = 0) -> object:
    rgb = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return rgb_image_msg(rgb, client.now(), "cam")


@pytest.fixture(scope="module")
def burst_node(client: RosClient, domain_id: int, chain_model_dir: Path, tmp_path_factory) -> Iterator[NodeProcess]:
    process = NodeProcess(domain_id, "pixellm_burst", {
        "model.path": str(chain_model_dir), "model.device": "cpu", "queue_size": QUEUE_SIZE, "max_image_age_s": 0.0,
    }, tmp_path_factory.mktemp("burst_logs") / "pixellm_burst.log")
    with active_node(process, client):
        yield process


@pytest.fixture(scope="module")
def library_clients(domain_id: int) -> Iterator[list[PixelLMClient]]:
    clients = [PixelLMClient("/pixellm_burst", domain_id, name=f"burst_client_{i}") for i in range(CLIENTS)]
    yield clients
    for library_client in clients:
        library_client.close()


def assert_each_answered_once(statuses: list[int], topic: list[SegmentationResult], prefix: str) -> Counter:
    """Every caller got a real result, and the result topic carried each request exactly once."""
    assert len(statuses) == BURST and SegmentationResult.STATUS_UNKNOWN not in statuses
    ids = Counter(m.request_id for m in topic if m.request_id.startswith(prefix))
    assert len(ids) == BURST and set(ids.values()) == {1}, f"{len(ids)} ids, counts {Counter(ids.values())}"
    counts = Counter(statuses)
    assert counts[SegmentationResult.STATUS_OK] >= 1 and counts[SegmentationResult.STATUS_QUEUE_FULL] >= 1
    assert set(counts) <= {SegmentationResult.STATUS_OK, SegmentationResult.STATUS_QUEUE_FULL}
    return counts


@pytest.mark.parametrize("channel", ["service", "action"])
def test_a_burst_of_200_requests_from_several_clients_is_answered_exactly_once(
        client: RosClient, burst_node: NodeProcess, library_clients: list[PixelLMClient], channel: str) -> None:
    results = client.result_log("/pixellm_burst/result")
    image = frame(client)
    for library_client in library_clients:  # discovery first, so the burst itself is what is measured
        assert library_client.segment("warm up", image, channel=channel).status == SegmentationResult.STATUS_OK
    prefix = f"{channel}-burst-"
    pending = [library_clients[i % CLIENTS].request("segment the red cup", image, channel=channel,
                                                    request_id=f"{prefix}{i}") for i in range(BURST)]
    statuses = [p.result(timeout=120).status for p in pending]
    assert wait_until(lambda: len([m for m in results.all() if m.request_id.startswith(prefix)]) >= BURST, 30)
    counts = assert_each_answered_once(statuses, results.all(), prefix)
    print(f"{channel}: {BURST} sent, {sum(counts.values())} answered: {dict(counts)}")


def test_a_burst_of_200_topic_instructions_is_answered_exactly_once(client: RosClient, burst_node: NodeProcess) -> None:
    results = client.result_log("/pixellm_burst/result")
    camera = client.image_publisher("/image_raw")
    deep = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=BURST, reliability=ReliabilityPolicy.RELIABLE)
    publishers = [client.node.create_publisher(String, "/pixellm_burst/instruction", deep) for _ in range(CLIENTS)]
    assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers), 20)
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            camera.publish(frame(client))
            time.sleep(0.05)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        time.sleep(0.5)
        for i in range(BURST):
            publishers[i % CLIENTS].publish(String(data=f"segment the red cup number {i}"))
        mine = lambda: [m for m in results.all() if m.instruction.startswith("segment the red cup number")]  # noqa: E731
        assert wait_until(lambda: len(mine()) >= BURST, 120)
        time.sleep(0.5)  # nothing more may come
        texts = Counter(m.instruction for m in mine())
        assert len(texts) == BURST and set(texts.values()) == {1}
        counts = Counter(m.status for m in mine())
        assert set(counts) <= {SegmentationResult.STATUS_OK, SegmentationResult.STATUS_QUEUE_FULL}
        print(f"topic: {BURST} sent, {len(texts)} answered: {dict(counts)}")
    finally:
        stop.set()
        streamer.join()


def test_a_full_queue_rejects_the_goal_at_acceptance(client: RosClient, burst_node: NodeProcess,
                                                     library_clients: list[PixelLMClient]) -> None:
    image = frame(client, 3)
    pending = [library_clients[0].request("segment the red cup", image, request_id=f"reject-{i}") for i in range(12)]
    results = [p.result(timeout=60) for p in pending]
    rejected = [r for r in results if r.status == SegmentationResult.STATUS_QUEUE_FULL]
    assert rejected and all("rejected the goal" in r.error for r in rejected)
    assert all(p.handle is None for p, r in zip(pending, results) if r in rejected)  # never accepted


# ---------------------------------------------------------------------------- shutdown
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_at_shutdown_the_running_request_finishes_and_every_waiting_caller_gets_its_answer(
        client: RosClient, domain_id: int, slow_loop_model_dir: Path, tmp_path: Path, signal_number: int) -> None:
    name = "pixellm_shutdown"
    process = NodeProcess(domain_id, name, {
        "model.path": str(slow_loop_model_dir), "model.device": "cpu", "queue_size": 4, "max_image_age_s": 0.0,
        "generation.max_new_tokens": TOKENS, "diagnostics_period_s": 0.2,
    }, tmp_path / f"{name}.log")
    process.wait_active(client)
    results = client.result_log(f"/{name}/result")
    health = HealthLog(client, f"/{name}: pixellm")
    camera = client.image_publisher("/image_raw")
    instructions = client.publisher(String, f"/{name}/instruction")
    library = PixelLMClient(f"/{name}", domain_id, name="shutdown_client")
    try:
        library.wait_until_active(30)
        image = frame(client, 5)
        running = library.request("the running one", image, request_id="running")
        assert wait_until(lambda: running.handle is not None, 20)  # accepted: it runs now
        waiting_goal = library.request("a waiting goal", image, request_id="waiting-goal")
        waiting_call = library.request("a waiting call", image, channel="service", request_id="waiting-call")
        assert wait_until(lambda: camera.get_subscription_count() > 0 and instructions.get_subscription_count() > 0, 20)
        for _ in range(3):  # best effort: a copy may be dropped while discovery settles
            camera.publish(frame(client, 6))
            time.sleep(0.1)
        instructions.publish(String(data="a waiting instruction"))
        # everything queued behind the running answer (goal, call, instruction), as the node says
        health.wait_for(lambda s: status_values(s)["requests waiting"] == "3/4")
        assert not running.done()

        process.process.send_signal(signal_number)
        time.sleep(0.2)
        process.process.send_signal(signal_number)  # a second signal during the shutdown
        assert process.process.wait(60) == 0

        finished = running.result(timeout=10)
        assert finished.status == SegmentationResult.STATUS_OK and finished.generated_tokens == TOKENS
        for pending in (waiting_goal, waiting_call):
            refused = pending.result(timeout=10)
            assert refused.status == SegmentationResult.STATUS_NOT_READY and "shutting down" in refused.error
        by_instruction = {m.instruction: m for m in results.all()}
        assert by_instruction["a waiting instruction"].status == SegmentationResult.STATUS_NOT_READY
        assert Counter(m.request_id for m in results.all()).most_common(1)[0][1] == 1
        log = process.log_path.read_text()
        assert "Traceback" not in log and "the shutdown is under way" in log
    finally:
        library.close()
        process.stop()


def test_the_client_library_says_when_the_node_is_not_active(client: RosClient, domain_id: int,
                                                              chain_model_dir: Path, tmp_path: Path) -> None:
    with PixelLMClient("/nobody_here", domain_id, name="lonely_client") as lonely:
        with pytest.raises(NodeNotActiveError, match="no node /nobody_here"):
            lonely.wait_until_active(timeout=2)
        with pytest.raises(NodeNotActiveError):
            lonely.segment("anything", timeout=2)

    name = "pixellm_unconfigured"
    process = NodeProcess(domain_id, name, {"model.path": str(chain_model_dir), "model.device": "cpu",
                                            "autostart": False}, tmp_path / f"{name}.log")
    library = PixelLMClient(f"/{name}", domain_id, name="patient_client")
    try:
        process.wait_active(client, state=1)  # unconfigured: no service, no action
        with pytest.raises(NodeNotActiveError, match="is unconfigured"):
            library.wait_until_active(timeout=2)
        with pytest.raises(NodeNotActiveError, match="exists only once the node is configured"):
            library.segment("anything", timeout=3)
    finally:
        library.close()
        assert process.stop() == 0
