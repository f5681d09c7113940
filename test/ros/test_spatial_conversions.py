"""Depth images and camera_info in, 3D fields / point clouds / markers out: real generated messages
(serialised through rclpy's typesupport where it matters), every bad depth input with its reason."""

from __future__ import annotations

import re

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, RegionOfInterest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from pixellm_ros.msg import SegmentationResult, SegmentedTarget
from pixellm_ros.ros.depth_cache import DepthCache
from pixellm_ros.ros.spatial_conversions import (
    DepthConversionError,
    camera_info_msg,
    cloud_points,
    compute_targets_3d,
    depth_from_msg,
    depth_to_msg,
    fill_result_3d,
    intrinsics_from_camera_info,
    stamp_ns,
    target_cloud_msg,
    targets_cloud_msg,
    targets_marker_array,
)
from pixellm_ros.spatial import IntrinsicsError, PinholeIntrinsics, Target3D
from pixellm_ros.world import sample_scene

W, H = 640, 480
HEADER = Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id="camera_color_optical_frame")


def _scene():
    return sample_scene(np.random.default_rng(3), (H, W))


def _world_inputs(encoding: str = "16UC1", header: Header = HEADER):
    scene = _scene()
    geo = scene.geometry
    intr = PinholeIntrinsics.from_matrix(geo.camera.K, W, H)
    return scene, depth_to_msg(geo.depth_image(encoding), header), camera_info_msg(intr, header)


def _lookup(depth: Image | None, info: CameraInfo | None, stamp: Time = HEADER.stamp):
    cache = DepthCache()
    if depth is not None:
        cache.add_depth(stamp_ns(depth.header.stamp), depth)
    if info is not None:
        cache.set_camera_info(info)
    return cache.match(stamp_ns(stamp))


def _result_msg(count: int) -> SegmentationResult:
    return SegmentationResult(header=HEADER, targets=[SegmentedTarget(name=f"t{i}", index=i) for i in range(count)],
                              image_width=W, image_height=H, warnings=["earlier note"])


def test_depth_images_round_trip_in_both_encodings_and_byte_orders() -> None:
    mm = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 250)
    msg = depth_to_msg(mm, HEADER)
    assert (msg.encoding, msg.step, msg.is_bigendian, msg.header) == ("16UC1", 8, 0, HEADER)
    np.testing.assert_array_equal(depth_from_msg(deserialize_message(serialize_message(msg), Image)).raw, mm)
    metres = np.linspace(0.3, 2.0, 12, dtype=np.float32).reshape(3, 4)
    msg = depth_to_msg(metres, HEADER)
    assert msg.encoding == "32FC1" and msg.step == 16
    np.testing.assert_array_equal(depth_from_msg(msg).raw, metres)
    big = Image(height=3, width=4, encoding="16UC1", is_bigendian=1, step=8, data=mm.astype(">u2").tobytes())
    np.testing.assert_array_equal(depth_from_msg(big).raw, mm)
    padded_rows = np.zeros((3, 12), np.uint8)
    padded_rows[:, :8] = mm.view(np.uint8).reshape(3, 8)
    padded = Image(height=3, width=4, encoding="16UC1", step=12, data=padded_rows.tobytes())
    np.testing.assert_array_equal(depth_from_msg(padded).raw, mm)


@pytest.mark.parametrize("msg, message", [
    (Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12)),
     "unsupported depth encoding 'rgb8'.*16UC1.*32FC1"),
    (Image(height=2, width=2, encoding="mono16", step=4, data=bytes(8)), "unsupported depth encoding 'mono16'"),
    (Image(height=0, width=2, encoding="16UC1", step=4, data=b""), "zero-size"),
    (Image(height=2, width=2, encoding="16UC1", step=2, data=bytes(4)), "step 2 is smaller than width"),
    (Image(height=2, width=2, encoding="32FC1", step=8, data=bytes(10)), "10 bytes but step \\* height = 8 \\* 2 = 16"),
])
def test_bad_depth_messages_are_refused_with_the_reason(msg: Image, message: str) -> None:
    with pytest.raises(DepthConversionError, match=message):
        depth_from_msg(msg)


