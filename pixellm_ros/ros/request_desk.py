"""The node's front desk: it takes requests from every channel and sends each one's single result.

    topic        ``on_instruction``                  the result goes to the result topic only
    service      ``on_service``                      the caller waits on its executor thread
    action       ``on_goal`` / ``on_goal_execute``   a goal that finds the queue full is REJECTED at
                                                     acceptance (its place is reserved otherwise)
    standing     ``on_standing_tick``                skipped, not refused, while the queue is full
    the worker   ``run_request``                     bind, run, answer

Every path ends in exactly one ``answer``: the result topic, the answer topic when OK, then the
waiting caller.

The node makes every ROS entity and hands the desk what it works with, typed, once per
lifecycle step; the desk keeps them (read-only to the node through the properties):

    configure(settings, outputs, cameras)   at configure: the checked parameters (``NodeSettings``),
                                            the output topics (``outputs.ResultOutputs``) and the
                                            camera inputs (``requests.CameraInput`` by name)
    start(settings, worker)                 at activate: the settings as re-read there, the worker;
                                            requests are accepted again
    apply(settings)                         a live parameter set
    stop_accepting()                        the orderly end (drain): new requests are refused
    take_worker()                           at deactivate / shutdown: the worker, no longer the desk's
    unconfigure()                           when the node destroys its entities: all of configure's gone
"""

from __future__ import annotations

import threading
import traceback
from typing import TYPE_CHECKING, Any, Callable, Mapping

from rclpy.action import GoalResponse
from sensor_msgs.msg import Image
from std_msgs.msg import String

from pixellm_ros.action import Segment as SegmentAction
from pixellm_ros.msg import SegmentationResult as ResultMsg
from pixellm_ros.srv import Segment as SegmentService

from .conversions import error_result_msg
from .diagnostics import ResultTally
from .outputs import ResultOutputs
from .params import NodeSettings
from .request_flow import RequestFlow, RequestRefused, RunOutcome
from .requests import BoundImage, CameraInput, RequestIds, SegmentRequest
from .worker import RequestWorker, SubmitOutcome

if TYPE_CHECKING:
    from pixellm_ros.engine import PixelLMEngine

    from .tracking_desk import TrackingDesk

SHUTTING_DOWN = "the node is shutting down"
NOT_ACTIVE = "the node is not active (the model is not loaded); activate it first"


