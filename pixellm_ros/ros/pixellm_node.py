"""``pixellm_node``: PixelLM as a ROS 2 lifecycle node (lifecycle, entities and wiring).

The request path itself (admission, frame binding and age, the engine run, status codes) is
``request_flow.py``; the queue and its thread ``worker.py``; every parameter ``params.py``; every
QoS profile ``qos.py``. The interface (topics, service, action), the policies and the parameters
are documented in the README ("The node") and in ``config/pixellm.yaml``.

Lifecycle: ``configure`` checks the parameters and creates the subscriptions, publishers, the
service and the action server (while unconfigured or finalized they do not exist); ``activate``
loads the model and starts the worker; ``deactivate`` stops the worker (the running request is
asked to stop, waiting ones are answered ``STATUS_NOT_READY``) and frees the model; ``cleanup``
removes the entities. A failing transition always logs why.

Threads and callback groups: camera images, one MutuallyExclusive group (the callback only stores
the message); instructions, standing-instruction and diagnostics timers, one MutuallyExclusive
group (they only queue or read counters); service and action, one Reentrant group (a caller waits
on its own executor thread until the worker answers; at most queue_size + 1 do, the rest are
answered at once). Spun by a MultiThreadedExecutor (``executables.py``) with threads for those.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult as ResultMsg
from pixellm_ros.srv import Segment as SegmentService

from . import params as P
from . import qos
from .conversions import error_result_msg, rgb_to_image_msg
from .diagnostics import CameraHealth, NodeHealth, RateMeter, ResultTally, diagnostic_array
from .engine_host import load_engine, probability_to_logit
from .request_flow import RequestFlow, RequestRefused
from .requests import BoundImage, CameraInput, LatestFrame, RequestIds, SegmentRequest
from .worker import RequestWorker, SubmitOutcome

NODE_NAME = "pixellm"
SHUTTING_DOWN = "the node is shutting down"


class PixelLMNode(LifecycleNode):
    """The PixelLM lifecycle node (see the module docstring and the README)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._bad_overrides = P.declare_node_parameters(self)
        self._settings: Any = None
        self._cameras: dict[str, CameraInput] = {}
        self._meters: dict[str, RateMeter] = {}
        self._flow = RequestFlow(self._age_s)
        self._ids = RequestIds(self.get_name())
        self._lock = threading.Lock()
        self._worker: RequestWorker[SegmentRequest] | None = None
        self._engine: Any = None
        self._made: list[tuple[str, Any]] = []  # (kind, entity), destroyed in reverse order
        self._made_timers: dict[str, Any] = {}
        self._result_pub: Any = None
        self._answer_pub: Any = None
        self._debug_pub: Any = None
        self._reserved_goals: set[int] = set()  # id() of goal messages holding a queue place
        self._in_flight = 0  # service / action callbacks waiting for their result
        self._accepting = True
        self._standing_pending = False
        self._standing_seq = 0
        self._overlay_warned = False
        self._tally = ResultTally()
        self._groups = {name: MutuallyExclusiveCallbackGroup() for name in ("image", "instruction")}
        self._groups["request"] = ReentrantCallbackGroup()
        if hasattr(self, "add_pre_set_parameters_callback"):  # Iron and later
            self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        values = P.parameter_values(self)
        for warning in P.unknown_overrides(self._parameter_overrides, values.get("cameras.names") or ()):
            self.get_logger().warning(warning)
        try:
            if self._bad_overrides:
                raise P.SettingsError("; ".join(self._bad_overrides.values()))
            settings = P.settings_from_values(values)
            problems = P.declare_camera_parameters(self, settings.camera_names)
            if problems:
                raise P.SettingsError("; ".join(problems.values()))
            cameras = P.camera_settings(settings, P.parameter_values(self))
            self._settings = settings
            self._create_entities(settings, cameras)
        except Exception as error:  # noqa: BLE001 - every configure failure says why, and leaves nothing behind
            self._destroy_entities()
            self._settings = None
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        model = str(settings.model_path) if settings.model_path else "the embedded default model"
        topics = ", ".join(f"{c.name} on '{c.topic}'" for c in self._cameras.values())
        self.get_logger().info(f"configured: model {model} on {settings.device} ({settings.dtype}), cameras {topics}, "
                               f"queue_size {settings.queue_size}, request_depth {settings.request_depth}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().info("activating: loading the model")
        try:
            settings = P.replace_fields(self._settings, P.parameter_values(self), [P.ACTIVATE])
            engine = load_engine(settings)
        except Exception as error:  # noqa: BLE001 - any load failure fails the transition, with its text
            self.get_logger().error(f"activate failed: could not load the model: {type(error).__name__}: {error}")
            return TransitionCallbackReturn.FAILURE
        worker: RequestWorker[SegmentRequest] = RequestWorker(
            settings.queue_size, handle=lambda request: self._run_request(engine, request),
            refuse=lambda request, reason: self._refuse(request, RequestRefused(ResultMsg.STATUS_NOT_READY, reason)),
            on_crash=self._on_worker_crash)
        with self._lock:
            self._settings, self._engine, self._worker = settings, engine, worker
            self._standing_pending, self._accepting = False, True
        worker.start()
        self.get_logger().info("active: waiting for instructions")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker_and_release("the node was deactivated", finish_within=0.0)
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._destroy_entities()
        self._settings = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release_all(SHUTTING_DOWN)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.release_all("the node hit an error")
        return TransitionCallbackReturn.SUCCESS

    def release_all(self, reason: str) -> None:
        """Stop the worker, free the model, remove the entities (idempotent; also used at exit)."""
        finish = self._settings.shutdown_timeout_s if self._settings is not None else 0.0
        self._stop_worker_and_release(reason, finish_within=finish)
        self._destroy_entities()

    def startup_problem(self, name: str) -> str:
        """What was wrong with a parameter's start-up value (a parameters-file value of a wrong type)."""
        return self._bad_overrides.get(name, "")

    def autostart(self) -> bool:
        """Configure, then activate; True when the node ends up active."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def drain(self, executor: Any, linger_s: float = 0.5) -> None:
        """On SIGINT / SIGTERM, before the shutdown transition: the running request finishes (at most
        ``shutdown_timeout_s``), waiting ones get STATUS_NOT_READY, new ones are refused, and the
        executor keeps spinning until every result has gone out to its caller (service responses,
        action results, the result topic acknowledged by its subscribers)."""
        self._accepting = False
        stopper = threading.Thread(target=self._stop_worker_and_release,
                                   args=(SHUTTING_DOWN, self._settings.shutdown_timeout_s if self._settings else 0.0))
        stopper.start()
        while stopper.is_alive() or self._in_flight > 0:
            executor.spin_once(timeout_sec=0.05)
        end = time.monotonic() + linger_s  # action results are sent by executor tasks after the callbacks
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        for publisher in (self._result_pub, self._answer_pub):
            if publisher is not None:
                publisher.wait_for_all_acked(Duration(seconds=2.0))

    def _stop_worker_and_release(self, reason: str, finish_within: float) -> None:
        with self._lock:
            worker, engine = self._worker, self._engine
            self._worker = self._engine = None
        if worker is not None:
            worker.stop(reason, finish_within=finish_within)
        if engine is not None:
            engine.release()
            self.get_logger().info("model released")

    # ------------------------------------------------------------------ entities
    def _create_entities(self, settings: Any, cameras: list[P.CameraSettings]) -> None:
        add = self._made.append
        depth = settings.request_depth
        self._result_pub = self.create_publisher(ResultMsg, settings.result_topic, qos.result_qos(depth))
        add(("publisher", self._result_pub))
        self._answer_pub = self.create_publisher(String, settings.answer_topic, qos.result_qos(depth))
        add(("publisher", self._answer_pub))
        self._debug_pub = self.create_publisher(Image, settings.debug_image_topic, qos.debug_image_qos())
        add(("publisher", self._debug_pub))
        camera_qos = qos.image_qos(settings.image_reliability, settings.image_depth)
        for index, camera in enumerate(cameras):
            frames = LatestFrame()
            kind = CompressedImage if camera.use_compressed else Image
            subscription = self.create_subscription(kind, camera.topic, frames.put, camera_qos,
                                                    callback_group=self._groups["image"])
            add(("subscription", subscription))
            self._cameras[camera.name] = CameraInput(camera.name, frames, subscription.topic_name,
                                                     subscription.get_publisher_count, settings.image_reliability)
            self._meters[camera.name] = RateMeter()
            topics = ([settings.instruction_topic] if index == 0 else []) + (
                [f"~/{camera.name}/instruction"] if settings.camera_names else [])
            for topic in topics:
                add(("subscription", self.create_subscription(
                    String, topic, lambda msg, name=camera.name: self._on_instruction(msg, name),
                    qos.request_qos(depth), callback_group=self._groups["instruction"])))
        add(("service", self.create_service(SegmentService, "~/segment", self._on_service,
                                            qos_profile=qos.request_qos(depth), callback_group=self._groups["request"])))
        add(("action", ActionServer(
            self, SegmentAction, "~/segment", execute_callback=self._on_goal_execute, goal_callback=self._on_goal,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT, callback_group=self._groups["request"],
            goal_service_qos_profile=qos.request_qos(depth), result_service_qos_profile=qos.request_qos(depth),
            cancel_service_qos_profile=qos.request_qos(depth), feedback_pub_qos_profile=qos.request_qos(depth),
            status_pub_qos_profile=qos.action_status_qos(), result_timeout=int(math.ceil(settings.action_result_timeout_s)))))
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.diagnostics_qos())
        add(("publisher", self._diagnostics_pub))
        self._make_timers(settings)

    def _make_timers(self, settings: Any) -> None:
        for timer in self._made_timers.values():
            self.destroy_timer(timer)
        self._made_timers = {}
        group = self._groups["instruction"]
        if settings.standing_instruction:
            self._made_timers["standing"] = self.create_timer(1.0 / settings.standing_rate_hz, self._on_standing_tick,
                                                         callback_group=group)
        if settings.diagnostics_period_s > 0:
            self._made_timers["diagnostics"] = self.create_timer(settings.diagnostics_period_s, self._publish_diagnostics,
                                                            callback_group=group)

    def _destroy_entities(self) -> None:
        for timer in self._made_timers.values():
            self.destroy_timer(timer)
        destroy = {"publisher": self.destroy_publisher, "subscription": self.destroy_subscription,
                   "service": self.destroy_service, "action": lambda server: server.destroy()}
        for kind, entity in reversed(self._made):
            destroy[kind](entity)
        self._made_timers, self._made, self._cameras, self._meters = {}, [], {}, {}
        self._result_pub = self._answer_pub = self._debug_pub = None

    # ------------------------------------------------------------------ parameters at run time
    def _coerce_parameters(self, parameters: list[Any]) -> list[Any]:
        """An integer for a floating-point parameter is taken as that number (``ros2 param set x 2``)."""
        from rclpy.parameter import Parameter

        cameras = self._settings.camera_names if self._settings is not None else ()
        out = []
        for parameter in parameters:
            spec = P.spec_for(parameter.name, cameras)
            if spec is not None and spec.kind == "float" and parameter.type_ == Parameter.Type.INTEGER:
                parameter = Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
            out.append(parameter)
        return out

    def _on_set_parameters(self, parameters: list[Any]) -> Any:
        """Reject a bad value with its reason; apply live ones at once; say when the others apply."""
        from rcl_interfaces.msg import SetParametersResult

        cameras = self._settings.camera_names if self._settings is not None else ()
        values = P.parameter_values(self)
        later: list[str] = []
        try:
            for parameter in parameters:
                spec = P.spec_for(parameter.name, cameras)
                if spec is None:
                    continue
                P.check_value(spec, parameter.value, parameter.name)
                values[parameter.name] = parameter.value
                if spec.apply != P.LIVE:
                    later.append(f"'{parameter.name}' {P.APPLY_HELP[spec.apply]}")
            P.cross_check(values, [p.name for p in parameters])
        except P.SettingsError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if self._settings is not None:
            self._apply_live(P.replace_fields(self._settings, values, [P.LIVE]))
        if later:  # rclpy drops the reason of a successful result: say it in the log (/rosout)
            self.get_logger().info("accepted: " + "; ".join(later))
        return SetParametersResult(successful=True, reason="; ".join(later))

    def _apply_live(self, settings: Any) -> None:
        old, self._settings = self._settings, settings
        engine = self._engine
        if engine is not None:
            engine.mask_threshold = probability_to_logit(settings.mask_threshold)
        timing = ("standing_instruction", "standing_rate_hz", "diagnostics_period_s")
        if any(getattr(old, f) != getattr(settings, f) for f in timing) and self._made:
            self._make_timers(settings)

    # ------------------------------------------------------------------ accepting requests
    def _on_instruction(self, msg: String, camera: str) -> None:
        self._submit(SegmentRequest(self._ids.next(), msg.data, "topic", camera=camera), None)

    def _on_service(self, request: SegmentService.Request, response: SegmentService.Response) -> Any:
        response.result = self._wait_for_result(SegmentRequest(
            request.request_id or self._ids.next(), request.instruction, "service", camera=request.camera),
            request.image)
        return response

    def _on_goal(self, goal: SegmentAction.Goal) -> GoalResponse:
        """Reject a goal that finds the queue full (its QUEUE_FULL result still goes out on the topic)."""
        with self._lock:
            worker = self._worker
        if worker is None or not self._accepting:
            return GoalResponse.ACCEPT  # executed at once: the result says STATUS_NOT_READY
        if worker.reserve() == SubmitOutcome.FULL:
            request = SegmentRequest(goal.request_id or self._ids.next(), goal.instruction, "action", camera=goal.camera)
            header = goal.image.header if goal.image.width or goal.image.height else None
            self._refuse(request, RequestRefused(ResultMsg.STATUS_QUEUE_FULL, self._full_text(worker), header,
                                                 (goal.image.width, goal.image.height)))
            return GoalResponse.REJECT
        self._reserved_goals.add(id(goal))
        return GoalResponse.ACCEPT

    def _on_goal_execute(self, goal_handle: Any) -> SegmentAction.Result:
        goal = goal_handle.request
        text: list[str] = []

        def on_text(delta: str) -> None:
            text.append(delta)
            goal_handle.publish_feedback(SegmentAction.Feedback(
                partial_answer="".join(text), delta=delta, generated_tokens=seg.tokens_started))

        seg = SegmentRequest(goal.request_id or self._ids.next(), goal.instruction, "action", camera=goal.camera,
                             on_text=on_text, cancel_requested=lambda: goal_handle.is_cancel_requested)
        reserved = id(goal) in self._reserved_goals
        self._reserved_goals.discard(id(goal))
        result = self._wait_for_result(seg, goal.image, reserved)
        if result.status == ResultMsg.STATUS_CANCELLED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.status == ResultMsg.STATUS_OK:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return SegmentAction.Result(result=result)

    def _wait_for_result(self, request: SegmentRequest, image: Image, reserved: bool = False) -> ResultMsg:
        """Submit a service / action request and wait (on this executor thread) for its one result."""
        done = threading.Event()
        box: list[ResultMsg] = []
        request.deliver = lambda msg: (box.append(msg), done.set())
        with self._lock:
            self._in_flight += 1
        try:
            self._submit(request, image, reserved)
            while not done.wait(0.2):
                if not self.context.ok():
                    return error_result_msg(ResultMsg.STATUS_NOT_READY, "the node shut down before answering",
                                            request.request_id, request.instruction)
            return box[0]
        finally:
            with self._lock:
                self._in_flight -= 1

    def _submit(self, request: SegmentRequest, given_image: Image | None, reserved: bool = False) -> None:
        """Admit a request and queue it, or answer it at once with the reason it cannot run."""
        settings = self._settings
        with self._lock:
            worker = self._worker
        try:
            if settings is None or worker is None or not self._accepting:
                raise RequestRefused(ResultMsg.STATUS_NOT_READY, SHUTTING_DOWN if not self._accepting else
                                     "the node is not active (the model is not loaded); activate it first")
            self._flow.admit(request, given_image, settings, self._cameras)
            outcome = worker.submit(request, reserved)
            if outcome != SubmitOutcome.ACCEPTED:
                header, size = (request.image.header, request.image.size) if request.image else (None, (0, 0))
                raise RequestRefused(ResultMsg.STATUS_QUEUE_FULL, self._full_text(worker), header, size) \
                    if outcome == SubmitOutcome.FULL else RequestRefused(ResultMsg.STATUS_NOT_READY, "the node is "
                                                                         "deactivating", header, size)
        except RequestRefused as refused:
            if reserved and worker is not None and refused.status != ResultMsg.STATUS_QUEUE_FULL:
                worker.release()
            self._refuse(request, refused)

    @staticmethod
    def _full_text(worker: RequestWorker[SegmentRequest]) -> str:
        return f"the request queue is full ({worker.capacity} waiting); try again later"

    def _on_standing_tick(self) -> None:
        settings, worker = self._settings, self._worker
        camera = next(iter(self._cameras.values()), None)
        frame = camera.frames.get() if camera is not None else None
        with self._lock:
            if (settings is None or worker is None or frame is None or self._standing_pending
                    or frame.seq == self._standing_seq or not settings.standing_instruction):
                return
            self._standing_pending, self._standing_seq = True, frame.seq

        def standing_done(_msg: ResultMsg | None = None) -> None:
            with self._lock:
                self._standing_pending = False

        request = SegmentRequest(f"{self.get_name()}-standing-{frame.seq}", settings.standing_instruction, "standing",
                                 camera=camera.name, deliver=standing_done)
        if worker.submit(request) != SubmitOutcome.ACCEPTED:
            standing_done()  # skipped while the queue is full: no result, try again on a later frame

    # ------------------------------------------------------------------ answers
    def _refuse(self, request: SegmentRequest, refused: RequestRefused) -> None:
        camera = request.camera if request.image is None else ""
        self._answer(request, error_result_msg(refused.status, refused.error, request.request_id, request.instruction,
                                               refused.header, refused.size, camera))

    def _answer(self, request: SegmentRequest, msg: ResultMsg) -> None:
        """Send a request's one result: result topic, answer topic (when OK), then the waiting caller."""
        if not request.claim_answer():
            return
        msg.total_ms = request.elapsed_ms()
        self._tally.record(msg.status, msg.error)
        try:
            if self._result_pub is not None:
                self._result_pub.publish(msg)
            if self._answer_pub is not None and msg.status == ResultMsg.STATUS_OK:
                self._answer_pub.publish(String(data=msg.answer))
        finally:
            if request.deliver is not None:
                request.deliver(msg)

    def _run_request(self, engine: Any, request: SegmentRequest) -> None:
        """The worker thread's job: bind, run, answer (every path ends in exactly one result)."""
        settings, worker = self._settings, self._worker

        def should_stop() -> bool:  # polled by the engine before each forward pass
            stop = request.cancelled() or (worker is not None and worker.stopping.is_set())
            request.tokens_started += 0 if stop else 1
            return stop

        try:
            image = self._flow.bind(request, settings, self._cameras)
            msg, result = self._flow.run(engine, request, image, settings, should_stop)
        except RequestRefused as refused:
            if refused.status == ResultMsg.STATUS_MODEL_ERROR:
                self.get_logger().error(f"request {request.request_id} failed:\n"
                                        + "".join(traceback.format_exception(refused.__cause__)))
            self._refuse(request, refused)
            return
        self._answer(request, msg)
        if msg.status == ResultMsg.STATUS_OK:
            self._publish_overlay(settings, image, result)

    def _publish_overlay(self, settings: Any, image: BoundImage, result: Any) -> None:
        pub = self._debug_pub
        if not settings.debug_image or pub is None or pub.get_subscription_count() == 0:
            return
        try:
            from pixellm_ros.engine.overlay import draw_overlay

            pub.publish(rgb_to_image_msg(draw_overlay(image.rgb, result), image.header))
        except Exception as error:  # noqa: BLE001 - a debug picture must never cost a result
            if not self._overlay_warned:
                self._overlay_warned = True
                self.get_logger().warning(f"debug image not published: {type(error).__name__}: {error}")

    def _on_worker_crash(self, request: SegmentRequest, error: BaseException) -> None:
        self.get_logger().error(f"request {request.request_id} crashed the worker step: {error!r}")
        self._refuse(request, RequestRefused(ResultMsg.STATUS_MODEL_ERROR,
                                             f"internal error: {type(error).__name__}: {error}"))

    # ------------------------------------------------------------------ health
    def _age_s(self, header: Header) -> float:
        stamp = Time.from_msg(header.stamp, clock_type=self.get_clock().clock_type)
        return (self.get_clock().now() - stamp).nanoseconds / 1e9

    def _publish_diagnostics(self) -> None:
        settings, engine, worker = self._settings, self._engine, self._worker
        if settings is None:
            return
        ok, refused, model_errors, last_model_error = self._tally.snapshot()
        name, hardware = self.get_fully_qualified_name(), str(getattr(engine, "device", settings.device))
        node = NodeHealth(name, hardware, engine is not None, worker.waiting() if worker is not None else 0,
                          settings.queue_size, ok, refused, model_errors, last_model_error)
        cameras = []
        for camera in list(self._cameras.values()):
            frame, received = camera.frames.get(), camera.frames.received()
            age = None if frame is None else self._age_s(frame.msg.header)
            stale = age is None or 0 < settings.max_image_age_s < age
            cameras.append(CameraHealth(camera.name, camera.topic, engine is not None, received,
                                        self._meters[camera.name].update(received, time.monotonic()), age,
                                        settings.max_image_age_s, camera.transport_hint() if stale else ""))
        self._diagnostics_pub.publish(diagnostic_array(node, cameras, self.get_clock().now().to_msg()))
