"""Batched decoding in the node over real DDS: with max_batch, requests that wait together are decoded
together (different images and instructions), each answer is what the engine gives it alone, every
result comes once (their queue order is test_worker's), and a bad request in a batch is refused alone; with model.decode_mode
static too (the batches then run on the static batch decoder, as a CUDA-graph node's do on a GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray

from pixellm_ros.msg import SegmentationResult
from pixellm_ros.ros.client import PixelLMClient
from pixellm_ros.ros.conversions import mask_from_msg
from support.dds import NodeProcess, RosClient, active_node, rgb_image_msg, wait_until
from support.engine import reference_engine, rgb_image

NODE = "pixellm_batch"
MAX_NEW_TOKENS = 40


@pytest.fixture(scope="module", params=["dynamic", "static"])
def node(client: RosClient, domain_id: int, loop_model_dir: Path, tmp_path_factory, request) -> Iterator[NodeProcess]:  # type: ignore[no-untyped-def]
    process = NodeProcess(domain_id, NODE, {
        "model.path": str(loop_model_dir), "model.device": "cpu", "model.decode_mode": request.param,
        "max_image_age_s": 0.0, "max_batch": 4,
        "queue_size": 8, "generation.max_new_tokens": MAX_NEW_TOKENS, "diagnostics_period_s": 0.3,
    }, tmp_path_factory.mktemp("batch") / f"{NODE}.log")
    with active_node(process, client):
        yield process


@pytest.fixture(scope="module")
def engine(loop_model_dir: Path, single_thread_torch):
    return reference_engine(loop_model_dir)


def test_waiting_requests_are_decoded_together_each_as_alone_in_queue_order(
        client: RosClient, domain_id: int, node: NodeProcess, engine) -> None:
    images = [rgb_image(40 + 8 * seed, 64, seed) for seed in range(6)]
    instructions = [f"segment the red cup number {i}" for i in range(6)]
    results_topic = client.result_log(f"/{NODE}/result")
    largest, modes = [], []

    def on_array(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f"/{NODE}: pixellm":
                values = {kv.key: kv.value for kv in status.values}
                largest.append(int(values["largest batch"]))
                modes.append(values["decode mode"])

    client.node.create_subscription(DiagnosticArray, "/diagnostics", on_array, 10)
    with PixelLMClient(f"/{NODE}", domain_id, name="batch_client") as library:
        library.wait_until_active(30)
        pending = [library.request(text, rgb_image_msg(rgb, client.now(), f"cam_{i}"), channel="service",
                                   request_id=f"batch-{i}") for i, (rgb, text) in enumerate(zip(images, instructions))]
        results = [p.result(timeout=120) for p in pending]
    for rgb, text, result in zip(images, instructions, results):
        expected = engine.segment(rgb, text, max_new_tokens=MAX_NEW_TOKENS)
        assert result.status == SegmentationResult.STATUS_OK, result.error
        assert result.answer == expected.text and result.generated_tokens == expected.generated_tokens
        assert len(result.targets) == len(expected.targets)
        for got, want in zip(result.targets, expected.targets):
            assert got.name == want.name
            mask = mask_from_msg(got, (result.image_width, result.image_height))
            assert (mask != want.mask).mean() < 0.002  # batched float sums differ by ~1e-6 at mask edges
    assert wait_until(lambda: len(results_topic.where(lambda m: m.request_id.startswith("batch-"))) == 6, 20)
    order = [m.request_id for m in results_topic.where(lambda m: m.request_id.startswith("batch-"))]
    # Each once on the topic. Not necessarily in send order: the six calls are admitted on the
    # Reentrant service group's threads, so the queue holds them in the order their admission ended
    # (CI, static: batch-5 before batch-4); the worker's queue order is test_worker's.
    assert sorted(order) == [f"batch-{i}" for i in range(6)]
    assert wait_until(lambda: largest and largest[-1] >= 2, 10), f"never batched: {largest[-1:]}"
    assert modes[-1] == node.parameters["model.decode_mode"]  # the engine the node loaded


def test_a_bad_request_in_a_batch_is_refused_alone(client: RosClient, domain_id: int, node: NodeProcess) -> None:
    good = rgb_image_msg(np.zeros((48, 64, 3), np.uint8), client.now(), "good")
    thin = rgb_image_msg(np.zeros((1, 4000, 3), np.uint8), client.now(), "line_scan")
    with PixelLMClient(f"/{NODE}", domain_id, name="batch_client_bad") as library:
        library.wait_until_active(30)
        pending = [library.request("segment the cup", good, channel="service"),
                   library.request("segment the cup", thin, channel="service"),
                   library.request("what is <image>", good, channel="service"),
                   library.request("segment the cup", good, channel="service")]
        statuses = [p.result(timeout=120).status for p in pending]
    assert statuses == [SegmentationResult.STATUS_OK, SegmentationResult.STATUS_INVALID_IMAGE,
                        SegmentationResult.STATUS_INVALID_INSTRUCTION, SegmentationResult.STATUS_OK]