class RequestDesk:
    """Admission, queueing and answering of requests (see the module docstring)."""

    def __init__(self, node_name: str, logger: Any, flow: RequestFlow, context_ok: Callable[[], bool]) -> None:
        self._settings: NodeSettings | None = None
        self._outputs: ResultOutputs | None = None
        self._cameras: Mapping[str, CameraInput] = {}
        self._worker: RequestWorker[SegmentRequest] | None = None
        self._accepting = True
        self.tracking: TrackingDesk | None = None  # the node's (tracking_desk.py): hooks marked "tracking hook"
        self.tally = ResultTally()
        self._name = node_name
        self._ids = RequestIds(node_name)
        self._logger = logger
        self._flow = flow
        self._context_ok = context_ok
        self._lock = threading.Lock()
        self._in_flight = 0  # service / action callers waiting for their result
        self._reserved_goals: set[int] = set()  # id() of goal messages holding a queue place
        self._standing_pending = False
        self._standing_seq = 0
        self._extras_warned = False

    # ------------------------------------------------------------------ what the node hands over
    def configure(self, settings: NodeSettings, outputs: ResultOutputs, cameras: Mapping[str, CameraInput]) -> None:
        self._settings, self._outputs, self._cameras = settings, outputs, dict(cameras)

    def start(self, settings: NodeSettings, worker: RequestWorker[SegmentRequest]) -> None:
        with self._lock:
            self._settings, self._worker, self._accepting = settings, worker, True
            self._standing_pending = False

    def apply(self, settings: NodeSettings) -> None:
        self._settings = settings

    def stop_accepting(self) -> None:
        self._accepting = False

    def take_worker(self) -> RequestWorker[SegmentRequest] | None:
        with self._lock:
            worker, self._worker = self._worker, None
        return worker

    def unconfigure(self) -> None:
        self._settings, self._outputs, self._cameras = None, None, {}

    @property
    def settings(self) -> NodeSettings | None:
        """The node's current checked parameters (None while unconfigured)."""
        return self._settings

    @property
    def outputs(self) -> ResultOutputs | None:
        return self._outputs

    @property
    def cameras(self) -> Mapping[str, CameraInput]:
        return self._cameras

    @property
    def worker(self) -> RequestWorker[SegmentRequest] | None:
        return self._worker

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    # ------------------------------------------------------------------ channels
    def on_instruction(self, msg: String, camera: str) -> None:
        self._submit(SegmentRequest(self._ids.next(), msg.data, "topic", camera=camera), None)

    def on_service(self, request: SegmentService.Request, response: SegmentService.Response) -> Any:
        response.result = self._wait_for_result(SegmentRequest(
            request.request_id or self._ids.next(), request.instruction, "service", camera=request.camera,
            track=request.track), request.image)
        return response

    def on_goal(self, goal: SegmentAction.Goal) -> GoalResponse:
        """Reject a goal that finds the queue full (its QUEUE_FULL result still goes out on the topic)."""
        worker = self._worker
        if worker is None or not self._accepting:
            return GoalResponse.ACCEPT  # executed at once: the result says STATUS_NOT_READY
        if worker.reserve() == SubmitOutcome.FULL:
            request = SegmentRequest(goal.request_id or self._ids.next(), goal.instruction, "action", camera=goal.camera)
            header = goal.image.header if goal.image.width or goal.image.height else None
            self._refuse(request, RequestRefused(ResultMsg.STATUS_QUEUE_FULL, _full_text(worker), header,
                                                 (goal.image.width, goal.image.height)))
            return GoalResponse.REJECT
        with self._lock:
            self._reserved_goals.add(id(goal))
        return GoalResponse.ACCEPT

    def on_goal_execute(self, goal_handle: Any) -> SegmentAction.Result:
        goal = goal_handle.request
        text: list[str] = []

        def on_text(delta: str) -> None:
            text.append(delta)
            goal_handle.publish_feedback(SegmentAction.Feedback(
                partial_answer="".join(text), delta=delta, generated_tokens=seg.generated_tokens))

        seg = SegmentRequest(goal.request_id or self._ids.next(), goal.instruction, "action", camera=goal.camera,
                             on_text=on_text, cancel_requested=lambda: goal_handle.is_cancel_requested,
                             track=goal.track)
        with self._lock:
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

    def on_standing_tick(self) -> None:
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

        request = SegmentRequest(f"{self._name}-standing-{frame.seq}", settings.standing_instruction, "standing",
                                 camera=camera.name, deliver=standing_done)
        if worker.submit(request) != SubmitOutcome.ACCEPTED:
            standing_done()  # skipped while the queue is full: no result, try again on a later frame

    # ------------------------------------------------------------------ admission
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
                if not self._context_ok():
                    return error_result_msg(ResultMsg.STATUS_NOT_READY, "the node shut down before answering",
                                            request.request_id, request.instruction)
            return box[0]
        finally:
            with self._lock:
                self._in_flight -= 1

    def _submit(self, request: SegmentRequest, given_image: Image | None, reserved: bool = False) -> None:
        """Admit a request and queue it, or answer it at once with the reason it cannot run."""
        settings, worker, cameras = self._settings, self._worker, self._cameras
        holding = reserved  # a reservation not yet taken up by worker.submit
        try:
            if not self._accepting:
                raise RequestRefused(ResultMsg.STATUS_NOT_READY, SHUTTING_DOWN)
            if settings is None or worker is None:
                raise RequestRefused(ResultMsg.STATUS_NOT_READY, NOT_ACTIVE)
            self._flow.admit(request, given_image, settings, cameras)
            outcome = worker.submit(request, reserved)
            holding = False
            if outcome != SubmitOutcome.ACCEPTED:
                header, size = (request.image.header, request.image.size) if request.image else (None, (0, 0))
                if outcome == SubmitOutcome.FULL:
                    raise RequestRefused(ResultMsg.STATUS_QUEUE_FULL, _full_text(worker), header, size)
                raise RequestRefused(ResultMsg.STATUS_NOT_READY, "the node is deactivating", header, size)
        except RequestRefused as refused:
            if holding and worker is not None:
                worker.release()
            self._refuse(request, refused)

    # ------------------------------------------------------------------ the worker's job
    def run_requests(self, engine: PixelLMEngine, requests: list[SegmentRequest]) -> None:
        """The worker's step: bind, run (together, as one batch of any size), answer in queue order.

        Every path ends in exactly one result per request. Runs on the worker thread.
        """
        settings, worker, cameras = self._settings, self._worker, self._cameras

        def stop_for(request: SegmentRequest) -> Any:
            def should_stop() -> bool:  # polled by the engine before each forward pass
                return request.cancelled() or (worker is not None and worker.stopping.is_set())
            return should_stop

        outcomes: list[Any] = []  # RunOutcome | RequestRefused, by request
        bound: list[tuple[int, SegmentRequest, BoundImage, Callable[[], bool]]] = []
        for request in requests:
            if self.tracking is not None:
                self.tracking.prepare(request)  # tracking hook: its tracker holds the frame it binds
            try:
                image = self._flow.bind(request, settings, cameras)
                if self.tracking is not None:
                    self.tracking.bound(request, image)  # tracking hook: that frame is kept for the answer
                bound.append((len(outcomes), request, image, stop_for(request)))
                outcomes.append(None)
            except RequestRefused as refused:
                outcomes.append(refused)
        if bound:
            self.tally.record_batch(len(bound))
            ran = self._flow.run(engine, [(r, image, stop) for _i, r, image, stop in bound], settings)
            for (index, *_rest), outcome in zip(bound, ran):
                outcomes[index] = outcome
        images = {index: image for index, _r, image, _s in bound}
        for index, (request, outcome) in enumerate(zip(requests, outcomes)):
            # tracking hook: the targets' track ids into the result (or why not)
            tracked = self.tracking is not None and self.tracking.on_result(request, images.get(index), outcome)
            if isinstance(outcome, RequestRefused):
                if outcome.status == ResultMsg.STATUS_MODEL_ERROR and outcome.__cause__ is not None:
                    self._logger.error(f"request {request.request_id} failed:\n"
                                       + "".join(traceback.format_exception(outcome.__cause__)))
                self._refuse(request, outcome)
                continue
            self.answer(request, outcome.msg)
            if outcome.msg.status == ResultMsg.STATUS_OK:
                self._publish_extras(settings, images[index], outcome, tracked)

    def refuse_waiting(self, request: SegmentRequest, reason: str) -> None:
        """The worker's answer for a request it will not run (stopping)."""
        self._refuse(request, RequestRefused(ResultMsg.STATUS_NOT_READY, reason))

    def on_worker_crash(self, request: SegmentRequest, error: BaseException) -> None:
        self._logger.error(f"request {request.request_id} crashed the worker step: {error!r}")
        if self.tracking is not None:
            self.tracking.on_result(request, None, None)  # tracking hook: its tracker no longer waits for it
        self._refuse(request, RequestRefused(ResultMsg.STATUS_MODEL_ERROR,
                                             f"internal error: {type(error).__name__}: {error}"))

    # ------------------------------------------------------------------ answers
    def _refuse(self, request: SegmentRequest, refused: RequestRefused) -> None:
        camera = request.camera if request.image is None else ""
        self.answer(request, error_result_msg(refused.status, refused.error, request.request_id, request.instruction,
                                              refused.header, refused.size, camera))

    def answer(self, request: SegmentRequest, msg: ResultMsg) -> None:
        """Send a request's one result: result topic, answer topic (when OK), then the waiting caller."""
        if not request.claim_answer():
            return
        msg.total_ms = request.elapsed_ms()
        self.tally.record(msg.status, msg.error)
        try:
            outputs = self._outputs
            if outputs is not None:
                outputs.publish(msg)
        finally:
            if request.deliver is not None:
                request.deliver(msg)

    def _publish_extras(self, settings: NodeSettings, image: BoundImage, outcome: RunOutcome,
                        tracked: bool = False) -> None:
        """After the result: the overlay, the targets' cloud and the markers (``ResultOutputs.publish_extras``);
        a tracked result's overlay and markers come from its tracks instead, keyed by track id."""
        outputs = self._outputs
        try:
            if outputs is not None:
                outputs.publish_extras(settings, image, outcome, tracked)
        except Exception as error:  # noqa: BLE001 - a picture for people must never cost a result
            if not self._extras_warned:
                self._extras_warned = True
                self._logger.warning(f"overlay / cloud / markers not published: {type(error).__name__}: {error}")


def _full_text(worker: RequestWorker[SegmentRequest]) -> str:
    return f"the request queue is full ({worker.capacity} waiting); try again later"
