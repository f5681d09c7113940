"""The client side of the node tests: a ROS context in this process, and the node in another one.

``RosClient`` owns an rclpy context on the test's own domain id, one node, and an executor that
spins in a background thread; tests wait on conditions with ``wait_until``. ``NodeProcess`` starts
pixellm_node through the runner (``python -m pixellm_ros.ros.runner node ...``) exactly as a user
without ``ros2 launch`` would, and stops it with SIGINT (as Ctrl-C would).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult
from pixellm_ros.ros.client import PixelLMClient
from pixellm_ros.ros.package_files import default_params_file
from pixellm_ros.ros.qos import client_request_qos
from pixellm_ros.ros.runner import node_command
from pixellm_ros.ros.spinning import BackgroundNode, GroupOutbox

RELIABLE_DEEP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def ask_on_frame(send: Callable[[int], Header], ask: Callable[[], SegmentationResult], attempts: int = 6,
                 settle_s: float = 0.2) -> SegmentationResult:
    """Send a camera frame, then a request for "the newest frame", until the answer is about it.

    Frames and requests travel on different channels: a best-effort frame may be dropped while
    discovery settles, an instruction may overtake its frame; the result's header says which
    frame the node used. ``send(attempt)`` publishes (a new frame or the same again) and returns
    the header the answer must carry; ``settle_s * (attempt + 1)`` passes before ``ask``.
    """
    header = result = None
    for attempt in range(attempts):
        header = send(attempt)
        time.sleep(settle_s * (attempt + 1))
        result = ask()
        if result.header == header:
            return result
    raise AssertionError(f"no answer about the frame {header} in {attempts} attempts "
                         f"(the last one was about {result.header if result else None})")


def rgb_image_msg(rgb: np.ndarray, stamp: Any, frame_id: str, encoding: str = "rgb8") -> Image:
    """An Image of an (H, W, 3) RGB array in rgb8 or bgr8 (built here, not with the node's code)."""
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    height, width = rgb.shape[:2]
    return Image(header=Header(stamp=stamp, frame_id=frame_id), height=height, width=width, encoding=encoding,
                 step=width * 3, data=np.ascontiguousarray(pixels).tobytes())


class ResultLog:
    """Every SegmentationResult seen on a topic, in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[SegmentationResult] = []

    def add(self, msg: SegmentationResult) -> None:
        with self._lock:
            self._items.append(msg)

    def all(self) -> list[SegmentationResult]:
        with self._lock:
            return list(self._items)

    def by_id(self, request_id: str) -> list[SegmentationResult]:
        return [m for m in self.all() if m.request_id == request_id]

    def where(self, predicate: Callable[[SegmentationResult], bool]) -> list[SegmentationResult]:
        return [m for m in self.all() if predicate(m)]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """A DiagnosticStatus's key / value pairs."""
    return {kv.key: kv.value for kv in status.values}


class HealthLog:
    """One status's history from /diagnostics (``name``: e.g. "/pixellm: camera wrist"), newest last."""

    def __init__(self, client: RosClient, name: str) -> None:
        self._lock = threading.Lock()
        self._items: list[DiagnosticStatus] = []
        self._name = name
        client.node.create_subscription(DiagnosticArray, "/diagnostics", self._add, 10)

    def _add(self, msg: DiagnosticArray) -> None:
        with self._lock:
            self._items += [s for s in msg.status if s.name == self._name]

    def seen(self, predicate: Callable[[DiagnosticStatus], bool]) -> list[DiagnosticStatus]:
        with self._lock:
            return [s for s in self._items if predicate(s)]

    def wait_for(self, predicate: Callable[[DiagnosticStatus], bool], timeout: float = 20.0) -> DiagnosticStatus:
        """The newest status that meets ``predicate``, once one has come (the history only grows)."""
        assert wait_until(lambda: bool(self.seen(predicate)), timeout), \
            f"no such status; the last: {self.seen(lambda _: True)[-1:] or None}"
        return self.seen(predicate)[-1]


class RosClient(BackgroundNode):
    """A client node on ``domain_id``, spun in a background thread (4 executor threads)."""

    def __init__(self, domain_id: int, name: str = "pixellm_test_client") -> None:
        super().__init__(name, domain_id, threads=4)
        self.domain_id = domain_id
        self._pixellm_clients: dict[str, PixelLMClient] = {}
        self._service_clients: dict[tuple[Any, str], Any] = {}
        self._action_clients: dict[str, ActionClient] = {}
        self._goal_outbox = GroupOutbox(self.node)  # the node's default group, as its action clients'
        self._clients_lock = threading.Lock()

    def now(self) -> Any:
        return self.node.get_clock().now().to_msg()

    # -- topics
    def result_log(self, topic: str) -> ResultLog:
        log = ResultLog()
        self.node.create_subscription(SegmentationResult, topic, log.add, RELIABLE_DEEP)
        return log

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE_DEEP) -> list[Any]:
        received: list[Any] = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def publisher(self, msg_type: Any, topic: str, depth: int = 10) -> Any:
        return self.node.create_publisher(msg_type, topic, QoSProfile(depth=depth,
                                                                      reliability=ReliabilityPolicy.RELIABLE))

    def image_publisher(self, topic: str) -> Any:
        return self.publisher(Image, topic, depth=1)

    # -- services and actions
    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        """One call of service ``name``. Its client is made once and kept: a client made and destroyed
        per call (hundreds a run) is discovery traffic each time, a new chance of the first-response
        race (``client.DISCOVERY_SETTLE_S``), and entity churn under the spinning executor."""
        with self._clients_lock:
            client = self._service_clients.get((srv_type, name))
            if client is None:
                client = self._service_clients[(srv_type, name)] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} did not appear")
        future = client.call_async(request)
        if not wait_until(future.done, timeout):
            client.remove_pending_request(future)
            raise TimeoutError(f"no response from {name}")
        return future.result()

    def pixellm(self, node_name: str) -> PixelLMClient:
        """The shipped client library for ``/node_name`` (one per node, on this test's domain)."""
        if node_name not in self._pixellm_clients:
            self._pixellm_clients[node_name] = PixelLMClient(f"/{node_name}", self.domain_id,
                                                             name=f"pixellm_test_client_{len(self._pixellm_clients)}")
        return self._pixellm_clients[node_name]

    def segment_service(self, node_name: str, image: Image | None, instruction: str, request_id: str = "",
                        timeout: float = 60.0, camera: str = "") -> SegmentationResult:
        """One request over the node's service, through the client library."""
        return self.pixellm(node_name).segment(instruction, image, timeout=timeout, channel="service",
                                               camera=camera, request_id=request_id)

    def close(self, join_timeout: float = 5.0) -> None:
        for pixellm in self._pixellm_clients.values():
            pixellm.close()
        super().close(join_timeout)

    def health(self, node_name: str) -> str:
        """For a failure message: is this client still spinning, and does its DDS discovery see the node?"""
        seen = any(name == node_name for name, _ in self.node.get_node_names_and_namespaces())
        return (f"test client: spin thread {'alive' if self._thread.is_alive() else 'DEAD'}, "
                f"{len(self.all_errors())} callback error(s), the node {'seen' if seen else 'NOT seen'} on the graph")

    def all_errors(self) -> list[str]:
        """Tracebacks of callbacks that raised on this node or its library clients' nodes."""
        return self.errors + [error for pixellm in self._pixellm_clients.values()
                              for error in (pixellm._background.errors if pixellm._background else [])]

    def action_client(self, node_name: str) -> ActionClient:
        """A raw rclpy ActionClient (deep QoS) for the tests of the action protocol itself: goal
        statuses, feedback messages, cancel. Asking questions goes through ``pixellm(...)``."""
        deep = client_request_qos(256)
        with self._clients_lock:  # one per node, kept (as call's service clients)
            client = self._action_clients.get(node_name)
            if client is None:
                # Made inside a callback of the node's default group, the client's own: rclpy 9 adds an
                # ActionClient to the node before it has its lock, and an executor building its wait
                # set in between fails on it (AttributeError: no '_lock'); while a callback of the
                # group runs, the executor leaves the group's entities out of its wait set.
                client = self._action_clients[node_name] = self._in_default_group(lambda: ActionClient(
                    self.node, SegmentAction, f"/{node_name}/segment", goal_service_qos_profile=deep,
                    result_service_qos_profile=deep, cancel_service_qos_profile=deep, feedback_sub_qos_profile=deep),
                    "make the action client")
        if not client.wait_for_server(timeout_sec=30):
            raise TimeoutError("action server did not appear")
        return client

    def send_goal(self, node_name: str, goal: Any, feedback_callback: Callable[[Any], None] | None = None) -> Any:
        """``send_goal_async(...)``'s future of ``action_client(node_name)``, sent from a callback of this
        node's (mutually exclusive) default group, as PixelLMClient sends: from this thread, rclpy's
        send_goal_async can lose the goal response to the executor (ros2/rclpy#1123; spinning.GroupOutbox)."""
        action = self.action_client(node_name)
        return self._in_default_group(lambda: action.send_goal_async(goal, feedback_callback=feedback_callback),
                                      "send the goal")

    def settle_action(self, node_name: str, tries: int = 5, wait_s: float = 30.0) -> int:
        """Make sure the node's goal responses, feedback and results reach this client before a test's
        goals go out: Fast DDS matches each of those paths a moment after the node is discovered,
        and what is written in between is dropped for good (CI, freshly started nodes on a loaded
        machine: a goal left unacknowledged for 60 s; a goal answered in a second with all its
        feedback lost). Sends small goals until one is acknowledged and both its feedback and its
        result come back; returns how many were sent."""
        image = rgb_image_msg(np.zeros((48, 64, 3), dtype=np.uint8), self.now(), "settle")
        for sent in range(1, tries + 1):
            fed = threading.Event()
            future = self.send_goal(node_name, SegmentAction.Goal(image=image, instruction="settle"),
                                    lambda _msg: fed.set())
            if wait_until(future.done, wait_s) and future.result().accepted:
                result = future.result().get_result_async()
                if wait_until(result.done, wait_s) and wait_until(fed.is_set, 2.0):
                    return sent
        raise TimeoutError(f"{node_name}: no goal acknowledged with its feedback and result in {tries} tries")

    def _in_default_group(self, job: Callable[[], Any], what: str) -> Any:
        """``job()``'s value, run inside a callback of the node's default group (``GroupOutbox``)."""
        done: list[Any] = []
        ready = threading.Event()

        def run() -> None:
            try:
                done.append(job())
            finally:
                ready.set()

        self._goal_outbox.submit(run)
        if not ready.wait(30) or not done:
            raise TimeoutError(f"this client's executor did not {what}")
        return done[0]

    # -- lifecycle and parameters (the node's standard services)
    def lifecycle_state(self, node_name: str, timeout: float = 60.0) -> int:
        return self.call(GetState, f"/{node_name}/get_state", GetState.Request(), timeout).current_state.id

    def change_state(self, node_name: str, transition: int, timeout: float = 60.0) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.call(ChangeState, f"/{node_name}/change_state", request, timeout).success

    def set_parameters(self, node_name: str, values: Mapping[str, Any]) -> list[bool]:
        return [r.successful for r in self.set_parameters_results(node_name, values)]

    def set_parameters_results(self, node_name: str, values: Mapping[str, Any]) -> list[Any]:
        """rcl_interfaces SetParametersResult per value (successful, reason), as ``ros2 param set`` sees them."""
        parameters = [ParameterMsg(name=name, value=_parameter_value(value)) for name, value in values.items()]
        response = self.call(SetParameters, f"/{node_name}/set_parameters", SetParameters.Request(parameters=parameters))
        return list(response.results)


