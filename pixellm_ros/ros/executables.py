"""The processes: ``pixellm_node`` and ``camera_sim_node`` main functions and their spin loop.

``run_until_shutdown`` owns a process's lifetime: autostart, spinning until SIGINT / SIGTERM
(``spinning.init_ros``: the first one ends the spinning, later ones are harmless), then the
orderly end — the node drains (the running request finishes, waiting ones are answered
STATUS_NOT_READY, every result is written to its caller), the executor stops once its last
callbacks have returned, the lifecycle shutdown transition frees the model and destroys the
entities, and rclpy shuts down.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import rclpy
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

from .spinning import ignore_signals, init_ros, spin


def executor_threads(queue_size: int) -> int:
    """Threads enough for queue_size + 1 waiting service/action callers, plus refusals and the topics."""
    return max(4, queue_size + 5)


def run_until_shutdown(node: Any, other_nodes: Sequence[Any] = ()) -> None:
    """Spin ``node`` (and ``other_nodes``) until Ctrl-C, after autostart unless the parameter is false.

    rclpy must already be initialised (``spinning.init_ros``); shuts it down on the way out.
    """
    queue_size = node.get_parameter("queue_size").value
    executor = MultiThreadedExecutor(num_threads=executor_threads(queue_size if isinstance(queue_size, int) else 4))
    executor.add_node(node)
    for other in other_nodes:
        executor.add_node(other)
    try:
        autostart = node.get_parameter("autostart").value
        problem = node.startup_problem("autostart")
        if problem:
            node.get_logger().error(f"{problem}: not starting by itself; configure it with ros2 lifecycle")
        elif autostart and not node.autostart():
            node.get_logger().error("autostart failed (see above); the node stays up so it can be reconfigured")
        spin(executor, node.context)
    except KeyboardInterrupt:  # during autostart
        pass
    finally:
        # The context is still valid here (see spinning.py).
        node.drain(executor)
        # No callback may still run while the shutdown transition destroys the entities: one that
        # uses a destroyed one (the diagnostics timer's publisher) fails its task with "cannot use
        # Destroyable because destruction was requested", printed at exit as an exception never
        # retrieved. After drain no callback waits for a result any more.
        executor.shutdown()
        try:
            node.trigger_shutdown()
        except Exception:  # noqa: BLE001 - e.g. already finalized: free what is left directly
            node.release_all("the node is shutting down")
        for other in other_nodes:
            other.destroy_node()
        node.destroy_node()
        rclpy.try_shutdown()
        ignore_signals()


def node_main(args: Sequence[str] | None = None) -> None:
    """pixellm_node until Ctrl-C; configures and activates itself unless the parameter autostart is false."""
    init_ros(args)  # first: a bad parameters file is said at once, before torch is imported
    from .pixellm_node import PixelLMNode  # torch and the model stack: only this process needs them

    run_until_shutdown(PixelLMNode())


def camera_main(args: Sequence[str] | None = None) -> None:
    """camera_sim_node until Ctrl-C."""
    from .camera_sim import CameraSimNode

    init_ros(args)
    node = CameraSimNode()
    started = time.monotonic()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin(executor, node.context)
    node.get_logger().info(f"published {node.published} frames in {time.monotonic() - started:.1f} s")
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    ignore_signals()
