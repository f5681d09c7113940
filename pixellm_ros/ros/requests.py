"""What travels from the node's callbacks to its worker thread: requests and the newest camera frame."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from pixellm_ros.msg import SegmentationResult as SegmentationResultMsg

CameraMsg = Union[Image, CompressedImage]
# Where Fast DDS's default shared-memory segment (512 KB, the writer's) starts to drop frames for
# a best-effort reader (ros2/rmw_fastrtps#739; measured in benchmarks/bench_transport.py).
LARGE_FRAME_BYTES = 512 * 1024


@dataclass(frozen=True)
class BoundImage:
    """The image a request is answered against: rgb (H, W, 3) uint8 and the source header.

    depth: the camera's depth cache when the frame came from a camera with depth (None: no 3D);
    depth_lookup: what the cache matched to this frame's stamp when the frame was taken.
    """

    rgb: np.ndarray
    header: Header
    depth: Any = None
    depth_lookup: Any = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as the result message counts them."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


@dataclass(frozen=True)
class CameraFrame:
    """A camera message as received (conversion waits for the worker); seq grows by one per frame."""

    msg: CameraMsg
    seq: int

    @property
    def compressed(self) -> bool:
        return isinstance(self.msg, CompressedImage)


class LatestFrame:
    """Holds only the newest camera frame; written by the image callback, read by the worker.

    ``received`` counts frames since the node started (diagnostics' rate); ``newest_bytes`` is the
    payload size of the newest frame (the transport hint: frames over ~0.5 MB and Fast DDS).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: CameraFrame | None = None
        self._seq = 0
        self._bytes: int | None = None

    def put(self, msg: CameraMsg) -> None:
        with self._lock:
            self._seq += 1
            self._frame = CameraFrame(msg, self._seq)
            self._bytes = len(msg.data)

    def get(self) -> CameraFrame | None:
        with self._lock:
            return self._frame

    def received(self) -> int:
        """How many frames have arrived since the node started (the running count ``put`` keeps)."""
        with self._lock:
            return self._seq

    def newest_bytes(self) -> int | None:
        """Payload bytes of the newest frame ever received (kept across ``clear``), None before any."""
        with self._lock:
            return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._frame = None


@dataclass
class CameraInput:
    """One camera as the request flow sees it: its name, its newest frame, and its subscription.

    topic: the topic actually subscribed (fully resolved, remappings applied), for messages.
    publisher_count: how many publishers the subscription is matched with now.
    reliability: the subscription's reliability ("best_effort" | "reliable").
    """

    name: str
    frames: LatestFrame
    topic: str
    publisher_count: Callable[[], int]
    reliability: str = "best_effort"
    depth: Any = None  # its DepthCache (ros/depth_cache.py) when depth is enabled

    def transport_hint(self) -> str:
        """Why frames may be missing although a camera publishes, and what to set ("" : no idea)."""
        publishers = self.publisher_count()
        if publishers == 0:
            return (f" No publisher is connected to '{self.topic}': is the camera running, and is this the topic "
                    "it publishes (remap image_raw or set the image topic parameter)?")
        if self.reliability != "best_effort":
            return ""
        newest = self.frames.newest_bytes()
        size = "" if newest is None else f" (the newest one that arrived had {newest / 1e6:.1f} MB)"
        likely = "likely" if newest is None or newest > LARGE_FRAME_BYTES else "possibly"
        return (f" {publishers} publisher(s) still connected to '{self.topic}': the frames are {likely} lost in "
                f"transport{size}. Fast DDS's default 512 KB shared-memory segment drops frames over ~0.5 MB for a "
                "best-effort subscriber: start the camera driver with the large-frames profile "
                "(FASTDDS_DEFAULT_PROFILES_FILE=<share>/pixellm_ros/config/fastdds_large_frames.xml; "
                "FASTRTPS_DEFAULT_PROFILES_FILE on Humble and Jazzy), or set qos.image_reliability: reliable if "
                "the camera publishes reliably.")


@dataclass
class SegmentRequest:
    """One instruction to answer, from any channel ("topic", "service", "action", "standing").

    camera: the camera whose newest frame answers it (empty: the first one; set at admission).
    image: the image given with the request (service/action), already converted; None means the
        newest camera frame at the moment the worker starts the request.
    on_text: receives each new piece of answer text (action feedback).
    cancel_requested: polled while the request waits and runs (action cancel).
    deliver: receives the one result (service response / action result), on the worker thread or,
        for a refusal, on the thread that refused it.
    track: the request asked for its targets to be tracked (the service's / goal's ``track``).
    """

    request_id: str
    instruction: str
    channel: str
    camera: str = ""
    image: BoundImage | None = None
    on_text: Callable[[str], None] | None = None
    cancel_requested: Callable[[], bool] | None = None
    deliver: Callable[[SegmentationResultMsg], None] | None = None
    track: bool = False
    accepted_at: float = field(default_factory=time.monotonic)
    generated_tokens: int = 0  # tokens the engine has made for it so far (count_tokens: the engine's on_token)
    _answered: bool = field(default=False, repr=False)
    _answer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_tokens(self, generated: int) -> None:
        """The engine's on_token: ``generated`` tokens made so far (the action feedback reports it)."""
        self.generated_tokens = generated

    def cancelled(self) -> bool:
        return self.cancel_requested is not None and bool(self.cancel_requested())

    def claim_answer(self) -> bool:
        """True exactly once: the caller that gets True sends the request's one result."""
        with self._answer_lock:
            if self._answered:
                return False
            self._answered = True
            return True

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.accepted_at) * 1000.0


class RequestIds:
    """Ids "<node>-<n>" for requests that came without one (thread-safe)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            return f"{self._prefix}-{next(self._counter)}"
