"""The spatial core's pieces: intrinsics (scaling, refusals, distortion), depth decoding, boxes."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pixellm_ros.spatial import (
    DepthError,
    DepthImage,
    IntrinsicsError,
    PinholeIntrinsics,
    aligned_box,
    oriented_box,
)

K640 = np.array([[554.3, 0.0, 319.5], [0.0, 554.3, 239.5], [0.0, 0.0, 1.0]])


def test_intrinsics_from_a_camera_matrix_and_scaled_to_another_resolution() -> None:
    intr = PinholeIntrinsics.from_matrix(K640.ravel(), 640, 480)
    np.testing.assert_array_equal(intr.K, K640)
    assert intr.size == (640, 480) and not intr.is_distorted
    half = intr.scaled_to(320, 240)
    assert (half.fx, half.fy) == pytest.approx((277.15, 277.15))
    # Pixel centres stay at integer coordinates: colour pixels 0 and 1 (centres 0, 1) make up
    # half-resolution pixel 0, whose centre is at colour 0.5.
    assert half.cx == pytest.approx(159.5) and half.cy == pytest.approx(119.5)
    assert half.scaled_to(640, 480) == intr
    # A ray is the same ray at any resolution: colour x 400.5 is half-resolution x 200.0.
    assert (400.5 - intr.cx) / intr.fx == pytest.approx((200.0 - half.cx) / half.fx)
    assert intr.scaled_to(640, 480) is intr


def test_another_aspect_ratio_is_refused_with_both_sizes_named() -> None:
    intr = PinholeIntrinsics.from_matrix(K640, 640, 480)
    with pytest.raises(IntrinsicsError, match=r"640x480.*640x360.*aspect ratios differ"):
        intr.scaled_to(640, 360)


@pytest.mark.parametrize("K, message", [
    (np.zeros(9), "all zero"),
    ([[500, 3, 320], [0, 500, 240], [0, 0, 1]], "skewed"),
    (np.arange(8), "9 entries"),
])
def test_unusable_camera_matrices_are_refused(K: object, message: str) -> None:
    with pytest.raises(IntrinsicsError, match=message):
        PinholeIntrinsics.from_matrix(K, 640, 480)


def test_distortion_zero_of_any_model_is_a_pinhole_and_unknown_models_are_refused() -> None:
    for model in ("plumb_bob", "rational_polynomial", "equidistant", "some_vendor_model", ""):
        assert not PinholeIntrinsics.from_matrix(K640, 640, 480, model, [0.0] * 5).is_distorted
    with pytest.raises(IntrinsicsError, match="'some_vendor_model'.*not supported.*rectified"):
        PinholeIntrinsics.from_matrix(K640, 640, 480, "some_vendor_model", [0.1, 0, 0, 0, 0])
    with pytest.raises(IntrinsicsError, match="equidistant distortion needs 4"):
        PinholeIntrinsics.from_matrix(K640, 640, 480, "equidistant", [0.1, 0, 0, 0, 0])


@pytest.mark.parametrize("model, coefficients", [
    ("plumb_bob", [-0.28, 0.09, 0.001, -0.0015, -0.01]),
    ("rational_polynomial", [-0.25, 0.06, 0.0008, 0.0004, 0.0, 0.02, 0.0, 0.0]),
    ("equidistant", [-0.02, 0.004, -0.001, 0.0002]),
])
def test_the_undistorted_ray_grid_inverts_the_lens(model: str, coefficients: list[float]) -> None:
    intr = PinholeIntrinsics.from_matrix(K640, 640, 480, model, coefficients)
    assert intr.is_distorted
    grid = intr.normalised_grid()
    assert grid.shape == (480, 640, 2) and grid.dtype == np.float32
    # Project the grid's rays through the lens with OpenCV's forward model: back on every pixel.
    rays = np.concatenate([grid.reshape(-1, 2).astype(np.float64), np.ones((640 * 480, 1))], axis=1)[:, None, :]
    if model == "equidistant":
        pixels, _ = cv2.fisheye.projectPoints(rays, np.zeros(3), np.zeros(3), intr.K, np.array(coefficients))
    else:
        pixels, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), intr.K, np.array(coefficients))
    vs, us = np.mgrid[0:480, 0:640]
    error = np.hypot(pixels[:, 0, 0] - us.ravel(), pixels[:, 0, 1] - vs.ravel())
    assert np.percentile(error, 99) < 0.01 and error.max() < 0.1
    assert np.abs(grid[..., 0] - (us - intr.cx) / intr.fx).max() > 0.01  # the lens matters here
    with pytest.raises(IntrinsicsError, match="normalised_grid"):
        intr.normalised_columns_rows()


def test_depth_decodes_millimetres_and_metres_with_invalid_readings_as_nan() -> None:
    mm = np.array([[0, 1000, 65535], [1, 250, 0]], dtype=np.uint16)
    depth = DepthImage(mm)
    metres = depth.to_metres()
    assert metres.dtype == np.float32 and depth.size == (3, 2) and depth.in_millimetres
    np.testing.assert_allclose(metres[[0, 0, 1, 1], [1, 2, 0, 1]], [1.0, 65.535, 0.001, 0.25], rtol=1e-6)
    assert np.isnan(metres[0, 0]) and np.isnan(metres[1, 2])
    floats = np.array([[0.0, np.nan, np.inf], [-np.inf, -0.5, 0.731]], dtype=np.float32)
    decoded = DepthImage(floats).to_metres()
    assert np.isnan(decoded.ravel()[:5]).all() and decoded[1, 2] == pytest.approx(0.731)
    assert DepthImage(floats).valid_fraction() == pytest.approx(1 / 6)
    np.testing.assert_array_equal(DepthImage(mm).metres_at(np.array([0, 1]), np.array([1, 1])),
                                  np.float32([1.0, 0.25]))


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4), np.float64), "uint16 millimetres or float32 metres, got float64"),
    (np.zeros((4, 4), np.int32), "got int32"),
    (np.zeros((4, 4, 1), np.uint16), "2-D array"),
    (np.zeros((0, 4), np.uint16), "zero-size"),
])
def test_unusable_depth_arrays_are_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(DepthError, match=message):
        DepthImage(array)


def test_an_oriented_box_finds_a_rotated_slab_and_an_aligned_box_does_not() -> None:
    rng = np.random.default_rng(0)
    local = rng.uniform(-0.5, 0.5, size=(4000, 3)) * np.array([0.20, 0.06, 0.02])  # 20 x 6 x 2 cm
    rotation = Rotation.from_euler("zyx", [35, 20, -10], degrees=True).as_matrix()
    centre = np.array([0.1, -0.05, 0.8])
    points = (local @ rotation.T + centre).astype(np.float32)
    box = oriented_box(points)
    np.testing.assert_allclose(np.sort(box.size)[::-1], [0.20, 0.06, 0.02], atol=0.003)
    np.testing.assert_allclose(box.center, centre, atol=0.003)
    assert abs(box.rotation[:, 0] @ rotation[:, 0]) > math.cos(math.radians(2))  # longest axis first
    assert np.linalg.det(box.rotation) == pytest.approx(1.0)
    assert box.rotation[:, 2] @ box.center < 0  # the third axis faces the camera
    assert box.rotation[0, 0] >= 0
    assert box.contains(points).all()
    q = box.quaternion_xyzw
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), box.rotation, atol=1e-9)
    aligned = aligned_box(points)
    assert aligned.contains(points).all() and np.array_equal(aligned.rotation, np.eye(3))
    assert aligned.volume > 3 * box.volume
    corners = box.corners()
    assert corners.shape == (8, 3) and box.contains(corners, slack=1e-9).all()
    assert not box.contains((centre + 0.2 * rotation[:, 0])[None])[0]


def test_the_min_area_in_plane_axes_fit_a_square_that_pca_cannot_orient() -> None:
    rng = np.random.default_rng(1)
    local = rng.uniform(-0.5, 0.5, size=(5000, 3)) * np.array([0.08, 0.08, 0.01])  # a square tile
    rotation = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    points = (local @ rotation.T + np.array([0.0, 0.0, 0.7])).astype(np.float32)
    tight = oriented_box(points, in_plane="min_area")
    np.testing.assert_allclose(np.sort(tight.size), [0.01, 0.08, 0.08], atol=0.002)
    assert tight.contains(points).all()
    assert oriented_box(points, in_plane="pca").volume >= tight.volume * 0.99
    with pytest.raises(ValueError, match="in_plane"):
        oriented_box(points, in_plane="hull")
