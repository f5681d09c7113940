"""``pixellm_node``: PixelLM as a ROS 2 lifecycle node.

Lifecycle
    configure   reads and checks the parameters (see ``params.py`` / ``config/pixellm.yaml``);
                a bad value fails the transition with a log line that says what to fix.
                Creates the subscriptions, publishers, the service and the action server.
    activate    loads the model (``model.path``, ``model.device``, ...) and starts the worker.
    deactivate  stops the worker (the running request is asked to stop, waiting ones are answered
                ``STATUS_NOT_READY``) and frees the model, GPU memory included.
    cleanup     removes the topics, service and action server.
    Run standalone (``ros2 run pixellm_ros pixellm_node``) it configures and activates itself
    unless the parameter ``autostart`` is false (then drive it with ``ros2 lifecycle set``).

Inputs (names are parameters; ``~`` is the node's private namespace)
    ``topics.image`` (default ``image_raw``)      sensor_msgs/Image, or sensor_msgs/CompressedImage on
                                                  ``topics.compressed_image`` when ``topics.use_compressed``;
                                                  KEEP_LAST depth 1, best effort unless ``qos.image_reliability``.
    ``topics.instruction`` (``~/instruction``)    std_msgs/String: answered against the newest frame.
    service ``~/segment``                         pixellm_ros/srv/Segment.
    action ``~/segment``                          pixellm_ros/action/Segment: feedback streams the answer
                                                  text (partial_answer, delta, generated_tokens); cancel
                                                  is honoured between tokens, and while the goal waits.
    ``standing_instruction``                      when set, re-run on new frames at most ``standing_rate_hz``.

Outputs
    ``topics.result`` (``~/result``)              pixellm_ros/msg/SegmentationResult for EVERY request,
                                                  whatever its channel (the service and the action also
                                                  return it), success or error.
    ``topics.answer`` (``~/answer``)              std_msgs/String, the answer text of successful requests.
    ``topics.debug_image`` (``~/debug_image``)    rgb8 overlay (masks coloured, names drawn); only drawn
                                                  and published while somebody subscribes.
    ``/diagnostics``                              diagnostic_msgs/DiagnosticArray every ``diagnostics_period_s``:
                                                  camera rate and frame age, queue, how requests ended
                                                  (``diagnostics.py`` has the levels).

Which image, and when is it too old
    A request without its own image (instruction topic, standing instruction, service/action with an
    empty image) is answered against the newest camera frame at the moment the worker STARTS it, so
    a request that waited in the queue still gets the freshest frame. That frame is refused with
    ``STATUS_STALE_IMAGE`` when its age, node clock now minus ``header.stamp`` (sim time when
    ``use_sim_time``), exceeds ``max_image_age_s`` (0 disables the check). A camera that leaves the
    stamp at zero therefore needs ``max_image_age_s: 0``. An image given with a service/action
    request is the caller's choice and never refused for its age. No frame yet: ``STATUS_NO_IMAGE``.

Queue policy
    One FIFO queue for all channels, one worker thread (the only one touching the model), at most
    ``queue_size`` requests waiting while one runs. A request that finds the queue full is refused AT
    ONCE with ``STATUS_QUEUE_FULL``; waiting requests keep their place. Every request gets exactly
    one result: refusals (invalid instruction, invalid given image, queue full, node not active)
    immediately, accepted requests in acceptance order. Standing-instruction runs are skipped, not
    refused, while the queue is full, and never more than one is pending.

Results carry the SOURCE image's header (zero header when no image was bound: refusals before
binding, no image). Masks are mono8 0/255, the full frame or cropped to the box (``output.mask_format``).

Threads and callback groups
    Camera images: a MutuallyExclusive group of their own; the callback only stores the message.
    Instructions, the standing-instruction and diagnostics timers: one MutuallyExclusive group; they
    only queue or read counters.
    Service and action: a Reentrant group, so several callers can wait for the worker at once.
    Spun by a MultiThreadedExecutor with enough threads for ``queue_size`` waiting callers.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult as SegmentationResultMsg
from pixellm_ros.srv import Segment as SegmentService

from .conversions import (
    ImageConversionError,
    compressed_msg_to_rgb,
    error_result_msg,
    image_msg_to_rgb,
    result_to_msg,
    rgb_to_image_msg,
)
from .diagnostics import Health, RateMeter, ResultTally, diagnostic_array
from .engine_host import load_engine
from .params import NodeSettings, SettingsError, declare_node_parameters, parameter_values, settings_from_values
from .qos import debug_image_qos, image_qos, instruction_qos, result_qos
from .requests import BoundImage, LatestFrame, RequestIds, SegmentRequest
from .spinning import init_ros, spin
from .worker import RequestWorker, SubmitOutcome

NODE_NAME = "pixellm"
Status = SegmentationResultMsg


class RequestRefused(Exception):
    """A request that cannot be run; carries its status code and the error text."""

    def __init__(self, status: int, error: str, header: Header | None = None,
                 size: tuple[int, int] = (0, 0)) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.header = header
        self.size = size


class PixelLMNode(LifecycleNode):
    """The PixelLM lifecycle node (see the module docstring for its interface and policies)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_node_parameters(self)
        self._settings: NodeSettings | None = None
        self._frames = LatestFrame()
        self._ids = RequestIds(self.get_name())
        self._state_lock = threading.Lock()
        self._worker: RequestWorker[SegmentRequest] | None = None
        self._engine: Any = None
        self._publishers_made: list[Any] = []
        self._subscriptions_made: list[Any] = []
        self._services_made: list[Any] = []
        self._timers_made: list[Any] = []
        self._action_server: ActionServer | None = None
        self._result_pub: Any = None
        self._answer_pub: Any = None
        self._debug_pub: Any = None
        self._standing_pending = False
        self._standing_seq = 0
        self._overlay_warned = False
        self._tally = ResultTally()
        self._frame_rate = RateMeter()
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._instruction_group = MutuallyExclusiveCallbackGroup()
        self._request_group = ReentrantCallbackGroup()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            settings = settings_from_values(parameter_values(self))
        except SettingsError as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self._settings = settings
        self._create_interfaces(settings)
        model = str(settings.model_path) if settings.model_path else "the embedded default model"
        self.get_logger().info(f"configured: model {model} on {settings.device} ({settings.dtype}), "
                               f"queue_size {settings.queue_size}, max_image_age_s {settings.max_image_age_s}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        settings = self._settings
        assert settings is not None
        self.get_logger().info("activating: loading the model")
        try:
            engine = load_engine(settings)
        except Exception as error:  # noqa: BLE001 - any load failure fails the transition, with its text
            self.get_logger().error(f"activate failed: could not load the model: {type(error).__name__}: {error}")
            return TransitionCallbackReturn.FAILURE
        worker: RequestWorker[SegmentRequest] = RequestWorker(
            settings.queue_size,
            handle=lambda request: self._run_request(engine, request),
            refuse=lambda request, reason: self._answer(request, error_result_msg(
                Status.STATUS_NOT_READY, reason, request.request_id, request.instruction)),
            on_crash=self._on_worker_crash,
        )
        with self._state_lock:
            self._engine = engine
            self._worker = worker
            self._standing_pending = False
        worker.start()
        self.get_logger().info("active: waiting for instructions")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker_and_release("the node was deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._destroy_interfaces()
        self._settings = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release_all("the node is shutting down")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.release_all("the node hit an error")
        return TransitionCallbackReturn.SUCCESS

    def release_all(self, reason: str) -> None:
        """Stop the worker, free the model, remove the interfaces (idempotent; also used at exit)."""
        self._stop_worker_and_release(reason)
        self._destroy_interfaces()

    def autostart(self) -> bool:
        """Configure, then activate; True when the node ends up active."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def _stop_worker_and_release(self, reason: str) -> None:
        with self._state_lock:
            worker, engine = self._worker, self._engine
            self._worker = None
            self._engine = None
        if worker is not None:
            worker.stop(reason)
        if engine is not None:
            engine.release()
            self.get_logger().info("model released")

    def _create_interfaces(self, settings: NodeSettings) -> None:
        self._result_pub = self.create_publisher(SegmentationResultMsg, settings.result_topic,
                                                 result_qos(settings.result_depth))
        self._answer_pub = self.create_publisher(String, settings.answer_topic, result_qos(settings.result_depth))
        self._debug_pub = self.create_publisher(Image, settings.debug_image_topic, debug_image_qos())
        camera_qos = image_qos(settings.image_reliability, settings.image_depth)
        if settings.use_compressed:
            camera = self.create_subscription(CompressedImage, settings.compressed_image_topic, self._frames.put,
                                              camera_qos, callback_group=self._image_group)
        else:
            camera = self.create_subscription(Image, settings.image_topic, self._frames.put, camera_qos,
                                              callback_group=self._image_group)
        instructions = self.create_subscription(String, settings.instruction_topic, self._on_instruction,
                                                instruction_qos(), callback_group=self._instruction_group)
        service = self.create_service(SegmentService, "~/segment", self._on_service,
                                      callback_group=self._request_group)
        self._action_server = ActionServer(
            self, SegmentAction, "~/segment", execute_callback=self._on_goal_execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT,
            callback_group=self._request_group,
        )
        self._publishers_made = [self._result_pub, self._answer_pub, self._debug_pub]
        self._subscriptions_made = [camera, instructions]
        self._services_made = [service]
        if settings.standing_instruction:
            self._timers_made.append(self.create_timer(1.0 / settings.standing_rate_hz, self._on_standing_tick,
                                                       callback_group=self._instruction_group))
        if settings.diagnostics_period_s > 0:
            # The standard topic, absolute whatever the namespace, with diagnostic_updater's QoS.
            diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
            self._publishers_made.append(diagnostics_pub)
            self._timers_made.append(self.create_timer(
                settings.diagnostics_period_s, lambda: self._publish_diagnostics(settings, diagnostics_pub),
                callback_group=self._instruction_group))

    def _destroy_interfaces(self) -> None:
        for timer in self._timers_made:
            self.destroy_timer(timer)
        for subscription in self._subscriptions_made:
            self.destroy_subscription(subscription)
        for service in self._services_made:
            self.destroy_service(service)
        if self._action_server is not None:
            self._action_server.destroy()
            self._action_server = None
        self._result_pub = self._answer_pub = self._debug_pub = None
        for publisher in self._publishers_made:
            self.destroy_publisher(publisher)
        self._timers_made, self._subscriptions_made, self._services_made, self._publishers_made = [], [], [], []
        self._frames.clear()

    # ------------------------------------------------------------------ accepting requests
    def _on_instruction(self, msg: String) -> None:
        self._submit(SegmentRequest(self._ids.next(), msg.data, "topic"), given_image=None)

    def _on_service(self, request: SegmentService.Request,
                    response: SegmentService.Response) -> SegmentService.Response:
        done = threading.Event()
        box: list[SegmentationResultMsg] = []

        def deliver(msg: SegmentationResultMsg) -> None:
            box.append(msg)
            done.set()

        seg = SegmentRequest(request.request_id or self._ids.next(), request.instruction, "service",
                             deliver=deliver)
        self._submit(seg, given_image=request.image)
        self._wait(done)
        response.result = box[0] if box else self._shutdown_result(seg)
        return response

    def _on_goal_execute(self, goal_handle: Any) -> SegmentAction.Result:
        goal = goal_handle.request
        done = threading.Event()
        box: list[SegmentationResultMsg] = []
        text: list[str] = []

        def on_text(delta: str) -> None:
            text.append(delta)
            goal_handle.publish_feedback(SegmentAction.Feedback(
                partial_answer="".join(text), delta=delta, generated_tokens=seg.tokens_started))

        def deliver(msg: SegmentationResultMsg) -> None:
            box.append(msg)
            done.set()

        seg = SegmentRequest(goal.request_id or self._ids.next(), goal.instruction, "action", on_text=on_text,
                             cancel_requested=lambda: goal_handle.is_cancel_requested, deliver=deliver)
        self._submit(seg, given_image=goal.image)
        self._wait(done)
        result = box[0] if box else self._shutdown_result(seg)
        if result.status == Status.STATUS_CANCELLED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.status == Status.STATUS_OK:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return SegmentAction.Result(result=result)

    def _wait(self, done: threading.Event) -> None:
        while not done.wait(0.2):
            if not self.context.ok():
                return

    def _shutdown_result(self, request: SegmentRequest) -> SegmentationResultMsg:
        return error_result_msg(Status.STATUS_NOT_READY, "the node shut down before answering",
                                request.request_id, request.instruction)

    def _on_standing_tick(self) -> None:
        settings = self._settings
        frame = self._frames.get()
        with self._state_lock:
            worker = self._worker
            if (settings is None or worker is None or frame is None or self._standing_pending
                    or frame.seq == self._standing_seq):
                return
            self._standing_pending = True
            self._standing_seq = frame.seq

        def standing_done(_msg: SegmentationResultMsg | None = None) -> None:
            with self._state_lock:
                self._standing_pending = False

        request = SegmentRequest(f"{self.get_name()}-standing-{frame.seq}", settings.standing_instruction,
                                 "standing", deliver=standing_done)
        if worker.submit(request) != SubmitOutcome.ACCEPTED:
            standing_done()  # skipped while the queue is full: no result, try again on a later frame

    def _submit(self, request: SegmentRequest, given_image: Image | None) -> None:
        """Check a request and queue it, or answer it at once with the reason it cannot run."""
        settings = self._settings
        with self._state_lock:
            worker = self._worker
        if settings is None or worker is None:
            self._refuse(request, Status.STATUS_NOT_READY,
                         "the node is not active (the model is not loaded); activate it first")
            return
        request.instruction = request.instruction.strip()
        if not request.instruction:
            self._refuse(request, Status.STATUS_INVALID_INSTRUCTION, "the instruction is empty")
            return
        if len(request.instruction) > settings.max_instruction_chars:
            length = len(request.instruction)
            request.instruction = request.instruction[: settings.max_instruction_chars]
            self._refuse(request, Status.STATUS_INVALID_INSTRUCTION,
                         f"the instruction has {length} characters, more than max_instruction_chars = "
                         f"{settings.max_instruction_chars} (the echoed instruction is cut to that length)")
            return
        if given_image is not None and given_image.width > 0 and given_image.height > 0:
            try:
                request.image = BoundImage(image_msg_to_rgb(given_image), given_image.header)
            except ImageConversionError as error:
                self._refuse(request, Status.STATUS_INVALID_IMAGE, f"the request's image: {error}")
                return
        outcome = worker.submit(request)
        if outcome == SubmitOutcome.FULL:
            self._refuse(request, Status.STATUS_QUEUE_FULL,
                         f"the request queue is full ({worker.capacity} waiting); try again later")
        elif outcome == SubmitOutcome.CLOSED:
            self._refuse(request, Status.STATUS_NOT_READY, "the node is deactivating")

    def _refuse(self, request: SegmentRequest, status: int, error: str, header: Header | None = None,
                size: tuple[int, int] = (0, 0)) -> None:
        self._answer(request, error_result_msg(status, error, request.request_id, request.instruction, header, size))

    # ------------------------------------------------------------------ the worker thread
    def _run_request(self, engine: Any, request: SegmentRequest) -> None:
        """Run one request on the worker thread and send its one result."""
        settings = self._settings
        assert settings is not None
        try:
            if request.cancelled():
                raise RequestRefused(Status.STATUS_CANCELLED, "cancelled before it started")
            image = request.image or self._bind_newest_frame(settings)
        except RequestRefused as refused:
            self._refuse(request, refused.status, refused.error, refused.header, refused.size)
            return

        from pixellm_ros.engine import InvalidInputError

        worker = self._worker

        def should_stop() -> bool:
            # The engine polls this once before each forward pass, i.e. once per generated token.
            stop = request.cancelled() or (worker is not None and worker.stopping.is_set())
            if not stop:
                request.tokens_started += 1
            return stop

        try:
            result = engine.segment(image.rgb, request.instruction, max_new_tokens=settings.max_new_tokens,
                                    on_text=request.on_text, should_stop=should_stop)
        except InvalidInputError as error:
            status = Status.STATUS_INVALID_IMAGE if str(error).startswith("image") else Status.STATUS_INVALID_INSTRUCTION
            self._refuse(request, status, str(error), image.header, image.size)
            return
        except Exception as error:  # noqa: BLE001 - the node keeps running; the caller gets the reason
            self.get_logger().error(f"request {request.request_id} failed:\n{traceback.format_exc()}")
            self._refuse(request, Status.STATUS_MODEL_ERROR, f"{type(error).__name__}: {error}", image.header,
                         image.size)
            return

        if result.stopped:
            status, error = ((Status.STATUS_CANCELLED, "cancelled by the client") if request.cancelled()
                             else (Status.STATUS_NOT_READY, "stopped: the node was deactivated while it ran"))
        else:
            status, error = Status.STATUS_OK, ""
        msg = result_to_msg(result, image.header, request.request_id, request.instruction, image.size,
                            settings.mask_format, status, error)
        self._answer(request, msg)
        if status == Status.STATUS_OK:
            self._publish_overlay(settings, image, result)

    def _bind_newest_frame(self, settings: NodeSettings) -> BoundImage:
        frame = self._frames.get()
        if frame is None:
            raise RequestRefused(Status.STATUS_NO_IMAGE, "no camera image received yet on "
                                 f"'{self._camera_topic(settings)}' and none given with the request")
        header = frame.msg.header
        size = (int(getattr(frame.msg, "width", 0)), int(getattr(frame.msg, "height", 0)))
        if settings.max_image_age_s > 0:
            age = self._age_s(header)
            if age > settings.max_image_age_s:
                hint = (" (its header.stamp is zero: the camera does not stamp its images; set max_image_age_s "
                        "to 0 to accept them)" if header.stamp.sec == 0 and header.stamp.nanosec == 0 else "")
                raise RequestRefused(Status.STATUS_STALE_IMAGE, f"the newest camera image is {age:.3f} s old, "
                                     f"older than max_image_age_s = {settings.max_image_age_s}{hint}", header, size)
        try:
            rgb = compressed_msg_to_rgb(frame.msg) if frame.compressed else image_msg_to_rgb(frame.msg)
        except ImageConversionError as error:
            raise RequestRefused(Status.STATUS_INVALID_IMAGE, f"the newest camera image: {error}", header,
                                 size) from None
        return BoundImage(rgb, header)

    def _age_s(self, header: Header) -> float:
        stamp = Time.from_msg(header.stamp, clock_type=self.get_clock().clock_type)
        return (self.get_clock().now() - stamp).nanoseconds / 1e9

    @staticmethod
    def _camera_topic(settings: NodeSettings) -> str:
        return settings.compressed_image_topic if settings.use_compressed else settings.image_topic

    def _answer(self, request: SegmentRequest, msg: SegmentationResultMsg) -> None:
        """Send a request's one result: result topic, answer topic (when OK), then the waiting caller."""
        if not request.claim_answer():
            return
        msg.total_ms = request.elapsed_ms()
        self._tally.record(msg.status, msg.error)
        try:
            if self._result_pub is not None:
                self._result_pub.publish(msg)
            if self._answer_pub is not None and msg.status == Status.STATUS_OK:
                self._answer_pub.publish(String(data=msg.answer))
        finally:
            if request.deliver is not None:
                request.deliver(msg)

    def _publish_overlay(self, settings: NodeSettings, image: BoundImage, result: Any) -> None:
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

    def _publish_diagnostics(self, settings: NodeSettings, publisher: Any) -> None:
        with self._state_lock:
            engine, worker = self._engine, self._worker
        frame = self._frames.get()
        received = self._frames.received()
        ok, refused, model_errors, last_model_error = self._tally.snapshot()
        health = Health(
            name=f"{self.get_name()}: pixellm",
            hardware_id=str(getattr(engine, "device", settings.device)),
            active=engine is not None,
            camera_topic=self.resolve_topic_name(self._camera_topic(settings)),
            frames_received=received,
            frame_rate_hz=self._frame_rate.update(received, time.monotonic()),
            newest_frame_age_s=None if frame is None else self._age_s(frame.msg.header),
            max_image_age_s=settings.max_image_age_s,
            queue_waiting=worker.waiting() if worker is not None else 0,
            queue_size=settings.queue_size,
            results_ok=ok,
            results_refused=refused,
            model_errors=model_errors,
            last_model_error=last_model_error,
        )
        publisher.publish(diagnostic_array(health, self.get_clock().now().to_msg()))

    def _on_worker_crash(self, request: SegmentRequest, error: BaseException) -> None:
        self.get_logger().error(f"request {request.request_id} crashed the worker step: {error!r}")
        self._refuse(request, Status.STATUS_MODEL_ERROR, f"internal error: {type(error).__name__}: {error}")


def executor_threads(queue_size: int) -> int:
    """Threads enough for queue_size + 1 waiting service/action callers plus the topic callbacks."""
    return max(4, queue_size + 5)


def run_until_shutdown(node: PixelLMNode, other_nodes: Sequence[Any] = ()) -> None:
    """Spin ``node`` (and ``other_nodes``) until Ctrl-C, after autostart unless the parameter is false.

    rclpy must already be initialised (``spinning.init_ros``); shuts it down on the way out.
    """
    queue_size = node.get_parameter("queue_size").value
    executor = MultiThreadedExecutor(num_threads=executor_threads(queue_size if isinstance(queue_size, int) else 4))
    executor.add_node(node)
    for other in other_nodes:
        executor.add_node(other)
    try:
        if node.get_parameter("autostart").value is True and not node.autostart():
            node.get_logger().error("autostart failed (see above); the node stays up so it can be reconfigured")
        spin(executor, node.context)
    except KeyboardInterrupt:  # during autostart
        pass
    finally:
        # The context is still valid here (see spinning.py): the lifecycle shutdown transition
        # answers waiting requests, frees the model and publishes the transition event.
        try:
            node.trigger_shutdown()
        except Exception:  # noqa: BLE001 - e.g. already finalized: free what is left directly
            node.release_all("the node is shutting down")
        executor.shutdown()
        for other in other_nodes:
            other.destroy_node()
        node.destroy_node()
        rclpy.try_shutdown()


def main(args: Sequence[str] | None = None) -> None:
    """Run the node until Ctrl-C; configures and activates it unless the parameter autostart is false."""
    init_ros(args)
    run_until_shutdown(PixelLMNode())
