"""``PixelLMClient``: ask a running pixellm_node from plain Python (a script, a test, a planner).

    from pixellm_ros.ros.client import PixelLMClient

    with PixelLMClient("/pixellm") as pixellm:
        pixellm.wait_until_active(timeout=120)
        result = pixellm.segment("segment the red cup", on_text=lambda delta: print(delta, end=""))
        for target in result.targets:
            print(target.name, target.box, target.score)

By default the client brings its own node and the thread that spins it (in a context the process's
clients share, apart from rclpy's default one), so it works next to any other rclpy user in the
process. A robot program that has a node already passes it instead, ``PixelLMClient("/pixellm",
ros_node=my_node)``: the client's service, action and lifecycle clients then live on that node,
in a callback group of their own, and the program's executor delivers their replies
(one DDS participant for the whole program, no extra thread). ``segment`` blocks until its result
comes, so call it where the executor can still run the client's callbacks: from another thread,
or from a callback of a ``MultiThreadedExecutor``; in a ``SingleThreadedExecutor``'s callback use
``request(...)`` and ``PendingResult.add_done_callback``.

``segment`` goes through the action by default (the answer text streams to ``on_text``; a
timeout or Ctrl-C cancels the goal) or through the service (``channel="service"``); ``image``
is an (H, W, 3) uint8 RGB array or a ``sensor_msgs/Image`` (None: the node's newest camera
frame, of ``camera``). It always returns the node's ``SegmentationResult`` — read ``status`` —
and raises only when no result can come:

    NodeNotActiveError   the node is not there, or not active (its service and action exist only
                         once it is configured; it answers only while active)
    TimeoutError         no result within ``timeout`` (the goal is cancelled)
    ResultLostError      the node no longer knew the goal when the result was asked for
                         (``action_result_timeout_s`` passed)

A goal the node rejects because its queue is full comes back as a result with STATUS_QUEUE_FULL
(the node publishes the same result on its result topic). All request channels use the node's
``qos.request_depth`` on the client's side too (``qos.client_request_qos``), so a burst of calls
from one client is not overwritten before the node has it.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any, Callable

import numpy as np
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.action import ActionClient
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult
from pixellm_ros.srv import Segment as SegmentService

from .conversions import error_result_msg, rgb_to_image_msg
from .qos import client_request_qos
from .spinning import BackgroundNode, GroupOutbox

DEFAULT_REQUEST_DEPTH = 256
# Fast DDS matches a service's response path a moment after its request path: a request sent the
# instant the server is discovered can have its response dropped. Wait this long once, before the
# first request (measured: 0.1-0.3 s on a loaded 2-core machine).
DISCOVERY_SETTLE_S = 0.5
# How long ``result()`` waits for feedback still on its way before completing the text itself.
STREAM_SETTLE_S = 0.3
_STATE_NAMES = {State.PRIMARY_STATE_UNCONFIGURED: "unconfigured", State.PRIMARY_STATE_INACTIVE: "inactive",
                State.PRIMARY_STATE_ACTIVE: "active", State.PRIMARY_STATE_FINALIZED: "finalized"}


class NodeNotActiveError(RuntimeError):
    """The node is not reachable, or not in the active state (the text says which, and what to do)."""


class ResultLostError(RuntimeError):
    """The node answered the result request for a goal it no longer knew (a default result)."""


class PixelLMClient:
    """A client of one pixellm_node (``node``: its fully qualified name, e.g. "/pixellm")."""

    def __init__(self, node: str = "/pixellm", domain_id: int | None = None, name: str = "pixellm_client",
                 request_depth: int = DEFAULT_REQUEST_DEPTH, ros_node: Any = None) -> None:
        """``ros_node``: an rclpy node of the caller's, spun by the caller's executor, to create the
        client's entities on (its context decides the domain: ``domain_id`` and ``name`` are then
        unused); make the client before that executor spins the node (in the node's ``__init__``, as
        rclpy's examples make their clients): an ActionClient added to a node being spun can raise
        in the executor (ros2/rclpy#1589). None: the client's own node ``name`` on ``domain_id``
        (None: ROS_DOMAIN_ID)."""
        self.node_name = node if node.startswith("/") else "/" + node
        if ros_node is not None and domain_id is not None:
            raise ValueError("domain_id is the given ros_node's: its context is already on a domain")
        # its own node spins once the entities are made (spinning.BackgroundNode's start: rclpy#1589)
        self._background = BackgroundNode(name, domain_id, threads=2, start=False) if ros_node is None else None
        self._ros_node = ros_node if ros_node is not None else self._background.node
        request_qos = client_request_qos(request_depth)
        # On the caller's node, a group of the client's own: its replies are delivered while one of the
        # caller's callbacks waits in segment(). Mutually exclusive: rclpy's ActionClient must not run
        # two of its own callbacks at once (its goal bookkeeping has no lock).
        group = MutuallyExclusiveCallbackGroup() if ros_node is not None else None
        self._action = ActionClient(self._ros_node, SegmentAction, f"{self.node_name}/segment",
                                    goal_service_qos_profile=request_qos, result_service_qos_profile=request_qos,
                                    cancel_service_qos_profile=request_qos, feedback_sub_qos_profile=request_qos,
                                    callback_group=group)
        self._service = self._ros_node.create_client(SegmentService, f"{self.node_name}/segment",
                                                     qos_profile=request_qos, callback_group=group)
        self._state = self._ros_node.create_client(GetState, f"{self.node_name}/get_state", callback_group=group)
        # Goals go out from a callback of the action client's own group (GroupOutbox: ros2/rclpy#1123).
        self._goal_outbox = GroupOutbox(self._ros_node, group)
        self._settled: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        # what a wait that never ends most likely means when the caller's executor spins the node
        self._spin_hint = "" if ros_node is None else (
            ": is the given ros_node spun by an executor that is free to run the client's callbacks "
            "(another thread, or a MultiThreadedExecutor)?")
        if self._background is not None:
            self._background.start()

    @property
    def ros_node(self) -> Any:
        """The rclpy node the client's entities live on: its own, or the one it was given."""
        return self._ros_node

    def __enter__(self) -> PixelLMClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Destroy the client's entities; its own node and thread too, never a node it was given
        (once; again: no-op)."""
        if self._closed:
            return
        self._closed = True
        if self._background is not None:
            self._background.close()
            return
        self._action.destroy()
        self._ros_node.destroy_client(self._service)
        self._ros_node.destroy_client(self._state)
        self._goal_outbox.destroy()

    # ------------------------------------------------------------------ the node's state
    def lifecycle_state(self, timeout: float = 5.0) -> str:
        """The node's lifecycle state ("unconfigured", "inactive", "active", "finalized", ...)."""
        if not self._state.wait_for_service(timeout_sec=timeout):
            raise NodeNotActiveError(f"no node {self.node_name}: its lifecycle services did not appear in {timeout} s "
                                     "(is it running, in this ROS_DOMAIN_ID, under this name and namespace?)")
        future = self._state.call_async(GetState.Request())
        if not _wait(future.done, timeout):
            raise NodeNotActiveError(f"{self.node_name} did not answer get_state within {timeout} s{self._spin_hint}")
        state = future.result().current_state
        return _STATE_NAMES.get(state.id, state.label)

    def wait_until_active(self, timeout: float = 60.0) -> None:
        """Return once the node is active, or raise NodeNotActiveError saying what state it is in."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while True:
            try:
                state = self.lifecycle_state(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            except NodeNotActiveError:
                if time.monotonic() >= deadline:
                    raise
            if state == "active":
                return
            if time.monotonic() >= deadline:
                raise NodeNotActiveError(
                    f"{self.node_name} is {state}, not active, after {timeout} s: it answers only while active "
                    f"(ros2 lifecycle set {self.node_name} configure, then activate; or set autostart: true)")
            time.sleep(0.1)

    # ------------------------------------------------------------------ asking
    def segment(self, instruction: str, image: np.ndarray | Image | None = None,
                on_text: Callable[[str], None] | None = None, timeout: float = 60.0, channel: str = "action",
                camera: str = "", request_id: str = "", track: bool = False) -> SegmentationResult:
        """One instruction's result (see the module docstring for what raises). ``track``: the node
        follows its targets on ``~/tracks`` and each target of the result carries its ``track_id``."""
        pending = self.request(instruction, image, on_text, timeout, channel, camera, request_id, track)
        try:
            return pending.result(timeout)
        except BaseException:  # TimeoutError, KeyboardInterrupt: the node must not work on for nobody
            pending.cancel()
            raise

    def request(self, instruction: str, image: np.ndarray | Image | None = None,
                on_text: Callable[[str], None] | None = None, timeout: float = 60.0, channel: str = "action",
                camera: str = "", request_id: str = "", track: bool = False) -> PendingResult:
        """Send a request and return at once; ``PendingResult.result()`` waits for its answer.

        For many requests at once (several robots, a burst): each one gets exactly one result.
        ``timeout`` bounds only the wait for the node's service / action to be there.
        """
        if channel not in ("action", "service"):
            raise ValueError(f"channel must be 'action' or 'service', got {channel!r}")
        image_msg = _image_msg(image)
        pending = PendingResult(self.node_name, on_text, timeout_hint=self._spin_hint)
        if channel == "service":
            self._ready("service", lambda t: self._service.wait_for_service(timeout_sec=t), timeout)
            future = self._service.call_async(SegmentService.Request(
                image=image_msg, instruction=instruction, request_id=request_id, camera=camera, track=track))
            future.add_done_callback(lambda f: _if_answered(f, lambda response: pending.finish(response.result)))
            pending.forget = lambda: self._service.remove_pending_request(future)
            return pending
        self._ready("action", lambda t: self._action.wait_for_server(timeout_sec=t), timeout)
        goal = SegmentAction.Goal(image=image_msg, instruction=instruction, request_id=request_id, camera=camera,
                                  track=track)
        feedback = (lambda msg: pending.stream(msg.feedback.delta)) if on_text is not None else None

        def on_goal_handle(handle: Any) -> None:
            if not handle.accepted:
                pending.finish(error_result_msg(
                    SegmentationResult.STATUS_QUEUE_FULL, f"{self.node_name} rejected the goal: its request queue "
                    "is full (its result topic has the same answer)", request_id, instruction.strip(),
                    image_msg.header if image_msg.width else None, camera=camera))
                return
            pending.handle = handle
            handle.get_result_async().add_done_callback(
                lambda f: _if_answered(f, lambda response: pending.finish(response.result.result)))

        self._goal_outbox.submit(lambda: self._action.send_goal_async(goal, feedback_callback=feedback)
                                 .add_done_callback(lambda f: _if_answered(f, on_goal_handle)))
        return pending

    def _ready(self, what: str, is_ready: Callable[[float], bool], timeout: float) -> None:
        if not is_ready(min(timeout, 5.0)):
            state = self.lifecycle_state(timeout=min(timeout, 5.0))  # raises when the node is not there at all
            if state != "active" and not is_ready(0.0):
                raise NodeNotActiveError(f"{self.node_name} is {state}: its {what} exists only once the node is "
                                         f"configured, and it answers only while active")
            if not is_ready(max(0.0, timeout - 5.0)):
                raise TimeoutError(f"the {what} of {self.node_name} did not appear within {timeout} s")
        with self._lock:
            if what not in self._settled:
                time.sleep(DISCOVERY_SETTLE_S)
                self._settled.add(what)

class PendingResult:
    """The answer to a request sent with ``PixelLMClient.request``; filled by the client's spin thread.

    Streamed text: feedback and the result travel on different DDS channels, so the last pieces
    of text can arrive after the result. ``result()`` waits a moment for them, then hands
    ``on_text`` whatever is still missing, so the pieces always add up to ``result.answer``.
    """

    def __init__(self, node_name: str, on_text: Callable[[str], None] | None = None, timeout_hint: str = "") -> None:
        self._node_name = node_name
        self._on_text = on_text
        self._timeout_hint = timeout_hint
        self._done = threading.Event()
        self._done_callbacks: list[Callable[[PendingResult], None]] = []
        self._result: SegmentationResult | None = None
        self._lock = threading.Lock()
        self._streamed = ""
        self._stream_open = True
        self.handle: Any = None  # the accepted goal's handle (action)
        self.forget: Callable[[], None] | None = None  # drop a pending service call

    def stream(self, delta: str) -> None:
        with self._lock:
            if not self._stream_open or self._on_text is None:
                return
            self._streamed += delta
            try:
                self._on_text(delta)
            except Exception:  # noqa: BLE001 - the caller's callback, on the client's spin thread
                self._stream_open = False  # no more text for it; the result still comes
                _report("on_text raised; the rest of this answer's text is not streamed to it")

    def finish(self, result: SegmentationResult) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._result = result
            self._done.set()
            callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            _call_done_callback(callback, self)

    def done(self) -> bool:
        return self._done.is_set()

    def add_done_callback(self, callback: Callable[[PendingResult], None]) -> None:
        """Call ``callback(self)`` once the result is there (at once if it is): on the executor
        thread that delivered it, so it must not block; ``self.result(0)`` then reads it (with
        ``on_text``, after waiting at most STREAM_SETTLE_S for text still on its way)."""
        with self._lock:
            if not self._done.is_set():
                self._done_callbacks.append(callback)
                return
        _call_done_callback(callback, self)

    def result(self, timeout: float | None = None) -> SegmentationResult:
        """The node's result; TimeoutError after ``timeout`` s, ResultLostError for an empty result."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"no result from {self._node_name} within {timeout} s{self._timeout_hint}")
        assert self._result is not None
        self._close_stream(self._result.answer)
        return _checked(self._result)

    def _close_stream(self, answer: str) -> None:
        if self._on_text is None:
            return
        _wait(lambda: self._streamed == answer, STREAM_SETTLE_S)
        with self._lock:
            if self._stream_open and answer.startswith(self._streamed) and answer != self._streamed:
                self._on_text(answer[len(self._streamed):])
                self._streamed = answer
            self._stream_open = False

    def cancel(self) -> None:
        """Cancel the goal (action) or stop waiting for the response (service)."""
        if self.handle is not None and not self._done.is_set():
            self.handle.cancel_goal_async()
        elif self.forget is not None and not self._done.is_set():
            self.forget()


def _if_answered(future: Any, deliver: Callable[[Any], None]) -> None:
    """``deliver(response)`` for a future that holds one (a cancelled or dropped call holds None)."""
    if future.done() and not future.cancelled() and future.result() is not None:
        deliver(future.result())


def _call_done_callback(callback: Callable[[PendingResult], None], pending: PendingResult) -> None:
    try:
        callback(pending)
    except Exception:  # noqa: BLE001 - the caller's callback must not stop the client's spinning
        _report("a done callback raised")


def _report(what: str) -> None:
    print(f"[pixellm_ros] PixelLMClient: {what}:\n{traceback.format_exc()}", file=sys.stderr, flush=True)


def _image_msg(image: np.ndarray | Image | None) -> Image:
    if image is None:
        return Image()  # no pixels at all: the node's newest camera frame
    if isinstance(image, Image):
        return image
    return rgb_to_image_msg(np.ascontiguousarray(image), Header(frame_id="pixellm_client"))


def _checked(result: SegmentationResult) -> SegmentationResult:
    if result.status == SegmentationResult.STATUS_UNKNOWN:
        raise ResultLostError("the node answered with an empty result: it no longer knew the request "
                              "(for an action, action_result_timeout_s may have passed)")
    return result


def _wait(done: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
