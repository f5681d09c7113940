"""``pixellm_node``: PixelLM as a ROS 2 lifecycle node (lifecycle, entities and wiring).

The channels and each request's one answer are ``request_desk.py`` (the node hands the desk, typed,
what it works with: ``configure`` the settings, output topics and cameras, ``start`` the worker);
the output topics ``outputs.py``; the request path itself (admission, frame binding and age, the
engine run, status codes) ``request_flow.py``; the queue and its thread ``worker.py``; every
parameter ``params.py``; every QoS profile ``qos.py``. The interface (topics, service, action),
the policies and the parameters are documented in the README ("The node") and in
``config/pixellm.yaml``.

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
Tracking (``tracking_desk.py``) steps its trackers on a thread of its own, never on the executor's.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import CancelResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.srv import Segment as SegmentService

from . import params as P
from . import params_file, qos, spinning
from .delivery import ResultServingActionServer, WriteLog, track_service
from .depth_cache import DepthCache
from .diagnostics import CameraHealth, NodeHealth, RateMeter, diagnostic_array
from .engine_host import load_engine
from .outputs import ResultOutputs
from .request_desk import SHUTTING_DOWN, RequestDesk
from .request_flow import RequestFlow
from .requests import CameraInput, LatestFrame, SegmentRequest
from .spatial_conversions import stamp_ns
from .tracking_desk import TrackingDesk
from .worker import RequestWorker

if TYPE_CHECKING:
    from pixellm_ros.engine import PixelLMEngine

NODE_NAME = "pixellm"
SERVE_S = 5.0  # at shutdown: the least time given to the results after the running request (drain)
SETTLE_S = 0.5  # at shutdown: the least time the writers stay up after the last reply was written


class PixelLMNode(LifecycleNode):
    """The PixelLM lifecycle node (see the module docstring and the README)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        command_line, name = spinning.command_line(), self.get_fully_qualified_name()
        for warning in params_file.files_setting_nothing(command_line, name):
            self.get_logger().warning(warning)
        self._bad_overrides = P.declare_node_parameters(self, params_file.value_sources(command_line, name))
        self._wrong_types = threading.local()  # a set's wrongly typed values, from the pre-set to the on-set step
        self._desk = RequestDesk(self.get_name(), self.get_logger(), RequestFlow(self._age_s), self.context.ok)
        # tracking (tracking_desk.py): its own publisher, thread and hooks, marked "tracking hook"
        self._tracking = self._desk.tracking = TrackingDesk(self, lambda: self._desk.settings)
        self._meters: dict[str, RateMeter] = {}
        self._lock = threading.Lock()
        self._engine: PixelLMEngine | None = None
        self._made: list[tuple[str, Any]] = []  # (kind, entity), destroyed in reverse order
        self._made_timers: dict[str, Any] = {}
        self._diagnostics_pub: Publisher | None = None
        self._write_log = WriteLog()  # the replies rclpy writes after the desk has answered (drain)
        self._action_server: ResultServingActionServer | None = None
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
            bad = [text for name, text in self._bad_overrides.items() if P.SPECS_BY_NAME[name].apply != P.STARTUP]
            if bad:
                raise P.SettingsError("; ".join(bad) + " (ros2 param set a good value, then configure again)")
            settings = P.settings_from_values(values)
            problems = P.declare_camera_parameters(self, settings.camera_names)
            if problems:
                raise P.SettingsError("; ".join(problems.values()))
            outputs, cameras = self._create_entities(settings, P.camera_settings(settings, P.parameter_values(self)))
            self._desk.configure(settings, outputs, cameras)
        except Exception as error:  # noqa: BLE001 - every configure failure says why, and leaves nothing behind
            self._destroy_entities()
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        model = str(settings.model_path) if settings.model_path else "the embedded default model"
        topics = ", ".join(f"{c.name} on '{c.topic}'" for c in self._desk.cameras.values())
        self.get_logger().info(f"configured: model {model} on {settings.device} ({settings.dtype}), cameras {topics}, "
                               f"queue_size {settings.queue_size}, request_depth {settings.request_depth}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().info("activating: loading the model")
        try:
            settings = P.replace_fields(self._desk.settings, P.parameter_values(self), [P.ACTIVATE])
            engine = load_engine(settings)
        except Exception as error:  # noqa: BLE001 - any load failure fails the transition, with its text
            self.get_logger().error(f"activate failed: could not load the model: {type(error).__name__}: {error}")
            return TransitionCallbackReturn.FAILURE
        worker: RequestWorker[SegmentRequest] = RequestWorker(
            settings.queue_size, handle=lambda requests: self._desk.run_requests(engine, requests),
            refuse=self._desk.refuse_waiting, on_crash=self._desk.on_worker_crash, max_batch=settings.max_batch)
        with self._lock:
            self._engine = engine
            self._desk.start(settings, worker)
        worker.start()
        self.get_logger().info(f"active on {engine.device}: waiting for instructions")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker_and_release("the node was deactivated", finish_within=0.0)
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release_all(SHUTTING_DOWN)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.release_all("the node hit an error")
        return TransitionCallbackReturn.SUCCESS

    def release_all(self, reason: str) -> None:
        """Stop the worker, free the model, remove the entities (idempotent; also used at exit)."""
        finish = self._desk.settings.shutdown_timeout_s if self._desk.settings is not None else 0.0
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

    def drain(self, executor: Any) -> None:
        """On SIGINT / SIGTERM, before the shutdown transition: the running request finishes (at most
        ``shutdown_timeout_s``), waiting ones get STATUS_NOT_READY, new ones are refused; then the
        executor keeps spinning until every result the node held has gone out to its caller: each
        service response written, each action result written for every result request of its
        client (one that asks only now included, while the action has clients), the result topics
        acknowledged by their subscribers, and the writers kept up after the last reply as long as
        the slowest reply took to write (``delivery``: rclpy reports no acknowledgement for those).
        All within ``shutdown_timeout_s`` from the signal, and at least SERVE_S after the running
        request has ended; what is still owed then is logged."""
        started = time.monotonic()
        budget = self._desk.settings.shutdown_timeout_s if self._desk.settings is not None else 0.0
        self._desk.stop_accepting()
        self._write_log.restart_timing()
        stopper = threading.Thread(target=self._stop_worker_and_release, args=(SHUTTING_DOWN, budget))
        stopper.start()
        while stopper.is_alive():
            executor.spin_once(timeout_sec=0.05)
        deadline = max(started + budget, time.monotonic() + SERVE_S)
        while True:
            owed, settling, acked = self._owed_replies(started), self._write_log.settling_left(SETTLE_S), self._acked()
            if not owed and not settling and acked:
                return
            if time.monotonic() >= deadline:
                what = (f"{owed} result(s) not yet written to their callers" if owed else
                        "result topic messages not yet acknowledged by every subscriber" if not acked else
                        f"the replies written last still being read ({settling:.1f} s of their settling time "
                        "left: the slowest write, or their size at delivery.SETTLE_BYTES_PER_S)")
                self.get_logger().warning(f"shutting down with {what}: shutdown_timeout_s has passed")
                return
            executor.spin_once(timeout_sec=0.05)

    def _owed_replies(self, since: float) -> int:
        """Service responses and action results not yet written (see ``drain``)."""
        owed = self._desk.in_flight() + self._write_log.owed()
        server = self._action_server
        if server is not None:
            owed += server.unanswered()
            unasked = server.unasked(since)
            if unasked and getattr(self, "count_clients", lambda _name: 0)("~/segment/_action/get_result") > 0:
                owed += unasked
        return owed

    def _acked(self) -> bool:
        """The result and answer topics' messages acknowledged by every subscriber (asked, not waited for)."""
        outputs = self._desk.outputs
        return outputs is None or outputs.acknowledged()

    def _stop_worker_and_release(self, reason: str, finish_within: float) -> None:
        with self._lock:
            worker, engine = self._desk.take_worker(), self._engine
            self._engine = None
        if worker is not None:
            worker.stop(reason, finish_within=finish_within)
        self._tracking.end_all(reason)  # tracking hook: every track ends, with the reason
        if engine is not None:
            engine.release()
            self.get_logger().info("model released")

    # ------------------------------------------------------------------ entities
    def _publisher(self, kind: type, topic: str, profile: QoSProfile) -> Publisher:
        """A publisher, recorded for ``_destroy_entities``."""
        publisher = self.create_publisher(kind, topic, profile)
        self._made.append(("publisher", publisher))
        return publisher

    def _create_entities(self, settings: P.NodeSettings,
                         cameras: list[P.CameraSettings]) -> tuple[ResultOutputs, dict[str, CameraInput]]:
        """Every entity of a configuration (each recorded for ``_destroy_entities`` as it is made);
        returns what the desk works with: the output topics and the camera inputs by name."""
        add = self._made.append
        depth = settings.request_depth
        outputs = ResultOutputs.create(self._publisher, settings)
        camera_qos = qos.image_qos(settings.image_reliability, settings.image_depth)
        inputs: dict[str, CameraInput] = {}
        for index, camera in enumerate(cameras):
            frames = LatestFrame()
            kind = CompressedImage if camera.use_compressed else Image
            subscription = self.create_subscription(kind, camera.topic,
                                                    self._tracking.frame_hook(camera.name, frames.put),  # tracking hook
                                                    camera_qos, callback_group=self._groups["image"])
            add(("subscription", subscription))
            inputs[camera.name] = CameraInput(camera.name, frames, subscription.topic_name,
                                              subscription.get_publisher_count, settings.image_reliability,
                                              self._depth_input(settings, camera))
            self._meters[camera.name] = RateMeter()
            topics = ([settings.instruction_topic] if index == 0 else []) + (
                [f"~/{camera.name}/instruction"] if settings.camera_names else [])
            for topic in topics:
                add(("subscription", self.create_subscription(
                    String, topic, lambda msg, name=camera.name: self._desk.on_instruction(msg, name),
                    qos.request_qos(depth), callback_group=self._groups["instruction"])))
        service = self.create_service(SegmentService, "~/segment", self._desk.on_service,
                                      qos_profile=qos.request_qos(depth), callback_group=self._groups["request"])
        track_service(service, self._write_log)
        add(("service", service))
        self._action_server = ResultServingActionServer(
            self, SegmentAction, "~/segment", execute_callback=self._desk.on_goal_execute, goal_callback=self._desk.on_goal,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT, callback_group=self._groups["request"],
            goal_service_qos_profile=qos.request_qos(depth), result_service_qos_profile=qos.request_qos(depth),
            cancel_service_qos_profile=qos.request_qos(depth), feedback_pub_qos_profile=qos.request_qos(depth),
            status_pub_qos_profile=qos.action_status_qos(),
            result_timeout=int(math.ceil(settings.action_result_timeout_s)), write_log=self._write_log)
        add(("action", self._action_server))
        self._diagnostics_pub = self._publisher(DiagnosticArray, "/diagnostics", qos.diagnostics_qos())
        self._tracking.create(settings, inputs, outputs.debug_image, outputs.markers)  # tracking hook
        self._make_timers(settings)
        return outputs, inputs

    def _depth_input(self, settings: P.NodeSettings, camera: P.CameraSettings) -> DepthCache | None:
        """The camera's depth + camera_info subscriptions and their cache (None without depth)."""
        if not settings.depth_enabled:
            return None
        cache = DepthCache(settings.depth_cache_size, settings.depth_sync_tolerance_s)
        depth = self.create_subscription(Image, camera.depth_image_topic,
                                         lambda msg: (cache.add_depth(stamp_ns(msg.header.stamp), msg),
                                                      self._tracking.on_depth(camera.name)),  # tracking hook
                                         qos.depth_qos(settings.image_reliability), callback_group=self._groups["image"])
        info = self.create_subscription(CameraInfo, camera.camera_info_topic, cache.set_camera_info,
                                        qos.camera_info_qos(), callback_group=self._groups["image"])
        self._made += [("subscription", depth), ("subscription", info)]
        cache.depth_topic, cache.info_topic = depth.topic_name, info.topic_name
        return cache

    def _make_timers(self, settings: P.NodeSettings) -> None:
        for timer in self._made_timers.values():
            self.destroy_timer(timer)
        self._made_timers = {}
        group = self._groups["instruction"]
        if settings.standing_instruction:
            self._made_timers["standing"] = self.create_timer(1.0 / settings.standing_rate_hz, self._desk.on_standing_tick,
                                                         callback_group=group)
        if settings.diagnostics_period_s > 0:
            self._made_timers["diagnostics"] = self.create_timer(settings.diagnostics_period_s, self._publish_diagnostics,
                                                            callback_group=group)

    def _destroy_entities(self) -> None:
        self._tracking.destroy()  # tracking hook
        for timer in self._made_timers.values():
            self.destroy_timer(timer)
        destroy = {"publisher": self.destroy_publisher, "subscription": self.destroy_subscription,
                   "service": self.destroy_service, "action": lambda server: server.destroy()}
        for kind, entity in reversed(self._made):
            destroy[kind](entity)
        self._made_timers, self._made, self._meters = {}, [], {}
        self._action_server, self._diagnostics_pub = None, None
        self._desk.unconfigure()

    # ------------------------------------------------------------------ parameters at run time
    def _coerce_parameters(self, parameters: list[Any]) -> list[Any]:
        coerced, self._wrong_types.found = P.coerce_run_time(
            parameters, self._desk.settings.camera_names if self._desk.settings is not None else (),
            lambda name: self.get_parameter(name).value)
        return coerced

    def _on_set_parameters(self, parameters: list[Any]) -> Any:
        """Reject a bad value or type with its reason; apply live ones at once; say when the others apply."""
        from rcl_interfaces.msg import SetParametersResult

        wrong, self._wrong_types.found = getattr(self._wrong_types, "found", {}), {}
        problems = [wrong[id(p)][1] for p in parameters if wrong.get(id(p), (None,))[0] is p]
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        values = P.parameter_values(self)
        try:
            later = P.check_run_time(parameters, values, self._desk.settings.camera_names if self._desk.settings else ())
        except P.SettingsError as error:
            return SetParametersResult(successful=False, reason=str(error))
        for parameter in parameters:  # a start-up value refused is fixed by setting the parameter
            self._bad_overrides.pop(parameter.name, None)
        settings = self._desk.settings
        if settings is not None:
            self._apply_live(P.replace_fields(settings, values, [P.LIVE]))
        if later:  # rclpy drops the reason of a successful result: say it in the log (/rosout)
            self.get_logger().info("accepted: " + "; ".join(later))
        return SetParametersResult(successful=True, reason="; ".join(later))

    def _apply_live(self, settings: P.NodeSettings) -> None:
        old = self._desk.settings
        self._desk.apply(settings)
        engine = self._engine
        if engine is not None:
            engine.mask_threshold = settings.mask_threshold
        timing = ("standing_instruction", "standing_rate_hz", "diagnostics_period_s")
        if any(getattr(old, f) != getattr(settings, f) for f in timing) and self._made:
            self._make_timers(settings)

    # ------------------------------------------------------------------ health
    def _age_s(self, header: Header) -> float:
        stamp = Time.from_msg(header.stamp, clock_type=self.get_clock().clock_type)
        return (self.get_clock().now() - stamp).nanoseconds / 1e9

    def _publish_diagnostics(self) -> None:
        settings, engine, worker, publisher = self._desk.settings, self._engine, self._desk.worker, self._diagnostics_pub
        if settings is None or publisher is None:
            return
        ok, refused, model_errors, last_model_error = self._desk.tally.snapshot()
        name, hardware = self.get_fully_qualified_name(), str(getattr(engine, "device", settings.device))
        node = NodeHealth(name, hardware, engine is not None, worker.waiting() if worker is not None else 0,
                          settings.queue_size, ok, refused, model_errors, last_model_error,
                          self._desk.tally.batch_high_water(), getattr(engine, "decode_mode", ""))
        cameras = []
        for camera in list(self._desk.cameras.values()):
            frame, received = camera.frames.get(), camera.frames.received()
            age = None if frame is None else self._age_s(frame.msg.header)
            stale = age is None or 0 < settings.max_image_age_s < age
            cameras.append(CameraHealth(camera.name, camera.topic, engine is not None, received,
                                        self._meters[camera.name].update(received, time.monotonic()), age,
                                        settings.max_image_age_s, camera.transport_hint() if stale else ""))
        publisher.publish(diagnostic_array(node, cameras, self.get_clock().now().to_msg()))
