"""The request flow without DDS: admission, binding and age, the engine run, the status by exception
type, and the header of the source image on every refusal that has an image (the real tiny engine)."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time as TimeMsg
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from pixellm_ros.engine import EngineError, InvalidImageError, InvalidInstructionError, InvalidOptionError
from pixellm_ros.msg import SegmentationResult as Status
from pixellm_ros.ros import params as P
from pixellm_ros.ros.conversions import ImageConversionError
from pixellm_ros.ros.request_flow import RequestFlow, RequestRefused, status_of
from pixellm_ros.ros.requests import CameraInput, LatestFrame, SegmentRequest
from support.engine import reference_engine

HEADER = Header(stamp=TimeMsg(sec=100, nanosec=5), frame_id="cam_optical")


def settings(**changes: Any) -> Any:
    return dataclasses.replace(P.settings_from_values(P.DEFAULTS), **changes)


def image_msg(height: int, width: int, header: Header = HEADER) -> Image:
    rgb = np.random.default_rng(height * 7 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image(header=header, height=height, width=width, encoding="rgb8", step=width * 3, data=rgb.tobytes())


def camera(publishers: int = 0, name: str = "default") -> CameraInput:
    return CameraInput(name, LatestFrame(), f"/robot/{name}/image_raw", lambda: publishers)


def request(text: str = "segment the red cup", camera_name: str = "") -> SegmentRequest:
    return SegmentRequest("r-1", text, "service", camera=camera_name)


def refusal(call: Any) -> RequestRefused:
    with pytest.raises(RequestRefused) as caught:
        call()
    return caught.value


def flow(age_s: float = 0.0) -> RequestFlow:
    return RequestFlow(lambda _header: age_s)


@pytest.mark.parametrize(("error", "status"), [
    (InvalidImageError("x"), Status.STATUS_INVALID_IMAGE),
    (ImageConversionError("x"), Status.STATUS_INVALID_IMAGE),
    (InvalidInstructionError("x"), Status.STATUS_INVALID_INSTRUCTION),
    (InvalidOptionError("max_new_tokens must be a positive int"), Status.STATUS_INVALID_REQUEST),
    (EngineError("x"), Status.STATUS_MODEL_ERROR),
    (RuntimeError("CUDA out of memory"), Status.STATUS_MODEL_ERROR),
])
def test_the_status_comes_from_the_exception_type_not_its_text(error: Exception, status: int) -> None:
    assert status_of(error) == status


# ------------------------------------------------------------------------------ admission
def test_a_bad_given_image_is_refused_with_its_own_header() -> None:
    bad = image_msg(4, 5)
    bad.step = 7  # step * height != len(data)
    refused = refusal(lambda: flow().admit(request(), bad, settings(), {"default": camera()}))
    assert refused.status == Status.STATUS_INVALID_IMAGE and "step" in refused.error
    assert refused.header == HEADER and refused.size == (5, 4)


@pytest.mark.parametrize(("width", "height"), [(0, 480), (640, 0)])
def test_an_image_with_one_side_zero_is_invalid_not_the_camera_frame(width: int, height: int) -> None:
    odd = Image(header=HEADER, width=width, height=height, encoding="rgb8", step=width * 3, data=b"")
    refused = refusal(lambda: flow().admit(request(), odd, settings(), {"default": camera()}))
    assert refused.status == Status.STATUS_INVALID_IMAGE and "zero-size" in refused.error
    assert refused.header == HEADER


def test_only_an_image_with_no_pixels_at_all_means_the_camera_frame() -> None:
    seg = request()
    flow().admit(seg, Image(), settings(), {"default": camera()})
    assert seg.image is None and seg.camera == "default"


def test_a_given_image_over_the_pixel_limit_is_refused_before_conversion() -> None:
    refused = refusal(lambda: flow().admit(request(), image_msg(20, 30), settings(max_image_pixels=500),
                                           {"default": camera()}))
    assert refused.status == Status.STATUS_INVALID_IMAGE and "limits.max_image_pixels" in refused.error
    assert refused.header == HEADER


@pytest.mark.parametrize(("text", "error"), [("   ", "empty"), ("x" * 40, "more than max_instruction_chars = 30")])
def test_bad_instructions_are_refused_with_the_images_header(text: str, error: str) -> None:
    refused = refusal(lambda: flow().admit(request(text), image_msg(4, 5), settings(max_instruction_chars=30),
                                           {"default": camera()}))
    assert refused.status == Status.STATUS_INVALID_INSTRUCTION and error in refused.error
    assert refused.header == HEADER


def test_a_request_names_its_camera_and_an_unknown_one_is_an_invalid_request() -> None:
    cameras = {"head": camera(name="head"), "wrist": camera(name="wrist")}
    seg = request(camera_name="wrist")
    flow().admit(seg, None, settings(), cameras)
    assert seg.camera == "wrist"
    first = request()
    flow().admit(first, None, settings(), cameras)
    assert first.camera == "head"  # empty: the first camera
    refused = refusal(lambda: flow().admit(request(camera_name="tail"), None, settings(), cameras))
    assert refused.status == Status.STATUS_INVALID_REQUEST and "head, wrist" in refused.error


# ------------------------------------------------------------------------------ binding
def test_no_frame_yet_names_the_subscribed_topic_and_the_likely_cause() -> None:
    seg = request(camera_name="default")
    refused = refusal(lambda: flow().bind(seg, settings(), {"default": camera(publishers=0)}))
    assert refused.status == Status.STATUS_NO_IMAGE and "/robot/default/image_raw" in refused.error
    assert "No publisher is connected" in refused.error


def test_a_stale_frame_while_the_camera_still_publishes_points_at_the_transport() -> None:
    source = camera(publishers=1)
    source.frames.put(image_msg(480, 640))
    seg = request(camera_name="default")
    refused = refusal(lambda: flow(age_s=3.0).bind(seg, settings(max_image_age_s=1.0), {"default": source}))
    assert refused.status == Status.STATUS_STALE_IMAGE and refused.header == HEADER and refused.size == (640, 480)
    assert "3.000 s old" in refused.error and "1 publisher(s) still connected" in refused.error
    assert "0.9 MB" in refused.error and "large-frames profile" in refused.error
    assert "qos.image_reliability: reliable" in refused.error
    source.reliability = "reliable"  # then Fast DDS's segment is not the cause
    assert "large-frames" not in refusal(lambda: flow(age_s=3.0).bind(seg, settings(), {"default": source})).error


def test_a_zero_stamp_says_that_the_camera_does_not_stamp() -> None:
    source = camera(publishers=1)
    source.frames.put(image_msg(4, 5, Header(frame_id="cam")))
    refused = refusal(lambda: flow(age_s=1e9).bind(request(camera_name="default"), settings(), {"default": source}))
    assert refused.status == Status.STATUS_STALE_IMAGE and "does not stamp" in refused.error


def png_claiming(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose header (IHDR, CRC recomputed) claims width x height pixels."""
    ok, encoded = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr: ihdr + 17])))
    return bytes(data)


