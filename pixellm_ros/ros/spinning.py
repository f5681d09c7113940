"""Process set-up shared by the executables: rclpy without its own signal handlers, and spinning
(``BackgroundNode``: a node spun in a background thread, for scripts that talk to the node).

rclpy's default SIGINT handler shuts the context down at once, so a node's clean-up (answering
waiting requests, logging, the lifecycle shutdown transition) would then run against a dead
context. Here the FIRST SIGINT or SIGTERM only ends ``spin`` (its loop checks between two of the
executor's waits) and the caller tears down while the context still works, then shuts rclpy down.
No exception is raised into the executor: a KeyboardInterrupt between its taking an entity and
running its callback would leave that entity marked as taken, never waited on again (an action
server that never answers another result request). Before the process first spins (e.g. during
autostart's model load) the first signal raises KeyboardInterrupt. Every later signal only prints
that the shutdown is under way: a second Ctrl-C neither raises a traceback in the middle of the
clean-up nor skips it.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Sequence

import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

from .params_file import command_line_problem, rcl_error_line
from .transport import use_large_frames_profile

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


_signals_seen = 0
_spun = False  # spin() has started: from then on a signal raises nothing (see the module docstring)
_command_line: list[str] = []


def _interrupt(signum: int, _frame: Any) -> None:
    global _signals_seen
    _signals_seen += 1
    if _signals_seen == 1:
        if _spun:
            return
        raise KeyboardInterrupt
    print(f"[pixellm_ros] signal {signal.Signals(signum).name} again: the shutdown is under way, answering "
          "the requests the node holds first", file=sys.stderr, flush=True)


def ignore_signals() -> None:
    """After the clean-up: SIGINT / SIGTERM ignored for the rest of the process's life.

    Python resets its handlers to the defaults while the interpreter exits (seconds with torch
    loaded), and ``ros2 launch`` forwards its own SIGINT a moment after the terminal's: without
    this, that signal would kill a process that has already cleaned up (exit code -2).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def command_line() -> list[str]:
    """The arguments ``init_ros`` gave rclpy (empty before it ran, e.g. a node built in a test)."""
    return list(_command_line)


def shutdown_requested() -> bool:
    """True once SIGINT / SIGTERM arrived in this process (after ``init_ros``)."""
    return _signals_seen > 0


def init_ros(args: Sequence[str] | None) -> None:
    """rclpy.init for an executable's process: our SIGINT/SIGTERM handling (see the module
    docstring) and Fast DDS room for camera-sized messages (``transport.use_large_frames_profile``).

    A command line rcl cannot read (a parameters file that is missing or not valid YAML) ends the
    process with one line saying which file and where, and exit code 2 (SystemExit), not rcl's
    traceback. ``command_line()`` gives the arguments to the nodes afterwards.
    """
    global _command_line
    use_large_frames_profile()
    argv = list(args) if args is not None else None
    _command_line = list(argv if argv is not None else sys.argv)
    problem = command_line_problem(_command_line)
    if problem is None:
        try:
            _init_without_signal_handlers(argv)
        except RuntimeError as error:  # rclpy's RCLError: what rcl alone refuses (a list of mixed types, ...)
            problem = rcl_error_line(str(error))
    if problem is not None:
        print(problem, file=sys.stderr, flush=True)
        raise SystemExit(2)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _init_without_signal_handlers(argv: list[str] | None) -> None:
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except (TypeError, AttributeError):  # pragma: no cover - an rclpy without the option
        rclpy.init(args=argv)


def spin(executor: Any, context: Any) -> None:
    """Spin until Ctrl-C / SIGTERM / an external shutdown of the context.

    In short waits: a Python signal handler only runs once the blocking rcl wait returns, and
    without rclpy's handlers nothing else would wake it.
    """
    global _spun
    _spun = True
    try:
        while context.ok() and not shutdown_requested():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


class JoiningExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor whose ``shutdown`` first lets the callbacks it has already
    handed to its threads finish, then shuts down as rclpy's does.

    rclpy's own shutdown destroys the executor's guard condition, then joins its threads; a
    callback handed to a thread by the last ``spin_once`` that has not run by then ends by
    triggering that destroyed guard ("cannot use Destroyable because destruction was requested"),
    and as nobody spins any more to retrieve its task's error, rclpy prints it at exit as an
    exception "never retrieved" (an idle SIGINT with a fast diagnostics timer). Call it once
    nothing spins the executor any more. rclpy has no public way to wait for its threads: the
    thread pool is ``_executor``, as in every rclpy since Foxy.
    """

    def shutdown(self, timeout_sec: float | None = None, *, wait_for_threads: bool = True) -> bool:
        pool = getattr(self, "_executor", None)
        if pool is not None and wait_for_threads:
            pool.shutdown(wait=True)
        return super().shutdown(timeout_sec, wait_for_threads=wait_for_threads)


class GroupOutbox:
    """Runs callables from a callback of ``group`` on ``node`` (a guard condition's), never from the
    caller's thread, so they cannot overlap that group's other callbacks (``group`` None: the node's
    default group, mutually exclusive).

    What rclpy's ``ActionClient.send_goal_async`` needs (rclpy 9): it registers its future, releases
    its lock, then registers a second one, so a goal response that the executor handles in between
    completes the first and the returned future never completes (ros2/rclpy#1123). Sent from a
    callback of the action client's own mutually exclusive group, no response of that client can be
    handled until the send has returned. A job that raises is logged; the others still run.
    """

    def __init__(self, node: Any, group: Any = None) -> None:
        self._node = node
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._trigger = node.create_guard_condition(self._run_queued, callback_group=group)

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` soon, on the executor spinning the node."""
        self._jobs.put(job)
        self._trigger.trigger()

    def destroy(self) -> None:
        self._node.destroy_guard_condition(self._trigger)

    def _run_queued(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                job()
            except Exception:  # noqa: BLE001 - one job's failure must not keep the others queued
                print(f"[pixellm_ros] {self._node.get_name()}: a queued job raised:\n{traceback.format_exc()}",
                      file=sys.stderr, flush=True)


class _SharedContexts:
    """One rclpy context (so one DDS participant) per domain for all of a process's BackgroundNodes,
    counted: the last ``release`` shuts it down.

    Every context is a participant: its own discovery traffic, and a participant's destruction in a
    process that holds others on the same domain can deadlock inside Fast DDS (seen in the tests:
    ``DomainParticipant::set_listener`` spinning with the GIL held while an intraprocess discovery
    callback waited). A client's node in a shared participant is discovered faster too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int | None, list[Any]] = {}  # domain -> [context, users]

    def acquire(self, domain_id: int | None) -> Context:
        with self._lock:
            entry = self._entries.get(domain_id)
            if entry is None or not entry[0].ok():
                context = Context()
                rclpy.init(context=context, domain_id=domain_id)
                entry = self._entries[domain_id] = [context, 0]
            entry[1] += 1
            return entry[0]

    def release(self, context: Context) -> None:
        with self._lock:
            for domain_id, entry in list(self._entries.items()):
                if entry[0] is context:
                    entry[1] -= 1
                    if entry[1] > 0:
                        return
                    del self._entries[domain_id]
                    break
        rclpy.try_shutdown(context=context)


_shared_contexts = _SharedContexts()


class BackgroundNode:
    """A node spun by a daemon thread, in an rclpy context shared by the process's BackgroundNodes.

    For code that talks to the PixelLM node from a plain script (a benchmark, a test, a Python
    user's tool): the main thread publishes, calls and waits on futures or flags while the
    executor delivers replies in the background. The context is not rclpy's default one, so the
    node is apart from any other rclpy user in the process (their ``rclpy.shutdown()`` leaves it
    running); the BackgroundNodes of one domain share it (``_SharedContexts``): one participant,
    each node with its own executor and thread. ``domain_id`` None takes ROS_DOMAIN_ID.
    ``threads`` > 1 gives a multi-threaded executor, so one slow callback does not hold up the others.
    ``start`` False: the thread starts at ``start()``, so that entities rclpy cannot add to a spinning
    node safely are made first (an ActionClient joins its node's waitables before it has its lock, and
    an executor building its wait set in between raises: ros2/rclpy#1589, in the rclpy of the Kilted wheels).
    """

    def __init__(self, name: str, domain_id: int | None = None, threads: int = 1, start: bool = True) -> None:
        self.context = _shared_contexts.acquire(domain_id)
        try:
            self.node = rclpy.create_node(name, context=self.context)
        except Exception:
            _shared_contexts.release(self.context)
            raise
        self.executor = (
            MultiThreadedExecutor(num_threads=threads, context=self.context)
            if threads > 1
            else SingleThreadedExecutor(context=self.context)
        )
        self.executor.add_node(self.node)
        self._closed = False
        self.errors: list[str] = []  # tracebacks of callbacks that raised (each also printed)
        self._thread = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start spinning (once; again, or after ``close``: no-op)."""
        if self._thread.ident is None and not self._closed:
            self._thread.start()

    def _spin(self) -> None:
        """Spin until ``close``. An exception out of a callback ends rclpy's ``spin``; it is logged
        (and kept in ``errors``) and the spinning goes on: one bad callback must not leave every
        later reply of this node undelivered, with nothing said."""
        while not self._closed and self.context.ok():
            try:
                self.executor.spin()
                return
            except ExternalShutdownException:
                return
            except Exception:  # noqa: BLE001 - logged and survived, see the docstring
                if self._closed or not self.context.ok():
                    return  # close() shut the executor down under a running wait
                self.errors.append(traceback.format_exc())
                print(f"[pixellm_ros] {self.node.get_name()}: a callback raised, spinning on:\n{self.errors[-1]}",
                      file=sys.stderr, flush=True)

    def close(self, join_timeout: float = 5.0) -> None:
        """Stop the executor, destroy the node, give the shared context back (once; again: no-op)."""
        if self._closed:
            return
        self._closed = True
        self.executor.shutdown()
        if self._thread.ident is not None:  # started
            self._thread.join(join_timeout)
        self.node.destroy_node()
        _shared_contexts.release(self.context)
