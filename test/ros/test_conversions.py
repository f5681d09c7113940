"""Messages <-> arrays: every accepted camera encoding, every refusal, and the result messages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from pixellm_ros.engine.result import SegmentationResult, Target
from pixellm_ros.msg import SegmentationResult as ResultMsg
from pixellm_ros.msg import SegmentedTarget
from pixellm_ros.ros.conversions import (
    ImageConversionError,
    compressed_msg_to_rgb,
    error_result_msg,
    image_msg_to_rgb,
    mask_from_msg,
    mask_to_image_msg,
    result_to_msg,
    rgb_to_image_msg,
    target_to_msg,
    timings_to_fields,
)

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def raw_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: int = 0) -> Image:
    """Build an Image from raw (H, W[, C]) pixels with ``pad`` bytes of padding after each row."""
    height = pixels.shape[0]
    rows = pixels.reshape(height, -1).view(np.uint8).reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 77, np.uint8)], axis=1)
    return Image(header=Header(frame_id="cam"), height=height, width=pixels.shape[1], encoding=encoding,
                 is_bigendian=bigendian, step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    ("encoding", "make_raw"),
    [
        ("rgb8", lambda rgb: rgb),
        ("bgr8", lambda rgb: rgb[:, :, ::-1]),
        ("rgba8", lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)),
        ("bgra8", lambda rgb: np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)),
    ],
)
def test_colour_encodings_give_rgb(encoding: str, make_raw, pad: int) -> None:
    msg = raw_msg(np.ascontiguousarray(make_raw(RGB)), encoding, pad)
    out = image_msg_to_rgb(msg)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


def test_mono8_is_replicated_to_three_channels() -> None:
    grey = RGB[:, :, 0]
    out = image_msg_to_rgb(raw_msg(grey, "mono8", pad=2))
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize("bigendian", [0, 1])
def test_mono16_keeps_the_high_byte_in_either_byte_order(bigendian: int) -> None:
    values = np.array([[0, 255, 256, 65535], [4660, 43981, 512, 1]], dtype=np.uint16)
    raw = values.astype(">u2" if bigendian else "<u2")
    out = image_msg_to_rgb(raw_msg(raw, "mono16", pad=2, bigendian=bigendian))
    np.testing.assert_array_equal(out[:, :, 0], (values >> 8).astype(np.uint8))
    assert (out[:, :, 0] == out[:, :, 2]).all()


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_is_converted_with_opencv(encoding: str) -> None:
    # A flat colour survives 4:2:2 chroma subsampling. Y=120, U=100, V=180 is, by BT.601 video
    # range: R = 1.164*104 + 1.596*52 = 204, G = 1.164*104 - 0.813*52 + 0.391*28 = 90,
    # B = 1.164*104 - 2.018*28 = 65.
    y, u, v = 120, 100, 180
    pair = [u, y, v, y] if encoding in ("yuv422", "uyvy") else [y, u, y, v]  # UYVY vs YUYV byte order
    packed = np.tile(np.array(pair, np.uint8), (4, 3)).reshape(4, 6, 2)
    out = image_msg_to_rgb(raw_msg(packed, encoding))
    assert out.shape == (4, 6, 3)
    assert np.abs(out.astype(int) - np.array([204, 90, 65])).max() <= 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"encoding": "32FC1"}, "unsupported image encoding '32FC1'"),
        ({"encoding": "16UC1"}, "supported: rgb8"),
        ({"encoding": "bayer_rggb8"}, "unsupported"),
        ({"width": 0}, "zero-size image (0x5)"),
        ({"height": 0}, "zero-size image (7x0)"),
        ({"step": 20}, "step 20 is smaller than width * bytes per pixel = 7 * 3 = 21"),
        ({"step": 22}, "image data has 105 bytes but step * height = 22 * 5 = 110"),
        ({"data": bytes(104)}, "image data has 104 bytes"),
    ],
)
def test_unusable_images_are_refused_with_the_reason(changes: dict, message: str) -> None:
    msg = raw_msg(RGB, "rgb8")
    for key, value in changes.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError) as error:
        image_msg_to_rgb(msg)
    assert message in str(error.value)


def test_odd_width_yuv_is_refused() -> None:
    msg = raw_msg(np.zeros((2, 3, 2), np.uint8), "uyvy")
    with pytest.raises(ImageConversionError, match="even width"):
        image_msg_to_rgb(msg)


def test_compressed_png_and_jpeg_decode_to_rgb() -> None:
    big = cv2.resize(RGB, (70, 50), interpolation=cv2.INTER_NEAREST)
    ok, png = cv2.imencode(".png", cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(compressed_msg_to_rgb(CompressedImage(format="png", data=png.tobytes())), big)
    flat = np.zeros((32, 48, 3), np.uint8)
    flat[:] = (200, 40, 10)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(flat, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = compressed_msg_to_rgb(CompressedImage(format="jpeg", data=jpeg.tobytes()))
    assert out.shape == (32, 48, 3) and np.abs(out.astype(int) - flat).max() <= 4  # red stays red


@pytest.mark.parametrize("data", [b"", b"definitely not an image"])
def test_undecodable_compressed_images_are_refused(data: bytes) -> None:
    with pytest.raises(ImageConversionError):
        compressed_msg_to_rgb(CompressedImage(format="jpeg", data=data))


def test_rgb_to_image_msg_round_trip_keeps_the_header() -> None:
    header = Header(frame_id="optical")
    header.stamp.sec = 12
    msg = rgb_to_image_msg(RGB, header)
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 7, 5, 21)
    assert msg.header == header
    np.testing.assert_array_equal(image_msg_to_rgb(msg), RGB)


def test_mask_to_image_msg_is_mono8_0_255() -> None:
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    msg = mask_to_image_msg(mask, Header())
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("mono8", 6, 4, 6)
    pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(4, 6)
    np.testing.assert_array_equal(pixels, mask.astype(np.uint8) * 255)


def make_target(height: int = 30, width: int = 40) -> Target:
    mask = np.zeros((height, width), bool)
    mask[5:12, 8:20] = True
    mask[7, 25] = True
    return Target(name="the red cup", mask=mask, box=(8, 5, 26, 12), score=0.75)


@pytest.mark.parametrize("mask_format", [SegmentedTarget.MASK_FULL, SegmentedTarget.MASK_CROPPED])
def test_target_masks_full_or_cropped_round_trip(mask_format: int) -> None:
    target = make_target()
    header = Header(frame_id="cam")
    msg = target_to_msg(target, 3, header, mask_format)
    assert (msg.name, msg.index, msg.mask_format, msg.area) == ("the red cup", 3, mask_format, int(target.mask.sum()))
    assert msg.score == pytest.approx(0.75)
    assert (msg.box.x_offset, msg.box.y_offset, msg.box.width, msg.box.height) == (8, 5, 18, 7)
    expected_size = (40, 30) if mask_format == SegmentedTarget.MASK_FULL else (18, 7)
    assert (msg.mask.width, msg.mask.height) == expected_size
    assert msg.mask.header == header
    np.testing.assert_array_equal(mask_from_msg(msg, (40, 30)), target.mask)


def test_empty_mask_crops_to_nothing() -> None:
    target = Target(name="nothing", mask=np.zeros((6, 8), bool), box=(0, 0, 0, 0), score=0.0)
    msg = target_to_msg(target, 0, Header(), SegmentedTarget.MASK_CROPPED)
    assert (msg.mask.width, msg.mask.height, msg.area) == (0, 0, 0)
    assert not mask_from_msg(msg, (8, 6)).any()


def engine_result(targets: list[Target]) -> SegmentationResult:
    return SegmentationResult(text="It is the red cup.", targets=targets, generated_tokens=13, warnings=["w"],
                              timings={"vision_ms": 2.0, "prefill_ms": 1.0, "generation_ms": 5.0,
                                       "decoding_ms": 3.0, "postprocess_ms": 0.5})


def test_result_to_msg_carries_everything_of_an_ok_result() -> None:
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 5, 6
    msg = result_to_msg(engine_result([make_target(), make_target()]), header, "r-1", "find it", (40, 30),
                        SegmentedTarget.MASK_FULL)
    assert msg.header == header and msg.request_id == "r-1" and msg.instruction == "find it"
    assert msg.answer == "It is the red cup." and msg.status == ResultMsg.STATUS_OK and msg.error == ""
    assert [t.index for t in msg.targets] == [0, 1]
    assert (msg.image_width, msg.image_height, msg.generated_tokens) == (40, 30, 13)
    assert list(msg.warnings) == ["w"]
    # prefill is part of the engine's generation time; postprocessing counts as decoding
    assert (msg.vision_ms, msg.generation_ms, msg.decoding_ms) == (2.0, 5.0, 3.5)
    assert timings_to_fields({}) == (0.0, 0.0, 0.0)


def test_result_to_msg_drops_targets_of_an_error_but_keeps_the_text() -> None:
    msg = result_to_msg(engine_result([make_target()]), Header(), "r-2", "find it", (40, 30),
                        SegmentedTarget.MASK_FULL, ResultMsg.STATUS_CANCELLED, "cancelled")
    assert msg.status == ResultMsg.STATUS_CANCELLED and msg.error == "cancelled"
    assert not msg.targets and msg.answer == "It is the red cup."


def test_error_result_msg() -> None:
    msg = error_result_msg(ResultMsg.STATUS_QUEUE_FULL, "full", "r-3", "find it")
    assert (msg.status, msg.error, msg.request_id, msg.instruction) == (ResultMsg.STATUS_QUEUE_FULL, "full", "r-3",
                                                                        "find it")
    assert msg.header == Header() and not msg.targets
    with pytest.raises(ValueError):
        error_result_msg(ResultMsg.STATUS_OK, "", "r", "i")
