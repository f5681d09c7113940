"""``PixelLMClient``: ask a running pixellm_node from plain Python (a script, a test, a planner).

    from pixellm_ros.ros.client import PixelLMClient

    with PixelLMClient("/pixellm") as pixellm:
        pixellm.wait_until_active(timeout=120)
        result = pixellm.segment("segment the red cup", on_text=lambda delta: print(delta, end=""))
        for target in result.targets:
            print(target.name, target.box, target.score)

The client owns an rclpy context, a node and the thread that spins it, so it works next to any
other rclpy user in the process. ``segment`` goes through the action by default (the answer text
streams to ``on_text``; a timeout or Ctrl-C cancels the goal) or through the service
(``channel="service"``); ``image`` is an (H, W, 3) uint8 RGB array or a ``sensor_msgs/Image``
(None: the node's newest camera frame, of ``camera``). It always returns the node's
``SegmentationResult`` — read ``status`` — and raises only when no result can come:

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

import threading
import time
from typing import Any, Callable

import numpy as np
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.action import ActionClient
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult
from pixellm_ros.srv import Segment as SegmentService

from .conversions import error_result_msg, rgb_to_image_msg
from .qos import client_request_qos
from .spinning import BackgroundNode

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
                 request_depth: int = DEFAULT_REQUEST_DEPTH) -> None:
        self.node_name = node if node.startswith("/") else "/" + node
        self._background = BackgroundNode(name, domain_id, threads=2)
        ros_node = self._background.node
        request_qos = client_request_qos(request_depth)
        self._action = ActionClient(ros_node, SegmentAction, f"{self.node_name}/segment",
                                    goal_service_qos_profile=request_qos, result_service_qos_profile=request_qos,
                                    cancel_service_qos_profile=request_qos, feedback_sub_qos_profile=request_qos)
        self._service = ros_node.create_client(SegmentService, f"{self.node_name}/segment", qos_profile=request_qos)
        self._state = ros_node.create_client(GetState, f"{self.node_name}/get_state")
        self._settled: set[str] = set()
        self._lock = threading.Lock()

    @property
    def ros_node(self) -> Any:
        """The client's own rclpy node (to add subscriptions next to the calls)."""
        return self._background.node

    def __enter__(self) -> PixelLMClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._background.close()

    # ------------------------------------------------------------------ the node's state
    def lifecycle_state(self, timeout: float = 5.0) -> str:
        """The node's lifecycle state ("unconfigured", "inactive", "active", "finalized", ...)."""
        if not self._state.wait_for_service(timeout_sec=timeout):
            raise NodeNotActiveError(f"no node {self.node_name}: its lifecycle services did not appear in {timeout} s "
                                     "(is it running, in this ROS_DOMAIN_ID, under this name and namespace?)")
        future = self._state.call_async(GetState.Request())
        if not _wait(future.done, timeout):
            raise NodeNotActiveError(f"{self.node_name} did not answer get_state within {timeout} s")
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
                camera: str = "", request_id: str = "") -> SegmentationResult:
        """One instruction's result (see the module docstring for what raises)."""
        pending = self.request(instruction, image, on_text, timeout, channel, camera, request_id)
        try:
            return pending.result(timeout)
        except BaseException:  # TimeoutError, KeyboardInterrupt: the node must not work on for nobody
            pending.cancel()
            raise

    def request(self, instruction: str, image: np.ndarray | Image | None = None,
                on_text: Callable[[str], None] | None = None, timeout: float = 60.0, channel: str = "action",
                camera: str = "", request_id: str = "") -> PendingResult:
        """Send a request and return at once; ``PendingResult.result()`` waits for its answer.

        For many requests at once (several robots, a burst): each one gets exactly one result.
        ``timeout`` bounds only the wait for the node's service / action to be there.
        """
        if channel not in ("action", "service"):
            raise ValueError(f"channel must be 'action' or 'service', got {channel!r}")
        image_msg = _image_msg(image)
        pending = PendingResult(self.node_name, on_text)
        if channel == "service":
            self._ready("service", lambda t: self._service.wait_for_service(timeout_sec=t), timeout)
            future = self._service.call_async(SegmentService.Request(
                image=image_msg, instruction=instruction, request_id=request_id, camera=camera))
            future.add_done_callback(lambda f: pending.finish(f.result().result))
            pending.forget = lambda: self._service.remove_pending_request(future)
            return pending
        self._ready("action", lambda t: self._action.wait_for_server(timeout_sec=t), timeout)
        goal = SegmentAction.Goal(image=image_msg, instruction=instruction, request_id=request_id, camera=camera)
        feedback = (lambda msg: pending.stream(msg.feedback.delta)) if on_text is not None else None

        def on_goal_response(future: Any) -> None:
            handle = future.result()
            if not handle.accepted:
                pending.finish(error_result_msg(
                    SegmentationResult.STATUS_QUEUE_FULL, f"{self.node_name} rejected the goal: its request queue "
                    "is full (its result topic has the same answer)", request_id, instruction.strip(),
                    image_msg.header if image_msg.width else None, camera=camera))
                return
            pending.handle = handle
            handle.get_result_async().add_done_callback(lambda f: pending.finish(f.result().result.result))

        self._action.send_goal_async(goal, feedback_callback=feedback).add_done_callback(on_goal_response)
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

    def __init__(self, node_name: str, on_text: Callable[[str], None] | None = None) -> None:
        self._node_name = node_name
        self._on_text = on_text
        self._done = threading.Event()
        self._result: SegmentationResult | None = None
        self._text_lock = threading.Lock()
        self._streamed = ""
        self._stream_open = True
        self.handle: Any = None  # the accepted goal's handle (action)
        self.forget: Callable[[], None] | None = None  # drop a pending service call

    def stream(self, delta: str) -> None:
        with self._text_lock:
            if not self._stream_open or self._on_text is None:
                return
            self._streamed += delta
            self._on_text(delta)

    def finish(self, result: SegmentationResult) -> None:
        if not self._done.is_set():
            self._result = result
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> SegmentationResult:
        """The node's result; TimeoutError after ``timeout`` s, ResultLostError for an empty result."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"no result from {self._node_name} within {timeout} s")
        assert self._result is not None
        self._close_stream(self._result.answer)
        return _checked(self._result)

    def _close_stream(self, answer: str) -> None:
        if self._on_text is None:
            return
        _wait(lambda: self._streamed == answer, STREAM_SETTLE_S)
        with self._text_lock:
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
