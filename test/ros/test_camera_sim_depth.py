"""camera_sim's depth over real DDS: depth/image_raw and camera_info arrive under the colour frame's
header, and hold the world's geometry exactly (16UC1 and 32FC1); off when disabled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from pixellm_ros.ros.camera_sim import CameraSimNode
from pixellm_ros.ros.conversions import image_msg_to_rgb
from pixellm_ros.ros.runner import camera_command
from pixellm_ros.ros.spatial_conversions import depth_from_msg, intrinsics_from_camera_info
from pixellm_ros.world import sample_scene
from support.dds import RosClient, wait_until

W, H, SEED = 320, 240, 11


@contextlib.contextmanager
def camera(domain_id: int, log_path: Path, prefix: str, **parameters: Any) -> Iterator[subprocess.Popen]:
    params = {"source": "world", "rate_hz": 10.0, "width": W, "height": H, "seed": SEED, "frame_id": "sim_optical",
              **parameters}
    remaps = {name: f"{prefix}/{name}" for name in ("image_raw", "depth/image_raw", "camera_info")}
    command = camera_command(params, remaps, f"{prefix}_camera")
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), OMP_NUM_THREADS="1")
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=15)


def _key(msg: Any) -> tuple[int, int, str]:
    return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_and_camera_info_come_with_every_colour_frame(client: RosClient, domain_id: int, tmp_path: Path,
                                                            encoding: str) -> None:
    prefix = f"depth_{encoding.lower()}"
    colour = client.collect(Image, f"{prefix}/image_raw")
    depth = client.collect(Image, f"{prefix}/depth/image_raw")
    info = client.collect(CameraInfo, f"{prefix}/camera_info")
    with camera(domain_id, tmp_path / "camera.log", prefix, depth_encoding=encoding):
        arrived = wait_until(lambda: len(depth) >= 5 and len(info) >= 5 and len(colour) >= 5, 60)
        time.sleep(0.3)  # the last frame's other two messages
    assert arrived, (tmp_path / "camera.log").read_text()
    colour_keys = {_key(m): m for m in list(colour)}
    info_keys = {_key(m): m for m in list(info)}
    scene = sample_scene(np.random.default_rng(SEED), (H, W))  # camera_sim's first scene of this seed
    rgb, _ = scene.render()
    expected = scene.geometry.depth_image(encoding)
    matched = 0
    for msg in list(depth)[:-1]:
        assert msg.header.frame_id == "sim_optical" and msg.encoding == encoding
        assert _key(msg) in colour_keys and _key(msg) in info_keys  # the SAME header as the colour frame
        np.testing.assert_array_equal(depth_from_msg(msg).raw, expected)
        np.testing.assert_array_equal(image_msg_to_rgb(colour_keys[_key(msg)]), rgb)
        intr = intrinsics_from_camera_info(info_keys[_key(msg)])
        np.testing.assert_allclose(intr.K, scene.geometry.camera.K)
        assert intr.size == (W, H) and info_keys[_key(msg)].distortion_model == "plumb_bob" and not intr.is_distorted
        matched += 1
    assert matched >= 4


@pytest.mark.timeout(120)
def test_no_depth_when_disabled(client: RosClient, domain_id: int, tmp_path: Path) -> None:
    prefix = "depth_off"
    colour = client.collect(Image, f"{prefix}/image_raw")
    depth = client.collect(Image, f"{prefix}/depth/image_raw")
    info = client.collect(CameraInfo, f"{prefix}/camera_info")
    with camera(domain_id, tmp_path / "camera.log", prefix, publish_depth=False):
        assert wait_until(lambda: len(colour) >= 5, 60), (tmp_path / "camera.log").read_text()
    assert not depth and not info


def test_an_unknown_depth_encoding_is_refused(lone_domain_id: int) -> None:
    context = Context()
    rclpy.init(context=context, domain_id=lone_domain_id)
    try:
        with pytest.raises(ValueError, match="parameter 'depth_encoding' is 'mono16'"):
            CameraSimNode(context=context, parameter_overrides=[Parameter("depth_encoding", value="mono16")])
        node = CameraSimNode(context=context, parameter_overrides=[Parameter("publish_depth", value="false"),
                                                                  Parameter("width", value=96),
                                                                  Parameter("height", value=64)])
        assert not any("depth" in p.topic_name or "camera_info" in p.topic_name for p in node.publishers)
        node.destroy_node()  # a launch argument "false" turned it off; on by default:
        node = CameraSimNode(context=context, parameter_overrides=[Parameter("width", value=96),
                                                                  Parameter("height", value=64)])
        assert {"/depth/image_raw", "/camera_info"} <= {p.topic_name for p in node.publishers}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


@pytest.mark.timeout(120)
def test_a_moving_world_plays_frame_after_frame_with_its_exact_depth(client: RosClient, domain_id: int,
                                                                      tmp_path: Path) -> None:
    from pixellm_ros.world.motion import MovingWorld

    prefix = "moving"
    colour = client.collect(Image, f"{prefix}/image_raw")
    depth = client.collect(Image, f"{prefix}/depth/image_raw")
    with camera(domain_id, tmp_path / "camera.log", prefix, moving=True, scene_period_s=20.0):
        arrived = wait_until(lambda: len(depth) >= 5 and len(colour) >= 5, 60)
        time.sleep(0.3)
    assert arrived, (tmp_path / "camera.log").read_text()
    world = MovingWorld.sample(np.random.default_rng(SEED), (H, W), duration_s=20.0)  # camera_sim's first world
    truth = [world.frame(i, 10.0) for i in range(len(colour) + 20)]
    depth_by_key = {_key(m): m for m in list(depth)}
    indices = []
    for msg in list(colour)[:-1]:
        rgb = image_msg_to_rgb(msg)
        index = next(i for i, f in enumerate(truth) if np.array_equal(f.rgb, rgb))
        indices.append(index)
        if _key(msg) in depth_by_key:
            np.testing.assert_array_equal(depth_from_msg(depth_by_key[_key(msg)]).raw, truth[index].depth_image())
    assert indices == list(range(indices[0], indices[0] + len(indices)))  # one world frame after the other
    assert not np.array_equal(truth[indices[0]].rgb, truth[indices[-1]].rgb)
