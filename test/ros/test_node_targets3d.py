"""Targets in 3D through the node over real DDS: a world scene's colour, aligned depth and camera_info
published with one header; the result's 3D fields are the spatial core's for the node's own masks
on that depth, the cloud and markers carry the source header; every bad depth input still gives the
2D result, with has_3d false and a warning that says why."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from pixellm_ros.msg import SegmentationResult
from pixellm_ros.ros.conversions import mask_from_msg, rgb_to_image_msg
from pixellm_ros.ros.spatial_conversions import camera_info_msg, cloud_points, depth_to_msg
from pixellm_ros.spatial import AlignedDepth, DepthImage, PinholeIntrinsics
from pixellm_ros.world.scene import sample_scene
from support.dds import NodeProcess, RosClient, active_node, ask_on_frame, wait_until

NODE = "pixellm_3d"
WIDTH, HEIGHT = 640, 480


def start(client: RosClient, domain_id: int, model: Path, log: Path, name: str = NODE) -> NodeProcess:
    return NodeProcess(domain_id, name, {
        "model.path": str(model), "model.device": "cpu", "max_image_age_s": 0.0, "depth.enabled": True,
        "output.point_cloud": True, "qos.image_reliability": "reliable",
    }, log, remappings={"image_raw": f"/{name}/image_raw", "depth/image_raw": f"/{name}/depth",
                        "camera_info": f"/{name}/camera_info"})


@pytest.fixture(scope="module")
def node(client: RosClient, domain_id: int, chain_model_dir: Path, tmp_path_factory) -> Iterator[NodeProcess]:
    with active_node(start(client, domain_id, chain_model_dir, tmp_path_factory.mktemp("3d") / "n.log"), client) as n:
        yield n


@pytest.fixture(scope="module")
def scene() -> Any:
    return sample_scene(np.random.default_rng(11), (HEIGHT, WIDTH))


class Camera:
    """The test's camera: colour, depth and camera_info publishers, each frame with one header."""

    def __init__(self, client: RosClient, name: str = NODE) -> None:
        self.client = client
        self.colour = client.publisher(Image, f"/{name}/image_raw", depth=1)
        self.depth = client.publisher(Image, f"/{name}/depth", depth=5)
        self.info = client.publisher(CameraInfo, f"/{name}/camera_info", depth=5)
        assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in (self.colour, self.depth, self.info)), 20)
        self._last: tuple[Image | None, CameraInfo | None, Image] | None = None  # what again() re-sends

    def publish(self, rgb: np.ndarray, depth: Image | None, info: CameraInfo | None, frame_id: str) -> Header:
        header = Header(stamp=self.client.now(), frame_id=frame_id)
        if depth is not None:
            depth.header = header
        if info is not None:
            info.header = header
        self._last = (depth, info, rgb_to_image_msg(rgb, header))
        self.again()
        return header

    def again(self) -> None:
        """(Re)send the last frame set, the colour image last: the node's image subscriptions are
        best effort, so one copy may be dropped while discovery settles; same stamps, same match."""
        assert self._last is not None, "publish first"
        depth, info, colour = self._last
        if depth is not None:
            self.depth.publish(depth)
        if info is not None:
            self.info.publish(info)
        time.sleep(0.2)
        self.colour.publish(colour)
        time.sleep(0.3)


def ask(client: RosClient, header: Header, camera: Camera, text: str = "segment the red cup",
        name: str = NODE) -> SegmentationResult:
    """The answer about the frame set ``camera`` last published (``header``), re-sent between attempts."""
    def send(attempt: int) -> Header:
        if attempt:
            camera.again()
        return header

    return ask_on_frame(send, lambda: client.segment_service(name, None, text), attempts=10, settle_s=0.0)


def intrinsics(scene: Any) -> PinholeIntrinsics:
    return PinholeIntrinsics.from_matrix(scene.geometry.camera.K, WIDTH, HEIGHT, "plumb_bob", [0.0] * 5)