@pytest.mark.parametrize(("side", "error"), [
    (9000, "9000x9000 = 81000000 pixels is larger than the limit of 50000000 pixels (parameter limits.max_image_pixels)"),
    (20000, "a decompression bomb"),
])
def test_a_small_png_claiming_a_huge_image_is_refused_from_its_header_before_decoding(side: int, error: str) -> None:
    source = CameraInput("default", LatestFrame(), "/c/compressed", lambda: 1)
    bomb = png_claiming(side, side)
    assert len(bomb) < 200
    source.frames.put(CompressedImage(header=HEADER, format="png", data=bomb))
    refused = refusal(lambda: flow().bind(request(camera_name="default"), settings(max_image_age_s=0.0),
                                          {"default": source}))
    assert refused.status == Status.STATUS_INVALID_IMAGE and refused.header == HEADER
    assert error in refused.error


def test_a_compressed_payload_over_the_byte_limit_is_refused() -> None:
    source = CameraInput("default", LatestFrame(), "/c/compressed", lambda: 1)
    source.frames.put(CompressedImage(header=HEADER, format="png", data=png_claiming(8, 8)))
    refused = refusal(lambda: flow().bind(request(camera_name="default"),
                                          settings(max_image_age_s=0.0, max_compressed_bytes=10), {"default": source}))
    assert refused.status == Status.STATUS_INVALID_IMAGE and "limits.max_compressed_bytes" in refused.error


# ------------------------------------------------------------------------------ the run, real engine
@pytest.fixture(scope="module")
def engine(chain_model_dir: Path, single_thread_torch) -> Any:
    return reference_engine(chain_model_dir)


def run(engine: Any, seg: SegmentRequest, msg: Image, **changes: Any) -> Any:
    bound_flow = flow()
    bound_flow.admit(seg, msg, settings(**changes), {"default": camera()})
    image = bound_flow.bind(seg, settings(**changes), {"default": camera()})
    (outcome,) = bound_flow.run(engine, [(seg, image, lambda: False)], settings(**changes))
    if isinstance(outcome, RequestRefused):
        raise outcome
    return outcome


def test_a_good_request_runs_and_keeps_the_source_header(engine: Any) -> None:
    outcome = run(engine, request(), image_msg(48, 64))
    msg, result = outcome.msg, outcome.result
    assert outcome.targets_3d is None  # a request's own image has no depth
    assert msg.status == Status.STATUS_OK and msg.header == HEADER and msg.targets
    assert (msg.image_width, msg.image_height) == (64, 48) and msg.answer == result.text


def test_the_requests_token_count_comes_from_where_the_engine_makes_tokens(engine: Any) -> None:
    """generated_tokens (the action feedback's) is set by the engine's on_token, not by how often
    should_stop is polled: here should_stop is never consulted by the request at all."""
    seg = request()
    counts: list[int] = []
    seg.on_text = lambda _delta: counts.append(seg.generated_tokens)
    outcome = run(engine, seg, image_msg(48, 64))
    assert seg.generated_tokens == outcome.result.generated_tokens == outcome.msg.generated_tokens > 0
    assert counts and counts == sorted(set(counts)) and counts[-1] <= seg.generated_tokens


def test_a_line_scan_image_is_an_invalid_image_not_a_model_error(engine: Any) -> None:
    refused = refusal(lambda: run(engine, request(), image_msg(1, 4000)))
    assert refused.status == Status.STATUS_INVALID_IMAGE and "too thin" in refused.error
    assert refused.header == HEADER and refused.size == (4000, 1)


def test_an_instruction_holding_the_image_placeholder_is_an_invalid_instruction(engine: Any) -> None:
    refused = refusal(lambda: run(engine, request("what is <image> here"), image_msg(48, 64)))
    assert refused.status == Status.STATUS_INVALID_INSTRUCTION and "control text" in refused.error
    assert refused.header == HEADER


def test_a_failing_model_is_a_model_error_with_the_header(chain_model_dir: Path) -> None:
    from pixellm_ros.engine import PixelLMEngine

    broken = PixelLMEngine.from_pretrained(chain_model_dir, device="cpu")
    broken.release()  # a real engine whose model is gone
    refused = refusal(lambda: run(broken, request(), image_msg(48, 64)))
    assert refused.status == Status.STATUS_MODEL_ERROR and "released" in refused.error
    assert refused.header == HEADER and isinstance(refused.__cause__, EngineError)
