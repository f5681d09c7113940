"""The path of one request through the node, without ROS entities: no node, no DDS, no threads.

    admit(request, given image)     at arrival, on the callback's thread: the instruction, the
                                    camera name, the given image (converted here, so a bad one is
                                    refused at once with ITS header)
    bind(request, camera)           when the worker starts it: the given image, or the camera's
                                    newest frame, refused when missing or older than max_image_age_s
    run(engine, [(request, image, should_stop)])   the engine call (one entry point, any batch size);
                                    its exception TYPE picks each request's status code
    the result message              conversions.result_to_msg / error_result_msg

Every refusal is a ``RequestRefused`` carrying its status, its text, and the source image's header
and size when there is an image. The node turns it into the request's one result. Unit-tested
without DDS (test/ros/test_request_flow.py); the node owns lifecycle, entities and wiring.

Status by exception type (engine/errors.py, conversions.ImageConversionError):

    InvalidImageError, ImageConversionError   STATUS_INVALID_IMAGE
    InvalidInstructionError                   STATUS_INVALID_INSTRUCTION
    InvalidOptionError, other InvalidInputError  STATUS_INVALID_REQUEST
    any other exception of the engine          STATUS_MODEL_ERROR
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from sensor_msgs.msg import Image
from std_msgs.msg import Header

from pixellm_ros.engine.errors import (
    InvalidImageError,
    InvalidInputError,
    InvalidInstructionError,
)
from pixellm_ros.msg import SegmentationResult as SegmentationResultMsg

from .conversions import (
    ImageConversionError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    is_empty_image,
    result_to_msg,
)
from .requests import BoundImage, CameraInput, SegmentRequest
from .spatial_conversions import Result3D, compute_targets_3d, fill_result_3d, stamp_ns

if TYPE_CHECKING:
    from pixellm_ros.engine.engine import PixelLMEngine

    from .params import NodeSettings

Status = SegmentationResultMsg


class RequestRefused(Exception):
    """A request that cannot be run; carries its status code, the error text and the image's header."""

    def __init__(self, status: int, error: str, header: Header | None = None,
                 size: tuple[int, int] = (0, 0)) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.header = header
        self.size = size


def status_of(error: BaseException) -> int:
    """The status code an exception of the engine or of the image conversion stands for."""
    if isinstance(error, (InvalidImageError, ImageConversionError)):
        return Status.STATUS_INVALID_IMAGE
    if isinstance(error, InvalidInstructionError):
        return Status.STATUS_INVALID_INSTRUCTION
    if isinstance(error, InvalidInputError):
        return Status.STATUS_INVALID_REQUEST
    return Status.STATUS_MODEL_ERROR


def image_size(msg: Any) -> tuple[int, int]:
    """(width, height) a message claims (0, 0 for compressed images, whose size is in the payload)."""
    return int(getattr(msg, "width", 0)), int(getattr(msg, "height", 0))


@dataclass(frozen=True)
class RunOutcome:
    """What ``RequestFlow.run`` produced: the message, the engine's result, the 3D side (or None)."""

    msg: SegmentationResultMsg
    result: Any
    targets_3d: Result3D | None = None