def _parameter_value(value: Any) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))


class NodeProcess:
    """pixellm_node (or the demo) in a subprocess started through the runner; log in ``log_path``."""

    def __init__(self, domain_id: int, node_name: str, parameters: Mapping[str, Any], log_path: Path,
                 what: str = "node", remappings: Mapping[str, str] | None = None,
                 command: Sequence[str] | None = None) -> None:
        """what: "node" (pixellm_node named node_name) or "demo" (camera_sim + pixellm_node, whose
        name must then be the default: a __node remap would rename both nodes of the process).
        command: run this instead of the runner (e.g. the scripts/ executable)."""
        self.node_name = node_name
        self.log_path = log_path
        self.parameters = dict(parameters)
        if command is None:
            command = node_command(default_params_file(), parameters, remappings,
                                   node_name=node_name if what == "node" else None)
            if what != "node":
                command[command.index("node")] = what
        # One intra-op thread: the in-process reference engine runs with one too, so both compute
        # bit-identical floats; and the test machine's cores are shared.
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(list(command), env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_active(self, client: RosClient, timeout: float = 90.0,
                    state: int = State.PRIMARY_STATE_ACTIVE) -> None:
        """Wait until the node's lifecycle state (asked through get_state) is ``state``."""
        deadline = time.monotonic() + timeout
        last = "never asked"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the node process exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if (last := client.lifecycle_state(self.node_name, timeout=2.0)) == state:
                    return
            except TimeoutError as error:
                last = str(error)
            time.sleep(0.2)
        raise TimeoutError(f"the node did not reach state {state} in {timeout} s (last answer: {last}; "
                           f"{client.health(self.node_name)}):\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


@contextlib.contextmanager
def active_node(process: NodeProcess, client: RosClient, tail: int = 40) -> Iterator[NodeProcess]:
    """The started node once active; on the way out it is stopped with SIGINT, its log tail printed,
    and a clean exit (code 0) required."""
    try:
        process.wait_active(client)
        yield process
    finally:
        code = process.stop()
        print(process.log_tail(tail))
    assert code == 0, f"the node did not exit cleanly on SIGINT (exit code {code})"


@dataclass
class NodeRig:
    """A node of a test module's own: its process, the client's log of its ``~/result`` and the
    publisher of its camera frames (``/<node>/camera``, remapped from image_raw). A module with more
    entities declares a subclass with fields for them (see node_rig)."""

    client: RosClient
    node: NodeProcess
    results: ResultLog
    image_pub: Any


Rig = TypeVar("Rig", bound=NodeRig)


@contextlib.contextmanager
def node_rig(rig_type: type[Rig], client: RosClient, domain_id: int, name: str, parameters: Mapping[str, Any],
             log_dir: Path, ready: Callable[[], bool] | None = None, tail: int = 80, **extras: Any) -> Iterator[Rig]:
    """pixellm_node ``name`` with ``parameters`` in its own process, active, its camera subscription
    (and ``ready``, e.g. other entities) matched: ``rig_type(client, node, results, image_pub,
    **extras)``. Stopped with SIGINT on the way out (``active_node``: log tail, clean exit required)."""
    results = client.result_log(f"/{name}/result")
    image_pub = client.image_publisher(f"/{name}/camera")
    process = NodeProcess(domain_id, name, parameters, log_dir / f"{name}.log",
                          remappings={"image_raw": f"/{name}/camera"})
    with active_node(process, client, tail):
        assert wait_until(lambda: image_pub.get_subscription_count() > 0 and (ready is None or ready()), 30), \
            f"the node's topics never matched:\n{process.log_tail()}"
        yield rig_type(client, process, results, image_pub, **extras)


def compressed_png_msg(rgb: np.ndarray, stamp: Any, frame_id: str) -> CompressedImage:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return CompressedImage(header=Header(stamp=stamp, frame_id=frame_id), format="png", data=encoded.tobytes())
