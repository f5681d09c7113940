"""Process set-up shared by the executables: rclpy without its own signal handlers, and spinning.

rclpy's default SIGINT handler shuts the context down at once, so a node's clean-up (answering
waiting requests, logging, the lifecycle shutdown transition) would then run against a dead
context. Here SIGINT and SIGTERM raise KeyboardInterrupt in the main thread instead; ``spin``
returns on it and the caller tears down while the context still works, then shuts rclpy down.
"""

from __future__ import annotations

import signal
from typing import Any, Sequence

import rclpy

try:  # Humble and later
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover - older rclpy
    class ExternalShutdownException(Exception):  # type: ignore[no-redef]
        """Never raised by an rclpy that does not define it."""
try:  # Humble and later
    from rclpy.signals import SignalHandlerOptions
except ImportError:  # pragma: no cover - older rclpy
    SignalHandlerOptions = None  # type: ignore[assignment,misc]


SIGNAL_POLL_S = 0.2


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def init_ros(args: Sequence[str] | None) -> None:
    """rclpy.init with our own SIGINT/SIGTERM handling (see the module docstring)."""
    argv = list(args) if args is not None else None
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except (TypeError, AttributeError):  # pragma: no cover - an rclpy without the option
        rclpy.init(args=argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def spin(executor: Any, context: Any) -> None:
    """Spin until Ctrl-C / SIGTERM / an external shutdown of the context.

    In short waits: a Python signal handler only runs once the blocking rcl wait returns, and
    without rclpy's handlers nothing else would wake it.
    """
    try:
        while context.ok():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
