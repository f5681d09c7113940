"""Conversions between ROS messages and the arrays the engine works on.

Everything that touches a ``sensor_msgs`` or ``pixellm_ros`` message layout lives here, so the node
itself only moves data around. No cv_bridge: ROS 2's cv_bridge is a C++ extension that is not
available everywhere this package runs, and the handful of encodings a colour camera publishes
convert with numpy (and OpenCV for YUV and compressed frames).

Camera images (``sensor_msgs/Image``) accepted by ``image_msg_to_rgb``:

====================  ==================================================================
encoding              conversion to (H, W, 3) uint8 RGB
====================  ==================================================================
rgb8, bgr8            channel order fixed
rgba8, bgra8          alpha dropped
mono8                 grey replicated to three channels
mono16                high byte kept (value >> 8), byte order from ``is_bigendian``
yuv422 / uyvy         OpenCV UYVY -> RGB (``yuv422`` is UYVY in ROS)
yuv422_yuy2 / yuyv    OpenCV YUYV -> RGB
====================  ==================================================================

Anything else (depth images ``16UC1``/``32FC1``, Bayer, 16-bit colour, ...) is refused with an
``ImageConversionError`` that names the supported encodings. Rows may be padded (``step`` larger
than ``width * bytes_per_pixel``) but ``len(data)`` must equal ``step * height`` exactly.

Compressed images (``sensor_msgs/CompressedImage``, JPEG/PNG, ...) are decoded with ``cv2.imdecode``,
after their size has been read from the file header (PIL reads only the header) and checked against
the node's limits: a small PNG that claims 20000 x 20000 pixels is refused before it can take seconds
of decoding and gigabytes of memory.

Results: masks are ``mono8`` images, 0 = background and 255 = target, either the full frame
(``SegmentedTarget.MASK_FULL``) or only the target's box (``MASK_CROPPED``, pixel (0, 0) is source
pixel (box.x_offset, box.y_offset)). Every mask, and the result, carries the source image's header.
"""

from __future__ import annotations

import array
import io
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from pixellm_ros.msg import SegmentationResult as SegmentationResultMsg
from pixellm_ros.msg import SegmentedTarget

if TYPE_CHECKING:  # the engine imports torch; conversions stay importable without it
    from pixellm_ros.engine.result import SegmentationResult, Target

# encoding -> (bytes per pixel, channels of the raw array)
_RAW_LAYOUTS: dict[str, tuple[int, int]] = {
    "rgb8": (3, 3),
    "bgr8": (3, 3),
    "rgba8": (4, 4),
    "bgra8": (4, 4),
    "mono8": (1, 1),
    "mono16": (2, 1),
    "yuv422": (2, 2),
    "uyvy": (2, 2),
    "yuv422_yuy2": (2, 2),
    "yuyv": (2, 2),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_RAW_LAYOUTS)

_YUV_CODES: dict[str, int] = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}


class ImageConversionError(ValueError):
    """The image message cannot be turned into an RGB array; the text says why (for the result's error)."""


