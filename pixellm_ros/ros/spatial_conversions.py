"""ROS messages of the 3D side: depth images and camera_info in, targets' 3D fields, point clouds
and RViz markers out.

Depth images (``sensor_msgs/Image``) accepted by ``depth_from_msg``:

========  ===========================================  ================================
encoding  meaning                                       invalid readings
========  ===========================================  ================================
16UC1     uint16 millimetres (RealSense, Kinect, OAK)   0
32FC1     float32 metres (ZED, simulators)              0, NaN, +-inf, negative
========  ===========================================  ================================

Anything else is refused with a ``DepthConversionError`` naming the two; so are a zero size, a
step smaller than a row, and data whose length is not ``step * height``. Byte order follows
``is_bigendian``; rows may be padded.

camera_info (``intrinsics_from_camera_info``): K, width/height, the distortion model and D.
Zero distortion of any model is a plain pinhole; non-zero ``plumb_bob``, ``rational_polynomial``
and ``equidistant`` are undistorted per pixel, other models refused (``spatial.intrinsics``). A
region of interest that is not the whole image is refused. Binning needs nothing: a binned
stream has the same aspect ratio and the intrinsics are scaled to the colour image.

Everything published (point clouds, markers) carries the SOURCE colour image's header, like the
result. The targets' 3D fields are in the depth image's optical frame, named by the result's
``depth_header``; for a depth image aligned to the colour image that is the colour frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from pixellm_ros.msg import SegmentationResult as SegmentationResultMsg
from pixellm_ros.msg import SegmentedTarget
from pixellm_ros.spatial import (
    AlignedDepth,
    DepthError,
    DepthImage,
    IntrinsicsError,
    PinholeIntrinsics,
    Target3D,
    Targets3DOptions,
)

from .conversions import bytes_view, packed_bytes
from .depth_cache import DepthLookup

DEPTH_ENCODINGS: dict[str, np.dtype] = {"16UC1": np.dtype(np.uint16), "32FC1": np.dtype(np.float32)}
MARKER_NAMESPACE = "pixellm_targets"
# Box colours by target index (RGBA 0-1), the text above each box is white.
_PALETTE = ((0.90, 0.30, 0.25), (0.25, 0.60, 0.95), (0.35, 0.80, 0.35), (0.95, 0.75, 0.20),
            (0.70, 0.40, 0.90), (0.20, 0.80, 0.80), (0.95, 0.50, 0.70), (0.60, 0.60, 0.60))


class DepthConversionError(ValueError):
    """The depth message cannot be used; the text says why (it goes into the result's warnings)."""


def stamp_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time as integer nanoseconds (the depth cache's key)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def depth_from_msg(msg: Image) -> DepthImage:
    """A depth ``sensor_msgs/Image`` (16UC1 mm or 32FC1 m) as a ``DepthImage`` (a copy).

    Raises DepthConversionError for another encoding, a zero size, or a step/size mismatch.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = msg.encoding.strip()
    if encoding.upper() not in DEPTH_ENCODINGS:
        raise DepthConversionError(
            f"unsupported depth encoding '{msg.encoding}'; supported: 16UC1 (uint16 millimetres), 32FC1 (float32"
            " metres)")
    dtype = DEPTH_ENCODINGS[encoding.upper()].newbyteorder(">" if msg.is_bigendian else "<")
    if width == 0 or height == 0:
        raise DepthConversionError(f"zero-size depth image ({width}x{height})")
    row_bytes = width * dtype.itemsize
    if step < row_bytes:
        raise DepthConversionError(
            f"depth step {step} is smaller than width * {dtype.itemsize} = {row_bytes} for encoding '{encoding}'")
    raw = bytes_view(msg.data)
    if raw.size != step * height:
        raise DepthConversionError(
            f"depth data has {raw.size} bytes but step * height = {step} * {height} = {step * height}")
    rows = np.ascontiguousarray(raw.reshape(height, step)[:, :row_bytes])
    values = rows.view(dtype).reshape(height, width).astype(dtype.newbyteorder("="))
    return DepthImage(values)


def depth_to_msg(depth: np.ndarray, header: Header) -> Image:
    """(H, W) uint16 millimetres -> 16UC1, float32 metres -> 32FC1 ``sensor_msgs/Image``, little-endian."""
    if depth.ndim != 2 or depth.dtype not in (np.uint16, np.float32):
        raise ValueError(f"expected (H, W) uint16 millimetres or float32 metres, got {depth.shape} {depth.dtype}")
    encoding = "16UC1" if depth.dtype == np.uint16 else "32FC1"
    little = depth.astype(depth.dtype.newbyteorder("<"), copy=False)
    height, width = depth.shape
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=width * depth.dtype.itemsize, data=packed_bytes(little))


def intrinsics_from_camera_info(msg: CameraInfo) -> PinholeIntrinsics:
    """K, size and distortion of a ``sensor_msgs/CameraInfo``. Raises IntrinsicsError (what to fix)."""
    roi = msg.roi
    width, height = int(msg.width), int(msg.height)
    if (roi.width or roi.height) and (roi.x_offset, roi.y_offset, roi.width, roi.height) != (0, 0, width, height):
        raise IntrinsicsError(
            f"camera_info has a region of interest ({roi.x_offset}, {roi.y_offset}, {roi.width}x{roi.height}) of its"
            f" {width}x{height} image: cropped streams are not supported, publish the full image")
    return PinholeIntrinsics.from_matrix(np.asarray(msg.k, dtype=np.float64), width, height,
                                         msg.distortion_model, np.asarray(msg.d, dtype=np.float64))


def camera_info_msg(intrinsics: PinholeIntrinsics, header: Header, distortion_model: str = "plumb_bob") -> CameraInfo:
    """A ``sensor_msgs/CameraInfo`` of the intrinsics (R identity, P = [K | 0]); zero D unless the
    intrinsics carry coefficients."""
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    coefficients = list(intrinsics.coefficients) or [0.0] * 5
    return CameraInfo(header=header, width=intrinsics.width, height=intrinsics.height,
                      distortion_model=intrinsics.distortion_model or distortion_model, d=coefficients,
                      k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


DEPTH_ERRORS = (DepthConversionError, DepthError, IntrinsicsError)


def aligned_depth(lookup: DepthLookup, image_size: tuple[int, int]) -> AlignedDepth:
    """The matched depth frame and camera_info of a ``DepthCache`` lookup (``lookup.ok``) as an
    ``AlignedDepth`` for a colour image of ``image_size`` (W, H). Raises one of DEPTH_ERRORS (why)."""
    return AlignedDepth(depth_from_msg(lookup.depth), intrinsics_from_camera_info(lookup.camera_info), image_size)


@dataclass
class Result3D:
    """The 3D side of one result: one ``Target3D`` per target (in target order), the depth
    frame's header (None when no depth was used) and the warnings for the result."""

    targets: list[Target3D]
    depth_header: Header | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def any_3d(self) -> bool:
        return any(t.ok for t in self.targets)


def compute_targets_3d(masks: Sequence[np.ndarray], boxes: Sequence[Sequence[int] | None] | None,
                       image_size: tuple[int, int], lookup: DepthLookup, header: Header | None = None,
                       names: Sequence[str] | None = None,
                       options: Targets3DOptions = Targets3DOptions()) -> Result3D:
    """Every target's 3D from the cache's lookup; never raises for bad depth input.

    Args:
        masks: full-frame (H, W) bool masks (the engine's ``target.mask``), in target order.
        boxes: their (x0, y0, x1, y1) boxes (``target.box``), or None.
        image_size: (width, height) of the source colour image.
        lookup: ``DepthCache.match`` of the colour stamp (depth: a depth ``sensor_msgs/Image``,
            camera_info: a ``sensor_msgs/CameraInfo``).
        header: the source image's header (to warn when the depth has another frame_id).
        names: the targets' names, for the warnings.

    Returns:
        Result3D: a failed ``Target3D`` per target, with the reason, when anything about the depth
        input is wrong (no / stale depth, no camera_info, wrong encoding, size or aspect mismatch,
        unsupported distortion, all-invalid depth); one warning per problem.
    """
    count = len(masks)

    def failed_all(reason: str, depth_header: Header | None = None) -> Result3D:
        return Result3D([Target3D.failed(reason) for _ in range(count)], depth_header, [f"no 3D: {reason}"])

    if count == 0:
        return Result3D([], lookup.depth.header if lookup.ok else None)
    if not lookup.ok:
        return failed_all(lookup.reason)
    depth_header = lookup.depth.header
    try:
        frame = aligned_depth(lookup, image_size)
    except DEPTH_ERRORS as error:
        return failed_all(str(error), depth_header)
    depth = frame.depth
    warnings: list[str] = []
    if header is not None and depth_header.frame_id and depth_header.frame_id != header.frame_id:
        warnings.append(f"the depth image's frame '{depth_header.frame_id}' differs from the colour image's"
                        f" '{header.frame_id}': the 3D fields are in the depth frame (depth_header)")
    boxes = boxes if boxes is not None else [None] * count
    targets = [frame.target(mask, box=box, options=options) for mask, box in zip(masks, boxes)]
    if not any(t.ok for t in targets) and not np.any(_valid_readings(depth)):
        reason = "the depth image holds no valid reading (every pixel 0, NaN or inf)"
        return Result3D([Target3D.failed(reason, t.num_mask_pixels) for t in targets], depth_header,
                        warnings + [f"no 3D: {reason}"])
    for i, t in enumerate(targets):
        if not t.ok:
            name = f" ('{names[i]}')" if names is not None and i < len(names) else ""
            warnings.append(f"no 3D for target {i}{name}: {t.reason}")
    return Result3D(targets, depth_header, warnings)


def _valid_readings(depth: DepthImage) -> np.ndarray:
    if depth.in_millimetres:
        return depth.raw != 0
    return np.isfinite(depth.raw) & (depth.raw > 0)


def fill_target_3d(msg: SegmentedTarget, target: Target3D) -> SegmentedTarget:
    """Set a SegmentedTarget's 3D fields from a ``Target3D`` (in place; returned for chaining)."""
    msg.has_3d = bool(target.ok)
    msg.num_3d_points = int(target.num_points) if target.ok else 0
    msg.no_3d_reason = "" if target.ok else target.reason
    if not target.ok or target.centroid is None or target.box is None:
        msg.centroid, msg.box_center, msg.box_size = Point(), Pose(), Vector3()
        return msg
    c, b = target.centroid, target.box
    q = b.quaternion_xyzw
    msg.centroid = Point(x=float(c[0]), y=float(c[1]), z=float(c[2]))
    msg.box_center = Pose(position=Point(x=float(b.center[0]), y=float(b.center[1]), z=float(b.center[2])),
                          orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
    msg.box_size = Vector3(x=float(b.size[0]), y=float(b.size[1]), z=float(b.size[2]))
    return msg


def fill_result_3d(msg: SegmentationResultMsg, result: Result3D) -> SegmentationResultMsg:
    """Set every target's 3D fields, the result's ``depth_header`` and append the warnings (in place).

    ``msg.targets`` must be in the order ``result.targets`` was computed in (an error result has
    no targets: only the depth header is set then)."""
    if msg.targets and len(msg.targets) != len(result.targets):
        raise ValueError(f"the result has {len(msg.targets)} targets but {len(result.targets)} were placed in 3D")
    for target_msg, target in zip(msg.targets, result.targets):
        fill_target_3d(target_msg, target)
    msg.depth_header = result.depth_header if result.depth_header is not None else Header()
    msg.warnings = list(msg.warnings) + list(result.warnings)
    return msg


def _xyz_fields(with_index: bool) -> list[PointField]:
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    if with_index:
        fields.append(PointField(name="target", offset=12, datatype=PointField.UINT32, count=1))
    return fields


def target_cloud_msg(target: Target3D, header: Header) -> PointCloud2:
    """The target's points (x, y, z float32, optical frame, metres) as an unorganised PointCloud2;
    empty (width 0) when the target has no points."""
    points = target.points if target.ok and target.points is not None else np.zeros((0, 3), np.float32)
    points = np.ascontiguousarray(points, dtype="<f4")
    return PointCloud2(header=header, height=1, width=len(points), fields=_xyz_fields(False), is_bigendian=False,
                       point_step=12, row_step=12 * len(points), data=packed_bytes(points), is_dense=True)


def targets_cloud_msg(targets: Sequence[Target3D], header: Header) -> PointCloud2:
    """All targets' points in one PointCloud2: x, y, z float32 plus ``target`` uint32 (the target's
    index in the result), so RViz can colour by target and a consumer can split them."""
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("target", "<u4")])
    parts = []
    for i, t in enumerate(targets):
        if t.ok and t.points is not None and len(t.points):
            part = np.empty(len(t.points), dtype=dtype)
            part["x"], part["y"], part["z"] = t.points[:, 0], t.points[:, 1], t.points[:, 2]
            part["target"] = i
            parts.append(part)
    cloud = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return PointCloud2(header=header, height=1, width=len(cloud), fields=_xyz_fields(True), is_bigendian=False,
                       point_step=16, row_step=16 * len(cloud), data=packed_bytes(cloud), is_dense=True)


def cloud_points(msg: PointCloud2) -> np.ndarray:
    """(N, 3) float32 x, y, z of a PointCloud2 whose x, y, z are float32 (any point_step)."""
    offsets = {f.name: f.offset for f in msg.fields if f.datatype == PointField.FLOAT32}
    missing = [n for n in "xyz" if n not in offsets]
    if missing:
        raise ValueError(f"point cloud has no float32 field(s) {missing}")
    raw = bytes_view(msg.data).reshape(msg.height * msg.width, msg.point_step)
    order = ">f4" if msg.is_bigendian else "<f4"
    return np.stack([np.ascontiguousarray(raw[:, offsets[n]:offsets[n] + 4]).view(order)[:, 0] for n in "xyz"],
                    axis=1).astype(np.float32)


def targets_marker_array(targets: Sequence[Target3D], header: Header, names: Sequence[str] | None = None,
                         namespace: str = MARKER_NAMESPACE, keys: Sequence[int] | None = None) -> MarkerArray:
    """RViz markers of a result: a DELETEALL (clears the previous result's), then per target with 3D
    a translucent CUBE (id 2i, its box) and a TEXT_VIEW_FACING label above it (id 2i + 1: the name
    and the distance of its centroid). ``keys`` (e.g. track ids) replace the targets' indices i:
    marker ids, colours and labels stay with the key from one message to the next."""
    markers = [Marker(header=header, ns=namespace, id=0, action=Marker.DELETEALL)]
    for index, t in enumerate(targets):
        if not t.ok or t.box is None or t.centroid is None:
            continue
        i = keys[index] if keys is not None else index
        r, g, b = _PALETTE[i % len(_PALETTE)]
        box, q = t.box, t.box.quaternion_xyzw
        pose = Pose(position=Point(x=float(box.center[0]), y=float(box.center[1]), z=float(box.center[2])),
                    orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
        size = np.maximum(box.size, 0.002)  # a flat box still shows
        markers.append(Marker(header=header, ns=namespace, id=2 * i, type=Marker.CUBE, action=Marker.ADD, pose=pose,
                              scale=Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2])),
                              color=ColorRGBA(r=r, g=g, b=b, a=0.45)))
        # Above the box: "up" in the optical frame is -y.
        top = box.center - np.array([0.0, 0.5 * float(np.abs(box.rotation[1]) @ box.size) + 0.02, 0.0])
        name = names[index] if names is not None and index < len(names) else f"target {i}"
        markers.append(Marker(header=header, ns=namespace, id=2 * i + 1, type=Marker.TEXT_VIEW_FACING,
                              action=Marker.ADD,
                              pose=Pose(position=Point(x=float(top[0]), y=float(top[1]), z=float(top[2])),
                                        orientation=Quaternion(w=1.0)),
                              scale=Vector3(z=0.03), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
                              text=f"{i}: {name} ({float(np.linalg.norm(t.centroid)):.2f} m)"))
    return MarkerArray(markers=markers)