def test_targets_get_the_spatial_cores_3d_on_the_aligned_depth(client: RosClient, node: NodeProcess, scene) -> None:
    camera = Camera(client)
    clouds = client.collect(PointCloud2, f"/{NODE}/targets_cloud")
    markers = client.collect(MarkerArray, f"/{NODE}/markers")
    rgb, _ = scene.render()
    raw = scene.geometry.depth_image("16UC1")
    header = camera.publish(rgb, depth_to_msg(raw, Header()), camera_info_msg(intrinsics(scene), Header()), "cam_optical")
    result = ask(client, header, camera)
    assert result.status == SegmentationResult.STATUS_OK and result.targets
    assert result.depth_header == header
    frame = AlignedDepth(DepthImage(raw), intrinsics(scene), (WIDTH, HEIGHT))
    cloud_size = 0
    for target in result.targets:
        expected = frame.target(mask_from_msg(target, (WIDTH, HEIGHT)))
        assert target.has_3d == expected.ok and target.no_3d_reason == ("" if expected.ok else expected.reason)
        if expected.ok:
            cloud_size += len(expected.points)  # every valid point of the mask (the box's)
            centroid = np.array([target.centroid.x, target.centroid.y, target.centroid.z])
            np.testing.assert_allclose(centroid, expected.centroid, atol=1e-5)
            assert target.num_3d_points == expected.num_points
            size = np.array([target.box_size.x, target.box_size.y, target.box_size.z])
            np.testing.assert_allclose(size, expected.box.size, atol=1e-5)
    if any(t.has_3d for t in result.targets):
        assert wait_until(lambda: bool(clouds) and bool(markers), 10)
        assert clouds[-1].header == header and markers[-1].markers and markers[-1].markers[-1].header == header
        assert len(cloud_points(clouds[-1])) == cloud_size


def test_no_depth_yet_and_no_camera_info_still_give_the_2d_result(
        client: RosClient, domain_id: int, chain_model_dir: Path, tmp_path: Path, scene) -> None:
    fresh = "pixellm_3d_fresh"
    with active_node(start(client, domain_id, chain_model_dir, tmp_path / "fresh.log", fresh), client):
        camera = Camera(client, fresh)
        rgb, _ = scene.render()
        for depth, expected in ((None, "no depth image received yet"), (scene.geometry.depth_image("16UC1"), "camera_info")):
            header = camera.publish(rgb, None if depth is None else depth_to_msg(depth, Header()), None, "cam_fresh")
            result = ask(client, header, camera, name=fresh)
            assert result.status == SegmentationResult.STATUS_OK and result.targets
            assert all(not t.has_3d for t in result.targets)
            assert any(w.startswith("no 3D") and expected in w for w in result.warnings), result.warnings


@pytest.mark.parametrize(("case", "reason"), [
    ("wrong_encoding", "encoding"),
    ("other_aspect", "aspect"),
    ("all_invalid", "no valid"),
    ("stale_depth", "depth"),
])
def test_every_bad_depth_input_still_gives_the_2d_result_and_says_why(
        client: RosClient, node: NodeProcess, scene, case: str, reason: str) -> None:
    camera = Camera(client)
    rgb, _ = scene.render()
    raw = scene.geometry.depth_image("16UC1")
    info = camera_info_msg(intrinsics(scene), Header())
    depth = depth_to_msg(raw, Header())
    if case == "wrong_encoding":
        depth = rgb_to_image_msg(rgb, Header())
    elif case == "other_aspect":
        depth = depth_to_msg(np.ascontiguousarray(raw[:, :480]), Header())
    elif case == "all_invalid":
        depth = depth_to_msg(np.zeros_like(raw), Header())
    if case == "stale_depth":
        camera.publish(rgb, depth, info, "old_frame")  # depth and info of an older stamp only
        time.sleep(0.5)
        header = camera.publish(rgb, None, None, f"cam_{case}")
    else:
        header = camera.publish(rgb, depth, info, f"cam_{case}")
    result = ask(client, header, camera)
    assert result.status == SegmentationResult.STATUS_OK and result.targets  # the 2D answer is intact
    assert all(not t.has_3d and t.no_3d_reason for t in result.targets)
    assert any(w.startswith("no 3D") and reason in w for w in result.warnings), result.warnings
