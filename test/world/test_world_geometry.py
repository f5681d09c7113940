"""The world in 3D: the camera's pose, the depth image against the table plane and the objects'
heights, and that colour, masks and depth agree pixel for pixel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixellm_ros.world import sample_scene
from pixellm_ros.world.geometry import CAMERA_HEIGHT_M, CAMERA_PITCH_DEG, camera_model
from pixellm_ros.world.shapes import SHAPE_HEIGHT


def _scene(seed: int = 4, size=(480, 640)):
    return sample_scene(np.random.default_rng(seed), size)


def _to_table(camera, points: np.ndarray) -> np.ndarray:
    rotation, translation = camera.table_from_optical
    return points @ rotation.T + translation


def test_the_camera_looks_down_at_the_table_from_its_known_pose() -> None:
    cam = camera_model(480, 640)
    assert (cam.width, cam.height) == (640, 480)
    assert cam.cx == pytest.approx(319.5) and cam.cy == pytest.approx(239.5)
    assert cam.fx == pytest.approx(320 / math.tan(math.radians(30)))  # 60 degrees across
    rotation, translation = cam.table_from_optical
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(translation, [0, 0, CAMERA_HEIGHT_M])
    axis = rotation[:, 2]  # the optical axis, in the table frame: forward and down at the pitch
    assert math.degrees(math.asin(-axis[2])) == pytest.approx(CAMERA_PITCH_DEG)
    assert axis[0] == pytest.approx(0.0) and axis[1] > 0
    # The principal point's ray meets the table height / tan(pitch) ahead of the camera's foot.
    centre = cam.back_project(cam.cx, cam.cy, cam.depth_at_height(0.0, cam.cy))
    on_table = _to_table(cam, centre[None])[0]
    assert on_table[2] == pytest.approx(0.0, abs=1e-12)
    assert on_table[1] == pytest.approx(CAMERA_HEIGHT_M / math.tan(math.radians(CAMERA_PITCH_DEG)))
    # Same aspect, twice the size: the same camera, intrinsics scaled.
    big = camera_model(960, 1280)
    assert big.fx == pytest.approx(2 * cam.fx) and (big.cx + 0.5) == pytest.approx(2 * (cam.cx + 0.5))


def test_table_pixels_lie_on_the_table_and_object_pixels_above_it() -> None:
    scene = _scene()
    geo = scene.geometry
    depth = geo.depth
    assert depth.shape == (480, 640) and np.isfinite(depth).all() and (depth > 0.5).all() and (depth < 1.2).all()
    v, u = np.nonzero(scene.label_map < 0)
    table = _to_table(geo.camera, geo.camera.back_project(u, v, depth[v, u]))
    np.testing.assert_allclose(table[:, 2], 0.0, atol=1e-9)
    for obj in scene.objects:
        points = _to_table(geo.camera, geo.object_points(obj.id))
        radius = geo.object_radius_m(obj.id)
        assert 0.015 < radius < 0.15  # centimetre-scale tabletop objects
        heights = points[:, 2]
        assert heights.min() > 0.0 and heights.max() <= SHAPE_HEIGHT[obj.shape] * radius + 1e-9, obj.full_name
        assert len(points) == int(scene.visible_masks[obj.id].sum())  # one point per visible pixel


def test_a_ball_is_as_high_as_it_is_wide() -> None:
    for seed in range(20):
        scene = _scene(seed)
        balls = [o for o in scene.objects if o.shape == "ball" and scene.geometry.fully_visible(o.id)]
        if balls:
            break
    else:
        pytest.fail("no fully visible ball in 20 scenes")
    geo = scene.geometry
    ball = balls[0]
    heights = _to_table(geo.camera, geo.object_points(ball.id))[:, 2]
    radius = geo.object_radius_m(ball.id)
    assert heights.max() == pytest.approx(2 * radius, rel=0.02)  # the top, seen from above
    assert heights.min() == pytest.approx(radius, rel=0.1)  # the silhouette: the equator


def test_colour_masks_and_depth_agree_and_the_colour_image_is_unchanged() -> None:
    a, b = _scene(6), _scene(6)
    rgb_before, masks_before = a.render()
    depth = a.geometry.depth  # the geometry is computed from the scene, drawing nothing
    rgb_after, masks_after = a.render()
    np.testing.assert_array_equal(rgb_before, rgb_after)
    np.testing.assert_array_equal(rgb_before, b.render()[0])  # a scene without geometry renders the same
    np.testing.assert_array_equal(masks_before, masks_after)
    heights = a.geometry.height_map
    assert np.array_equal(heights > 0, masks_before.any(axis=0))  # depth sees objects exactly on the masks
    # Across every mask edge onto the table, depth jumps back (the table lies behind every object).
    for k, mask in enumerate(masks_before):
        inner = mask & np.roll(a.label_map < 0, 1, axis=1)
        if inner.any():
            assert (depth[np.roll(inner, -1, axis=1)] > depth[inner]).all(), a.objects[k].full_name


def test_depth_images_in_millimetres_or_metres() -> None:
    geo = _scene().geometry
    mm = geo.depth_image("16UC1")
    metres = geo.depth_image("32FC1")
    assert mm.dtype == np.uint16 and metres.dtype == np.float32
    assert np.abs(mm / 1000.0 - geo.depth).max() <= 0.0005 + 1e-9
    assert np.abs(metres - geo.depth).max() < 1e-6
    with pytest.raises(ValueError, match="16UC1"):
        geo.depth_image("mono16")


def test_a_cylinders_axis_is_its_points_long_axis() -> None:
    found = 0
    for seed in range(40):
        scene = _scene(seed)
        for obj in scene.objects:
            if obj.shape == "cylinder" and scene.geometry.fully_visible(obj.id):
                points = scene.geometry.object_points(obj.id)
                centred = points - points.mean(axis=0)
                _, vectors = np.linalg.eigh(centred.T @ centred)
                long_axis = vectors[:, -1]
                assert abs(long_axis @ scene.geometry.object_axis(obj.id)) > math.cos(math.radians(5))
                found += 1
        if found >= 3:
            return
    pytest.fail(f"only {found} fully visible cylinders in 40 scenes")