def test_camera_info_round_trip_and_refusals() -> None:
    intr = PinholeIntrinsics.from_matrix([[525.0, 0, 320.2], [0, 524.0, 241.7], [0, 0, 1]], W, H)
    info = camera_info_msg(intr, HEADER)
    assert info.distortion_model == "plumb_bob" and list(info.d) == [0.0] * 5 and info.header == HEADER
    assert list(info.p) == [525.0, 0.0, 320.2, 0.0, 0.0, 524.0, 241.7, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert intrinsics_from_camera_info(deserialize_message(serialize_message(info), CameraInfo)) == \
        PinholeIntrinsics(525.0, 524.0, 320.2, 241.7, W, H, "plumb_bob", (0.0,) * 5)
    uncalibrated = CameraInfo(width=W, height=H)
    with pytest.raises(IntrinsicsError, match="all zero"):
        intrinsics_from_camera_info(uncalibrated)
    exotic = camera_info_msg(intr, HEADER)
    exotic.distortion_model, exotic.d = "kannala_brandt_extra", [0.1, 0.0, 0.0, 0.0]
    with pytest.raises(IntrinsicsError, match="not supported"):
        intrinsics_from_camera_info(exotic)
    cropped = camera_info_msg(intr, HEADER)
    cropped.roi = RegionOfInterest(x_offset=10, y_offset=0, width=320, height=240)
    with pytest.raises(IntrinsicsError, match="region of interest"):
        intrinsics_from_camera_info(cropped)
    full_roi = camera_info_msg(intr, HEADER)
    full_roi.roi = RegionOfInterest(x_offset=0, y_offset=0, width=W, height=H)
    assert intrinsics_from_camera_info(full_roi).size == (W, H)
    assert stamp_ns(HEADER.stamp) == 1700000000123456789


def test_a_result_gets_its_targets_3d_fields_and_the_depth_header() -> None:
    scene, depth, info = _world_inputs()
    masks = [scene.visible_masks[i] for i in range(len(scene.objects))]
    result3d = compute_targets_3d(masks, None, (W, H), _lookup(depth, info), HEADER,
                                  names=[o.name for o in scene.objects])
    assert result3d.warnings == [] and all(t.ok for t in result3d.targets) and result3d.depth_header == HEADER
    msg = fill_result_3d(_result_msg(len(masks)), result3d)
    msg = deserialize_message(serialize_message(msg), SegmentationResult)  # the generated typesupport carries it
    assert msg.depth_header == HEADER and msg.warnings == ["earlier note"]
    for obj, target in zip(scene.objects, msg.targets):
        assert target.has_3d and target.no_3d_reason == ""
        truth = scene.geometry.object_centroid(obj.id)
        centroid = np.array([target.centroid.x, target.centroid.y, target.centroid.z])
        assert np.linalg.norm(centroid - truth) <= max(0.01, 0.015 * truth[2])
        q = target.box_center.orientation
        assert np.linalg.norm([q.x, q.y, q.z, q.w]) == pytest.approx(1.0)
        assert min(target.box_size.x, target.box_size.y, target.box_size.z) >= 0.0
        assert target.box_size.x >= target.box_size.y  # the long side first
        assert target.num_3d_points == result3d.targets[obj.id].num_points > 100


def _failed_result(masks, lookup, header=HEADER):
    result3d = compute_targets_3d(masks, None, (W, H), lookup, header, names=["the cup", "the ball"][: len(masks)])
    msg = fill_result_3d(_result_msg(len(masks)), result3d)
    return result3d, msg


def test_every_bad_depth_input_gives_targets_without_3d_and_a_warning_that_says_why() -> None:
    scene, depth, info = _world_inputs()
    masks = [scene.visible_masks[0], scene.visible_masks[1]]
    half_info = camera_info_msg(PinholeIntrinsics.from_matrix(scene.geometry.camera.K, W, H).scaled_to(320, 240),
                                HEADER)
    wrong_aspect = depth_to_msg(np.full((360, 640), 700, np.uint16), HEADER)
    all_invalid = depth_to_msg(np.zeros((H, W), np.uint16), HEADER)
    nan_depth = depth_to_msg(np.full((H, W), np.nan, np.float32), HEADER)
    rgb = Image(header=HEADER, height=H, width=W, encoding="rgb8", step=3 * W, data=bytes(3 * W * H))
    truncated = depth_to_msg(scene.geometry.depth_image("16UC1"), HEADER)
    truncated.data = truncated.data[:-2]
    distorted = camera_info_msg(PinholeIntrinsics.from_matrix(scene.geometry.camera.K, W, H), HEADER)
    distorted.distortion_model, distorted.d = "vendor_poly", [0.2, 0.0, 0.0, 0.0, 0.0]
    stale_stamp = Time(sec=HEADER.stamp.sec - 2, nanosec=0)
    stale = depth_to_msg(scene.geometry.depth_image("16UC1"), Header(stamp=stale_stamp, frame_id=HEADER.frame_id))
    cases = {
        "no depth yet": (_lookup(None, info), "no depth image received yet on 'depth/image_raw'"),
        "stale depth": (_lookup(stale, info), "stale depth: the newest depth image on 'depth/image_raw' is 2.123 s"),
        "no camera_info": (_lookup(depth, None), "no camera_info received yet on 'camera_info'"),
        "wrong encoding": (_lookup(rgb, info), "unsupported depth encoding 'rgb8'"),
        "size mismatch (bytes)": (_lookup(truncated, info), "bytes but step \\* height"),
        "size mismatch (aspect)": (_lookup(wrong_aspect, info),
                                   "depth image is 640x360 but the colour image is 640x480"),
        "unsupported distortion": (_lookup(depth, distorted), "distortion model 'vendor_poly'"),
        "all-invalid depth (0 mm)": (_lookup(all_invalid, info), "no valid reading \\(every pixel 0, NaN or inf\\)"),
        "all-invalid depth (NaN)": (_lookup(nan_depth, info), "no valid reading"),
    }
    for name, (lookup, reason) in cases.items():
        result3d, msg = _failed_result(masks, lookup)
        assert not result3d.any_3d, name
        assert len(msg.targets) == 2 and msg.warnings[0] == "earlier note", name
        assert any(w.startswith("no 3D: ") and re.search(reason, w) for w in msg.warnings[1:]), (name, msg.warnings)
        for target in msg.targets:
            assert not target.has_3d and re.search(reason, target.no_3d_reason), (name, target.no_3d_reason)
            assert (target.centroid.x, target.centroid.y, target.centroid.z, target.num_3d_points) == (0, 0, 0, 0)
    # camera_info of another size with the same aspect is no problem: it is scaled.
    ok, _ = _failed_result(masks, _lookup(depth, half_info))
    assert ok.any_3d and ok.warnings == []


def test_a_target_without_enough_depth_is_flagged_alone() -> None:
    scene, _, info = _world_inputs()
    depth = scene.geometry.depth_image("16UC1")
    depth[scene.visible_masks[1]] = 0  # no reading on the second object
    lookup = _lookup(depth_to_msg(depth, HEADER), info)
    result3d, msg = _failed_result([scene.visible_masks[0], scene.visible_masks[1]], lookup)
    assert msg.targets[0].has_3d and not msg.targets[1].has_3d
    assert "no valid depth" in msg.targets[1].no_3d_reason
    assert msg.warnings[1:] == [f"no 3D for target 1 ('the ball'): {msg.targets[1].no_3d_reason}"]


def test_a_depth_frame_id_other_than_the_colour_frame_is_warned_about() -> None:
    scene, depth, info = _world_inputs(header=Header(stamp=HEADER.stamp, frame_id="camera_depth_optical_frame"))
    result3d, msg = _failed_result([scene.visible_masks[0]], _lookup(depth, info))
    assert msg.targets[0].has_3d and msg.depth_header.frame_id == "camera_depth_optical_frame"
    assert ("'camera_depth_optical_frame' differs from the colour image's 'camera_color_optical_frame'"
            in msg.warnings[1])


def test_point_clouds_of_one_target_and_of_all() -> None:
    scene, depth, info = _world_inputs()
    masks = [scene.visible_masks[i] for i in range(3)]
    targets = compute_targets_3d(masks, None, (W, H), _lookup(depth, info), HEADER).targets
    cloud = deserialize_message(serialize_message(target_cloud_msg(targets[0], HEADER)), PointCloud2)
    assert cloud.header == HEADER and cloud.height == 1 and cloud.width == targets[0].num_box_points
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)]
    assert cloud.point_step == 12 and cloud.row_step == 12 * cloud.width and cloud.is_dense
    np.testing.assert_array_equal(cloud_points(cloud), targets[0].points)
    merged = targets_cloud_msg(targets, HEADER)
    assert merged.width == sum(t.num_box_points for t in targets) and merged.point_step == 16
    assert [f.name for f in merged.fields] == ["x", "y", "z", "target"]
    index = np.frombuffer(bytes(merged.data), dtype=np.uint32).reshape(-1, 4)[:, 3]
    np.testing.assert_array_equal(np.bincount(index), [t.num_box_points for t in targets])
    np.testing.assert_array_equal(cloud_points(merged)[index == 2], targets[2].points)
    empty = target_cloud_msg(Target3D.failed("no depth"), HEADER)
    assert empty.width == 0 and len(empty.data) == 0


