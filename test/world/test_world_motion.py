"""The moving world: the first frame is the still scene, a still object stays put on the table
while the camera moves, pushes move objects smoothly, an occluder hides an object for a while,
and every frame's masks, ids and depth are exact and reproducible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixellm_ros.world import sample_scene
from pixellm_ros.world.motion import CameraPath, MotionSpec, MovingWorld, Push, occlusion

SIZE = (240, 320)


def _world(seed: int = 3, seconds: float = 6.0, **kwargs) -> MovingWorld:
    return MovingWorld.sample(np.random.default_rng(seed), SIZE, seconds, **kwargs)


def test_the_first_frame_is_the_sampled_still_scene() -> None:
    world = _world()
    still = sample_scene(np.random.default_rng(3), SIZE, min_objects=4, max_objects=7)
    _, still_masks = still.render()
    frame = world.frame(0)
    assert list(frame.object_ids) == list(range(len(still.objects)))
    for k, object_id in enumerate(frame.object_ids):
        assert np.array_equal(frame.masks[k], still_masks[object_id])
        # The metric size the frame's geometry reads back is the world object's.
        assert frame.scene.geometry.object_radius_m(k) == pytest.approx(world.objects[object_id].radius_m, rel=1e-9)


def test_a_still_object_stays_where_it_is_on_the_table_while_the_camera_pans_and_dollies() -> None:
    world = _world().replaced(pushes=())
    moved_px = []
    for index in (0, 45, 90, 135):
        frame = world.frame(index)
        cam = frame.camera
        rotation, translation = cam.table_from_optical
        pose = frame.pose
        for k, object_id in enumerate(frame.object_ids):
            u, v = frame.scene.objects[k].center
            local = rotation @ cam.back_project(u, v, cam.depth_at_height(0.0, v)) + translation
            c, s = math.cos(pose.yaw_rad), math.sin(pose.yaw_rad)
            on_table = (pose.x_m + c * local[0] - s * local[1], pose.y_m + s * local[0] + c * local[1])
            np.testing.assert_allclose(on_table, world.objects[object_id].xy_m, atol=1e-9)
        moved_px.append(np.array([o.center for o in frame.scene.objects]))
    assert world.frame(90).pose != world.frame(0).pose
    assert np.abs(moved_px[2][: len(moved_px[0])] - moved_px[0][: len(moved_px[2])]).max() > 5  # it moved in the image


def test_the_table_texture_moves_with_the_table_not_with_the_image() -> None:
    world = _world().replaced(pushes=())
    near = world.table_view(world.path.pose(0.0))
    turned = world.table_view(world.path.pose(3.0))
    assert not np.allclose(near, turned)
    assert np.allclose(world.table_view(world.path.pose(0.0)), near)


def test_a_push_moves_its_object_smoothly_by_its_displacement() -> None:
    world = _world().replaced(path=CameraPath.still())
    push = Push(object_id=0, start_s=0.2, duration_s=1.0, dx_m=0.06, dy_m=-0.02, turn_rad=0.3)
    world = world.replaced(pushes=(push,))
    x0, y0, h0 = world.object_pose(0, 0.0)
    x1, y1, h1 = world.object_pose(0, 2.0)
    assert (x1 - x0, y1 - y0, h1 - h0) == pytest.approx((0.06, -0.02, 0.3))
    assert world.object_pose(0, 0.2) == pytest.approx((x0, y0, h0))
    steps = [np.hypot(*np.subtract(world.object_pose(0, (i + 1) / 30)[:2], world.object_pose(0, i / 30)[:2]))
             for i in range(45)]
    assert max(steps) < 0.06 / 30 * 2.0  # minimum jerk: at most 1.875x the mean speed
    assert world.object_pose(1, 2.0) == pytest.approx(world.object_pose(1, 0.0))  # the others stay


def test_an_occluder_hides_an_object_for_a_while_then_it_is_seen_again() -> None:
    world = _world(seed=5).replaced(pushes=(), path=CameraPath.still())
    radii = [o.radius_m for o in world.objects]
    big, small = int(np.argmax(radii)), int(np.argmin(radii))
    assert radii[big] >= 1.3 * radii[small]
    pushes = occlusion(world.objects, big, small, world.objects[big].xy_m, world.objects[small].xy_m,
                       start_s=0.1, approach_s=0.8, hide_s=0.8, leave_s=0.6, away_m=(0.0, -0.25))
    world = world.replaced(pushes=pushes)

    def seen(index: int) -> float:
        frame = world.frame(index)
        hits = np.flatnonzero(frame.object_ids == small)
        return float(frame.visible_fraction[hits[0]]) if hits.size else 0.0

    assert seen(0) > 0.6
    assert seen(round(1.3 * 30)) < 0.25  # hidden while the occluder stands in front of it
    assert seen(round(2.8 * 30)) >= seen(0) - 1e-9  # and back once it has gone


def test_frames_are_exact_and_reproducible() -> None:
    world = _world(seed=8, motion=MotionSpec(occlusions_per_min=10.0))
    again = _world(seed=8, motion=MotionSpec(occlusions_per_min=10.0))
    assert world.pushes == again.pushes
    frame, twin = world.frame(40), again.frame(40)
    assert np.array_equal(frame.rgb, twin.rgb) and np.array_equal(frame.masks, twin.masks)
    assert frame.masks.sum(axis=0).max() <= 1  # visible masks are disjoint
    labels = frame.scene.label_map
    for k in range(len(frame.object_ids)):
        assert np.array_equal(frame.masks[k], labels == k)
    # Depth: the table plane everywhere no object is seen, nearer on the objects.
    table = frame.camera.depth_at_height(0.0, np.arange(SIZE[0], dtype=np.float64))[:, None]
    depth = frame.depth_m
    np.testing.assert_allclose(depth[labels < 0], np.broadcast_to(table, depth.shape)[labels < 0])
    assert (depth[labels >= 0] < np.broadcast_to(table, depth.shape)[labels >= 0]).all()
    assert frame.depth_image("16UC1").dtype == np.uint16
    # The sensor noise is new in every frame: a still world still changes a little.
    still = world.replaced(pushes=(), path=CameraPath.still())
    a, b = still.frame(1).rgb.astype(int), still.frame(2).rgb.astype(int)
    assert 0 < np.abs(a - b).mean() < 10
