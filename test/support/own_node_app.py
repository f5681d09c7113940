"""A robot program with its own rclpy node, asking pixellm_node through ``PixelLMClient(ros_node=...)``.

Run as its own process by test_node_service_action (its own participant, as a user's program
is): ``python own_node_app.py NODE_NAME SEED INSTRUCTION``. It asks twice, from a timer callback
of its node each time:

1. under a ``MultiThreadedExecutor``: ``segment`` (the action, text streamed), blocking inside
   the callback while the executor's other thread delivers the client's replies;
2. under a ``SingleThreadedExecutor``: ``request(channel="service")`` and
   ``PendingResult.add_done_callback``, never blocking the only thread.

Then it closes the client and prints one JSON line: each answer's fields, the streamed pieces,
and the node's own clients, waitables and guard conditions before the client, with it, and after ``close``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.task import Future

from pixellm_ros.ros.client import PixelLMClient

TIMEOUT_S = 60.0


def entities(node: Any) -> dict[str, int]:
    return {"clients": len(list(node.clients)), "waitables": len(list(node.waitables)),
            "guards": len(list(node.guards))}


def summary(result: Any) -> dict[str, Any]:
    return {"status": result.status, "error": result.error, "answer": result.answer, "frame_id": result.header.frame_id,
            "targets": len(result.targets), "width": result.image_width, "height": result.image_height}


def ask_once(node: Any, executor: Any, start: Any) -> dict[str, Any]:
    """Run ``start(done)`` in a one-shot timer callback of ``node``; spin until ``done`` holds a result."""
    done = Future()
    fired = []

    def on_timer() -> None:
        if fired:
            return
        fired.append(True)
        timer.cancel()
        try:
            start(done)
        except Exception as error:  # noqa: BLE001 - reported to the test, not swallowed
            done.set_result({"exception": f"{type(error).__name__}: {error}"})

    timer = node.create_timer(0.05, on_timer)
    executor.add_node(node)
    executor.spin_until_future_complete(done, timeout_sec=TIMEOUT_S + 30)
    executor.remove_node(node)
    node.destroy_timer(timer)
    executor.shutdown()
    return done.result() if done.done() else {"exception": "no result within the spin's timeout"}


def main(node_name: str, seed: int, instruction: str) -> None:
    rgb = np.random.default_rng(seed).integers(0, 256, (36, 52, 3), dtype=np.uint8)
    rclpy.init()
    node = rclpy.create_node("own_node_app")
    report: dict[str, Any] = {"before": entities(node)}
    pixellm = PixelLMClient(f"/{node_name}", ros_node=node)
    report["with_client"] = entities(node)
    report["same_node"] = pixellm.ros_node is node
    pieces: list[str] = []

    def blocking(done: Future) -> None:  # inside a MultiThreadedExecutor callback
        pixellm.wait_until_active(timeout=TIMEOUT_S)
        done.set_result(summary(pixellm.segment(instruction, rgb, on_text=pieces.append, timeout=TIMEOUT_S)))

    def callback_style(done: Future) -> None:  # inside a SingleThreadedExecutor callback
        pending = pixellm.request(instruction, rgb, channel="service", timeout=TIMEOUT_S)
        pending.add_done_callback(lambda finished: done.set_result(summary(finished.result(0))))

    report["action"] = ask_once(node, MultiThreadedExecutor(num_threads=2), blocking)
    report["pieces"] = pieces
    report["service"] = ask_once(node, SingleThreadedExecutor(), callback_style)
    pixellm.close()
    pixellm.close()  # a second close is a no-op
    report["after_close"] = entities(node)
    node.destroy_node()
    rclpy.shutdown()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