def test_markers_draw_a_box_and_a_label_per_target_with_3d() -> None:
    scene, depth, info = _world_inputs()
    masks = [scene.visible_masks[0], np.zeros((H, W), bool), scene.visible_masks[2]]
    targets = compute_targets_3d(masks, None, (W, H), _lookup(depth, info), HEADER).targets
    markers = deserialize_message(serialize_message(targets_marker_array(targets, HEADER, ["cup", "none", "ball"])),
                                  MarkerArray).markers
    assert markers[0].action == Marker.DELETEALL
    assert [(m.id, m.type) for m in markers[1:]] == [(0, Marker.CUBE), (1, Marker.TEXT_VIEW_FACING),
                                                     (4, Marker.CUBE), (5, Marker.TEXT_VIEW_FACING)]
    assert all(m.header == HEADER and m.ns == "pixellm_targets" for m in markers)
    cube, label = markers[1], markers[2]
    box = targets[0].box
    position = cube.pose.position
    np.testing.assert_allclose([position.x, position.y, position.z], box.center, atol=1e-9)
    np.testing.assert_allclose([cube.scale.x, cube.scale.y, cube.scale.z], np.maximum(box.size, 0.002), atol=1e-9)
    assert label.text.startswith("0: cup (") and label.text.endswith(" m)")
    assert label.pose.position.y < cube.pose.position.y  # above the box: up is -y in the optical frame