def bytes_view(data: object) -> np.ndarray:
    """A flat uint8 view of a message's ``uint8[]`` field (array.array on current ROS, zero copy)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]
    except TypeError:  # a plain sequence of ints (hand-built message)
        return np.asarray(data, dtype=np.uint8).ravel()


def packed_bytes(buffer: np.ndarray) -> array.array:
    """The bytes of an array (any dtype, e.g. float32 points) for a message's ``uint8[]`` field, in one copy.

    Assigning bytes or lists instead makes the generated setter check every element in Python
    (seconds for a full-HD mask on Humble), an array.array('B') is taken as it is.
    """
    packed = array.array("B")
    packed.frombytes(np.ascontiguousarray(buffer).view(np.uint8).reshape(-1))
    return packed


def is_empty_image(msg: Image) -> bool:
    """True for an image with no pixels at all (width 0, height 0, no data): "use the camera frame"."""
    return int(msg.width) == 0 and int(msg.height) == 0 and len(msg.data) == 0


def _check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(f"image of {width}x{height} = {width * height} pixels is larger than the limit of "
                                   f"{max_pixels} pixels (parameter limits.max_image_pixels)")


def image_msg_to_rgb(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to an (H, W, 3) uint8 RGB array (a copy, C-contiguous).

    Raises ImageConversionError for zero size (one side or both), more than ``max_pixels`` pixels,
    an unsupported encoding, or a step/size mismatch.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = msg.encoding.strip().lower()
    if width == 0 or height == 0:
        raise ImageConversionError(f"zero-size image ({width}x{height}); only an image with no pixels and no data "
                                   "at all means 'use the camera frame'")
    _check_pixels(width, height, max_pixels)
    if encoding not in _RAW_LAYOUTS:
        raise ImageConversionError(
            f"unsupported image encoding '{msg.encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    bytes_per_pixel, channels = _RAW_LAYOUTS[encoding]
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width * bytes per pixel = {width} * {bytes_per_pixel} = {row_bytes}"
            f" for encoding '{encoding}'"
        )
    raw = bytes_view(msg.data)
    if raw.size != step * height:
        raise ImageConversionError(
            f"image data has {raw.size} bytes but step * height = {step} * {height} = {step * height}"
        )
    rows = raw.reshape(height, step)[:, :row_bytes]

    if encoding == "mono16":
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        grey16 = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        grey = (grey16 >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if encoding in _YUV_CODES:
        if width % 2:
            raise ImageConversionError(f"{encoding} needs an even width, got {width}")
        packed = np.ascontiguousarray(rows).reshape(height, width, 2)
        return cv2.cvtColor(packed, _YUV_CODES[encoding])

    pixels = rows.reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def compressed_image_size(raw: np.ndarray, image_format: str) -> tuple[int, int]:
    """(width, height) from a compressed image's header, without decoding its pixels."""
    try:
        with PILImage.open(io.BytesIO(raw.tobytes())) as header:
            return int(header.width), int(header.height)
    except PILImage.DecompressionBombError:
        raise ImageConversionError(f"compressed image header claims more than {2 * PILImage.MAX_IMAGE_PIXELS} "
                                   "pixels (a decompression bomb); refused before decoding") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageConversionError(f"compressed image (format '{image_format}', {raw.size} bytes) is not an image "
                                   f"file this node can read: {error}") from None


