"""The tabletop renderer: determinism, exact visible masks, colours that match their names."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
import pytest

from pixellm_ros.world import Scene, SceneObject, sample_scene
from pixellm_ros.world.ontology import (
    AFFORDANCES,
    COLOUR_NAMES,
    HELDOUT_COLOUR_SHAPE,
    SHAPE_NAMES,
    has_affordance,
)
from pixellm_ros.world.scene import MIN_VISIBLE_FRACTION
from pixellm_ros.world.surfaces import sample_camera, sample_surface

# Hue (degrees) each colour name is meant to look like; the test's own reference.
EXPECTED_HUE = {"red": 0, "orange": 27, "yellow": 53, "green": 125, "blue": 220, "purple": 282}


def _scenes(n: int, size=(224, 224), split="train", seed0: int = 0) -> list[Scene]:
    return [sample_scene(np.random.default_rng(seed0 + i), size, split=split) for i in range(n)]


def _nearest_colour(rgb_mean: np.ndarray) -> str:
    h, s, v = colorsys.rgb_to_hsv(*(rgb_mean / 255.0))
    hue = h * 360
    return min(EXPECTED_HUE, key=lambda c: min(abs(hue - EXPECTED_HUE[c]), 360 - abs(hue - EXPECTED_HUE[c])))


def test_same_seed_same_scene_and_image() -> None:
    a = sample_scene(np.random.default_rng(7))
    b = sample_scene(np.random.default_rng(7))
    assert a.objects == b.objects
    rgb_a, masks_a = a.render()
    rgb_b, masks_b = b.render()
    np.testing.assert_array_equal(rgb_a, rgb_b)
    np.testing.assert_array_equal(masks_a, masks_b)
    np.testing.assert_array_equal(a.render()[0], rgb_a)  # rendering twice is stable too
    assert sample_scene(np.random.default_rng(8)).objects != a.objects


@pytest.mark.parametrize("size", [(224, 224), (480, 640), (96, 160)])
def test_render_shapes_and_types(size: tuple[int, int]) -> None:
    scene = sample_scene(np.random.default_rng(1), size)
    rgb, masks = scene.render()
    assert rgb.shape == (*size, 3) and rgb.dtype == np.uint8
    assert masks.shape == (len(scene.objects), *size) and masks.dtype == bool
    assert 1 <= len(scene.objects) <= 8


def test_masks_non_empty_disjoint_and_visible_enough() -> None:
    for scene in _scenes(12):
        _, masks = scene.render()
        assert masks.sum(axis=0).max() <= 1  # disjoint
        for obj in scene.objects:
            own = scene.footprint(obj).full(scene.height, scene.width)
            assert masks[obj.id].any()
            assert not (masks[obj.id] & ~own).any()  # only the object's own pixels
            assert masks[obj.id].sum() >= MIN_VISIBLE_FRACTION * own.sum()


def test_masks_are_the_unoccluded_part_of_each_footprint() -> None:
    # Nearer objects (lower in the image) hide farther ones.
    for scene in _scenes(6, seed0=40):
        _, masks = scene.render()
        for obj in scene.objects:
            own = scene.footprint(obj).full(scene.height, scene.width)
            nearer = np.zeros_like(own)
            for other in scene.objects:
                if (other.center[1], other.id) > (obj.center[1], obj.id):
                    nearer |= scene.footprint(other).full(scene.height, scene.width)
            np.testing.assert_array_equal(masks[obj.id], own & ~nearer)


def test_occlusion_of_two_hand_placed_balls() -> None:
    rng = np.random.default_rng(3)
    back = SceneObject(0, "ball", "blue", "large", 30.0, (100.0, 90.0), 0.0, (40, 80, 220))
    front = SceneObject(1, "ball", "red", "large", 30.0, (130.0, 110.0), 0.0, (220, 30, 30))
    scene = Scene(224, 224, (back, front), sample_surface(rng), sample_camera(rng))
    rgb, masks = scene.render()
    yy, xx = np.mgrid[0:224, 0:224]
    in_back = (xx - 100) ** 2 + (yy - 90) ** 2 <= 30**2
    in_front = (xx - 130) ** 2 + (yy - 110) ** 2 <= 30**2
    np.testing.assert_array_equal(masks[1], in_front)
    np.testing.assert_array_equal(masks[0], in_back & ~in_front)
    overlap = in_back & in_front
    assert overlap.sum() > 100
    assert _nearest_colour(rgb[overlap].mean(axis=0)) == "red"  # the front ball is seen there


def test_objects_differ_from_the_empty_table_only_where_they_are() -> None:
    for scene in _scenes(8, seed0=20):
        rgb, masks = scene.render()
        table = scene.render_background()
        diff = np.abs(rgb.astype(int) - table.astype(int)).sum(axis=2)
        union = masks.any(axis=0)
        # Every object pixel looks unlike the table under it.
        assert (diff[union] > 30).mean() > 0.99
        # Off the objects only shadows change the table, and they stay close to their object.
        near = np.zeros_like(union)
        for obj in scene.objects:
            fp = scene.footprint(obj).full(scene.height, scene.width).astype(np.uint8)
            reach = int(obj.radius * 0.9) + 6
            near |= cv2.dilate(fp, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)).astype(bool)
        assert (diff[~union & ~near] == 0).all()


def test_object_colours_match_their_names() -> None:
    checked = 0
    for scene in _scenes(25, seed0=100) + _scenes(5, (480, 640), seed0=200):
        rgb, masks = scene.render()
        for obj in scene.objects:
            mean = rgb[masks[obj.id]].astype(np.float64).mean(axis=0)
            assert _nearest_colour(mean) == obj.colour, (obj, mean)
            checked += 1
    assert checked > 100


def test_train_scenes_avoid_and_heldout_scenes_contain_heldout_pairs() -> None:
    for scene in _scenes(30, seed0=300):
        assert not any((o.colour, o.shape) in HELDOUT_COLOUR_SHAPE for o in scene.objects)
    for scene in _scenes(15, split="heldout", seed0=400):
        assert any((o.colour, o.shape) in HELDOUT_COLOUR_SHAPE for o in scene.objects)


def test_heldout_pairs_leave_every_colour_and_shape_in_training() -> None:
    assert len(HELDOUT_COLOUR_SHAPE) == 6
    assert {c for c, _ in HELDOUT_COLOUR_SHAPE} == set(COLOUR_NAMES)  # each colour loses one partner
    assert len({s for _, s in HELDOUT_COLOUR_SHAPE}) == 6
    seen_colours = {o.colour for s in _scenes(30, seed0=500) for o in s.objects}
    seen_shapes = {o.shape for s in _scenes(30, seed0=500) for o in s.objects}
    assert seen_colours == set(COLOUR_NAMES) and seen_shapes == set(SHAPE_NAMES)


def test_affordance_ontology() -> None:
    rolls = {s for s in SHAPE_NAMES if has_affordance(s, "rolls")}
    assert rolls == {"ball", "ring", "cylinder"}
    assert {s for s in SHAPE_NAMES if has_affordance(s, "stays_put")} == set(SHAPE_NAMES) - rolls
    assert {s for s in SHAPE_NAMES if has_affordance(s, "pointy")} == {"star", "wedge"}
    assert {s for s in SHAPE_NAMES if has_affordance(s, "container")} == {"cup"}
    assert all(any(has_affordance(s, a) for s in SHAPE_NAMES) for a in AFFORDANCES)
    with pytest.raises(ValueError):
        has_affordance("ball", "flies")


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        sample_scene(np.random.default_rng(0), split="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sample_scene(np.random.default_rng(0), (48, 300))