class RequestFlow:
    """Admission, binding and running of requests; ``age_s(header)`` is the node clock's frame age."""

    def __init__(self, age_s: Callable[[Header], float]) -> None:
        self._age_s = age_s

    # ------------------------------------------------------------------ on arrival
    def admit(self, request: SegmentRequest, given_image: Image | None, settings: NodeSettings,
              cameras: Mapping[str, CameraInput]) -> None:
        """Check a new request; sets ``request.camera`` / ``request.image`` or raises RequestRefused."""
        header = given_image.header if given_image is not None and not is_empty_image(given_image) else None
        size = image_size(given_image) if header is not None else (0, 0)
        request.instruction = request.instruction.strip()
        if not request.instruction:
            raise RequestRefused(Status.STATUS_INVALID_INSTRUCTION, "the instruction is empty", header, size)
        if len(request.instruction) > settings.max_instruction_chars:
            length = len(request.instruction)
            request.instruction = request.instruction[: settings.max_instruction_chars]
            raise RequestRefused(Status.STATUS_INVALID_INSTRUCTION,
                                 f"the instruction has {length} characters, more than max_instruction_chars = "
                                 f"{settings.max_instruction_chars} (the echoed instruction is cut to that length)",
                                 header, size)
        if header is not None:
            request.camera = ""
            try:
                request.image = BoundImage(image_msg_to_rgb(given_image, settings.max_image_pixels), header)
            except ImageConversionError as error:
                raise RequestRefused(Status.STATUS_INVALID_IMAGE, f"the request's image: {error}", header, size) from None
            return
        names = list(cameras)
        camera = request.camera.strip() or names[0]
        if camera not in cameras:
            raise RequestRefused(Status.STATUS_INVALID_REQUEST,
                                 f"camera '{request.camera}' is not one of this node's cameras: {', '.join(names)}")
        request.camera = camera

    # ------------------------------------------------------------------ when the worker starts it
    def bind(self, request: SegmentRequest, settings: NodeSettings, cameras: Mapping[str, CameraInput]) -> BoundImage:
        """The image the request is answered against (its own, or its camera's newest frame)."""
        if request.cancelled():
            header = request.image.header if request.image is not None else None
            size = request.image.size if request.image is not None else (0, 0)
            raise RequestRefused(Status.STATUS_CANCELLED, "cancelled before it started", header, size)
        if request.image is not None:
            return request.image
        camera = cameras[request.camera]
        frame = camera.frames.get()
        if frame is None:
            raise RequestRefused(Status.STATUS_NO_IMAGE, f"no camera image received yet on '{camera.topic}' and none "
                                 "given with the request." + camera.transport_hint())
        header = frame.msg.header
        size = image_size(frame.msg)
        if settings.max_image_age_s > 0:
            age = self._age_s(header)
            if age > settings.max_image_age_s:
                if header.stamp.sec == 0 and header.stamp.nanosec == 0:
                    hint = (" Its header.stamp is zero: the camera does not stamp its images; set max_image_age_s "
                            "to 0 to accept them.")
                else:
                    hint = camera.transport_hint()
                raise RequestRefused(Status.STATUS_STALE_IMAGE, f"the newest camera image on '{camera.topic}' is "
                                     f"{age:.3f} s old, older than max_image_age_s = {settings.max_image_age_s}.{hint}",
                                     header, size)
        try:
            if frame.compressed:
                rgb = compressed_msg_to_rgb(frame.msg, settings.max_image_pixels, settings.max_compressed_bytes)
            else:
                rgb = image_msg_to_rgb(frame.msg, settings.max_image_pixels)
        except ImageConversionError as error:
            raise RequestRefused(Status.STATUS_INVALID_IMAGE, f"the newest camera image on '{camera.topic}': {error}",
                                 header, size) from None
        # The depth of this frame's stamp is looked up now: a small cache may have dropped it by
        # the time a slow answer is ready.
        lookup = camera.depth.match(stamp_ns(header.stamp)) if camera.depth is not None else None
        return BoundImage(rgb, header, camera.depth, lookup)

    # ------------------------------------------------------------------ the run
    @classmethod
    def run(cls, engine: PixelLMEngine, items: list[tuple[SegmentRequest, BoundImage, Callable[[], bool]]],
            settings: NodeSettings) -> list[RunOutcome | RequestRefused]:
        """Run bound requests through the engine's one entry point, ``segment_batch`` (one request
        is a batch of one), each with its own text stream, token count and stop: one outcome per
        item, in order. The message, the engine's result and, for a camera frame with depth, the
        targets in 3D (filled into the message's 3D fields); or a RequestRefused whose status comes
        from the exception's type, with ``__cause__`` set (the node logs a model failure's
        traceback). A bad request is refused alone; a model failure answers every request of the
        batch with STATUS_MODEL_ERROR."""
        from pixellm_ros.engine import BatchRequest

        outcomes = engine.segment_batch([
            BatchRequest(image.rgb, request.instruction, max_new_tokens=settings.max_new_tokens,
                         on_text=request.on_text, should_stop=should_stop, on_token=request.count_tokens)
            for request, image, should_stop in items])
        done: list[RunOutcome | RequestRefused] = []
        for (request, image, _stop), outcome in zip(items, outcomes):
            if isinstance(outcome, BaseException):
                refused = _refusal(outcome, image)
                refused.__cause__ = outcome
                done.append(refused)
            else:
                done.append(cls.complete(request, image, outcome, settings))
        return done

    @staticmethod
    def complete(request: SegmentRequest, image: BoundImage, result: Any, settings: NodeSettings) -> RunOutcome:
        """The result message of an engine result (its 3D side filled in for a camera frame with depth)."""
        if result.stopped:
            status, error_text = ((Status.STATUS_CANCELLED, "cancelled by the client") if request.cancelled()
                                  else (Status.STATUS_NOT_READY, "stopped: the node was deactivated while it ran"))
        else:
            status, error_text = Status.STATUS_OK, ""
        msg = result_to_msg(result, image.header, request.request_id, request.instruction, image.size,
                            settings.mask_format, status, error_text,
                            camera=request.camera if request.image is None else "")
        targets_3d = None
        if image.depth is not None and status == Status.STATUS_OK:
            lookup = image.depth_lookup
            if not lookup.ok and lookup.may_arrive_later:  # the depth came after the colour frame was taken
                lookup = image.depth.match(stamp_ns(image.header.stamp))
            targets_3d = compute_targets_3d([t.mask for t in result.targets], [t.box for t in result.targets],
                                            image.size, lookup, header=image.header,
                                            names=[t.name for t in result.targets])
            fill_result_3d(msg, targets_3d)
        return RunOutcome(msg, result, targets_3d)


def _refusal(error: BaseException, image: BoundImage) -> RequestRefused:
    """The refusal an exception of the engine stands for (its status by type), with the image's header."""
    status = status_of(error)
    text = str(error) if status != Status.STATUS_MODEL_ERROR else f"{type(error).__name__}: {error}"
    return RequestRefused(status, text, image.header, image.size)