def compressed_msg_to_rgb(msg: CompressedImage, max_pixels: int | None = None,
                          max_bytes: int | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to (H, W, 3) uint8 RGB.

    The payload size and the pixel count in the header are checked against ``max_bytes`` and
    ``max_pixels`` BEFORE decoding (ImageConversionError when over).
    """
    raw = bytes_view(msg.data)
    if raw.size == 0:
        raise ImageConversionError("compressed image has no data")
    if max_bytes is not None and raw.size > max_bytes:
        raise ImageConversionError(f"compressed image of {raw.size} bytes is larger than the limit of {max_bytes} bytes "
                                   "(parameter limits.max_compressed_bytes)")
    width, height = compressed_image_size(raw, msg.format)
    if width == 0 or height == 0:
        raise ImageConversionError(f"compressed image header says {width}x{height} pixels")
    _check_pixels(width, height, max_pixels)
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageConversionError(f"could not decode compressed image (format '{msg.format}', {raw.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image_msg(rgb: np.ndarray, header: Header) -> Image:
    """Wrap an (H, W, 3) uint8 RGB array as an ``rgb8`` ``sensor_msgs/Image`` with ``header``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    return Image(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0,
                 step=width * 3, data=packed_bytes(rgb))


def mono8_image_msg(pixels: np.ndarray, header: Header) -> Image:
    """Wrap an (H, W) uint8 array as a ``mono8`` ``sensor_msgs/Image``."""
    height, width = pixels.shape
    return Image(header=header, height=height, width=width, encoding="mono8", is_bigendian=0,
                 step=width, data=packed_bytes(pixels))


def mask_to_image_msg(mask: np.ndarray, header: Header) -> Image:
    """(H, W) bool -> mono8 image, 0 = background, 255 = target."""
    # bool and uint8 share the item size, so the view costs nothing; 1 * 255 fits in uint8.
    binary = mask if mask.dtype == np.bool_ else mask > 0
    return mono8_image_msg(binary.view(np.uint8) * np.uint8(255), header)


def mask_fields(mask: np.ndarray, box: Sequence[int], header: Header, mask_format: int,
                frame_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The mask fields every target message shares (SegmentedTarget, TrackedTarget): ``box``,
    ``area``, ``mask_format`` and ``mask``, full-frame or cropped to the box.

    mask: the full-frame (H, W) bool mask; or, with ``frame_size`` (W, H) of the frame, the crop of
    exactly ``box`` (x0, y0, x1, y1) (an empty box, all zero: no mask).
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = np.asarray(mask, dtype=bool)
    if mask_format == SegmentedTarget.MASK_CROPPED:
        if frame_size is None:
            mask = mask[y0:y1, x0:x1]
    elif mask_format == SegmentedTarget.MASK_FULL:
        if frame_size is not None:
            full = np.zeros((frame_size[1], frame_size[0]), dtype=bool)
            full[y0:y1, x0:x1] = mask
            mask = full
    else:
        raise ValueError(f"unknown mask format {mask_format}")
    return {"box": RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0, height=y1 - y0, do_rectify=False),
            "area": int(np.count_nonzero(mask)), "mask_format": mask_format, "mask": mask_to_image_msg(mask, header)}


def target_to_msg(target: Target, index: int, header: Header, mask_format: int) -> SegmentedTarget:
    """One engine Target -> SegmentedTarget; the mask full-frame or cropped to the box."""
    return SegmentedTarget(name=target.name, index=index, score=float(target.score),
                           **mask_fields(target.mask, target.box, header, mask_format))


def timings_to_fields(timings: Mapping[str, float]) -> tuple[float, float, float]:
    """The engine's stage timings folded into the message's three: (vision, generation, decoding) ms.

    The engine's generation_ms already includes the prompt prefill (its prefill_ms is a part of
    it); its mask postprocessing (postprocess_ms) is counted as decoding here.
    """
    vision = float(timings.get("vision_ms", 0.0))
    generation = float(timings.get("generation_ms", 0.0))
    decoding = float(timings.get("decoding_ms", 0.0)) + float(timings.get("postprocess_ms", 0.0))
    return vision, generation, decoding


def result_to_msg(
    result: SegmentationResult,
    header: Header,
    request_id: str,
    instruction: str,
    image_size: tuple[int, int],
    mask_format: int,
    status: int = SegmentationResultMsg.STATUS_OK,
    error: str = "",
    camera: str = "",
) -> SegmentationResultMsg:
    """An engine result -> the result message. image_size is (width, height) of the source image.

    Targets are dropped unless the status is OK (the message's rule: errors carry no targets),
    but the text generated so far is kept in ``answer`` (useful after a cancel).
    """
    vision_ms, generation_ms, decoding_ms = timings_to_fields(result.timings)
    targets: Sequence[SegmentedTarget] = []
    if status == SegmentationResultMsg.STATUS_OK:
        targets = [target_to_msg(t, i, header, mask_format) for i, t in enumerate(result.targets)]
    return SegmentationResultMsg(
        header=header,
        camera=camera,
        request_id=request_id,
        instruction=instruction,
        answer=result.text,
        targets=list(targets),
        image_width=image_size[0],
        image_height=image_size[1],
        status=status,
        error=error,
        warnings=list(result.warnings),
        vision_ms=vision_ms,
        generation_ms=generation_ms,
        decoding_ms=decoding_ms,
        generated_tokens=int(result.generated_tokens),
    )


def error_result_msg(
    status: int,
    error: str,
    request_id: str,
    instruction: str,
    header: Header | None = None,
    image_size: tuple[int, int] = (0, 0),
    camera: str = "",
) -> SegmentationResultMsg:
    """A result that carries only an error: no answer, no targets. header: the source image's, if any."""
    if status in (SegmentationResultMsg.STATUS_OK, SegmentationResultMsg.STATUS_UNKNOWN):
        raise ValueError("an error result needs an error status (not STATUS_OK or STATUS_UNKNOWN)")
    return SegmentationResultMsg(
        header=header if header is not None else Header(),
        camera=camera,
        request_id=request_id,
        instruction=instruction,
        image_width=image_size[0],
        image_height=image_size[1],
        status=status,
        error=error,
    )


def mask_from_msg(target: SegmentedTarget, image_size: tuple[int, int]) -> np.ndarray:
    """Inverse of target_to_msg's mask: the (H, W) bool full-frame mask, whatever the format.

    image_size: (width, height) of the source image (the result's image_width/height).
    """
    mask_img = target.mask
    pixels = bytes_view(mask_img.data).reshape(mask_img.height, mask_img.step)[:, : mask_img.width] > 0
    if target.mask_format == SegmentedTarget.MASK_FULL:
        return pixels.copy()
    full = np.zeros((image_size[1], image_size[0]), dtype=bool)
    x0, y0 = target.box.x_offset, target.box.y_offset
    full[y0 : y0 + mask_img.height, x0 : x0 + mask_img.width] = pixels
    return full
