"""camera_sim's frame sources, and the node's parameter checks (its publishing runs in the demo test)."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter

from pixellm_ros.ros.camera_sim import CameraSimNode, folder_frames, moving_world_views, pattern_frames, world_frames


def test_pattern_frames_move_one_step_per_frame() -> None:
    frames = list(itertools.islice(pattern_frames(48, 64), 3))
    for frame in frames:
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])


def test_folder_frames_are_rgb_sorted_by_name_and_loop(tmp_path: Path) -> None:
    colours = {"b.png": (0, 255, 0), "a.png": (255, 0, 0), "c.jpg": (0, 0, 255)}
    for name, rgb in colours.items():
        image = np.zeros((10, 12, 3), np.uint8)
        image[:] = rgb
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(itertools.islice(folder_frames(tmp_path), 4))
    firsts = [tuple(int(v) for v in f[0, 0]) for f in frames]
    assert firsts[0] == (255, 0, 0) and firsts[1] == (0, 255, 0)  # a.png, b.png
    assert np.abs(np.array(firsts[2]) - (0, 0, 255)).max() <= 2  # c.jpg (lossy)
    assert firsts[3] == firsts[0]  # loops


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no images"):
        next(folder_frames(tmp_path))


def test_world_frames_repeat_each_scene_then_change() -> None:
    scenes: list[object] = []
    frames = list(itertools.islice(world_frames(64, 80, seed=3, frames_per_scene=2, on_new_scene=scenes.append), 3))
    assert all(f.shape == (64, 80, 3) and f.dtype == np.uint8 for f in frames)
    assert np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])
    assert len(scenes) == 2 and all(len(s.objects) >= 1 for s in scenes)


def test_camera_node_rejects_an_unknown_source(lone_domain_id: int) -> None:
    context = Context()
    rclpy.init(context=context, domain_id=lone_domain_id)
    try:
        with pytest.raises(ValueError, match="parameter 'source' is 'video'"):
            CameraSimNode(context=context, parameter_overrides=[Parameter("source", value="video")])
        node = CameraSimNode(context=context, parameter_overrides=[Parameter("source", value="pattern"),
                                                                  Parameter("rate_hz", value=20)])
        assert node.get_parameter("rate_hz").value == 20  # an int for a rate is fine
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_moving_world_views_move_every_frame_and_hand_out_the_truth() -> None:
    from pixellm_ros.world.motion import MovingWorld

    truths: list[object] = []
    scenes: list[object] = []
    views = list(itertools.islice(moving_world_views(64, 96, seed=2, rate_hz=10.0, scene_period_s=0.3,
                                                     on_new_scene=scenes.append, on_frame=truths.append), 4))
    assert len(scenes) == 2  # three frames of the first world, then a new one
    world = MovingWorld.sample(np.random.default_rng(2), (64, 96), duration_s=0.3)
    for index, (rgb, depth, intrinsics) in enumerate(views[:3]):
        expected = world.frame(index, 10.0)
        assert np.array_equal(rgb, expected.rgb) and np.array_equal(depth, expected.depth_image("16UC1"))
        assert truths[index].index == index and np.array_equal(truths[index].masks, expected.masks)
        np.testing.assert_allclose(intrinsics.K, world.camera.K)
    assert not np.array_equal(views[0][0], views[1][0])


def test_camera_node_plays_the_moving_world_and_keeps_its_truth(lone_domain_id: int) -> None:
    context = Context()
    rclpy.init(context=context, domain_id=lone_domain_id)
    try:
        node = CameraSimNode(context=context, parameter_overrides=[
            Parameter("moving", value="true"), Parameter("width", value=96), Parameter("height", value=64)])
        assert node.world_frame is None
        node._publish_next()
        node._publish_next()
        assert node.published == 2 and node.world_frame.index == 1 and node.world_frame.rgb.shape == (64, 96, 3)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
