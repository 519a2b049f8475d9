"""Virtual camera, assumed intrinsics, the input's own camera and the move into a real camera's
frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smhr_core.camera import (
    assumed_intrinsics,
    back_project,
    input_cameras,
    input_intrinsics,
    place_at_depth,
    project,
    to_camera_frame,
    virtual_intrinsics,
)
from smhr_core.preprocess import Letterbox

REAL_K = np.array([[615.0, 0.0, 331.5], [0.0, 605.0, 243.2], [0.0, 0.0, 1.0]])


def hand_points(seed: int = 0) -> np.ndarray:
    """A hand-sized cloud (about 20 cm across) in front of the virtual camera; row 0 = wrist."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-0.1, 0.1, size=(21, 3)) + np.array([0.05, -0.03, 0.7])
    return points


def test_virtual_intrinsics() -> None:
    np.testing.assert_array_equal(
        virtual_intrinsics(384), [[512, 0, 192], [0, 512, 192], [0, 0, 1]]
    )


def test_assumed_intrinsics_equal_letterbox_of_virtual_projection() -> None:
    box = Letterbox.fit(640, 480, 384)
    points = hand_points()
    via_input = box.to_original(project(points, virtual_intrinsics(384)))
    np.testing.assert_allclose(project(points, assumed_intrinsics(box)), via_input, atol=1e-9)
    k = assumed_intrinsics(box)
    assert k[0, 0] == pytest.approx(512 / 0.6)
    assert k[1, 2] == pytest.approx((192 - box.offset_v) / 0.6)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1280, 720)])
def test_to_camera_frame_keeps_keypoints_and_relative_depth(size: tuple[int, int]) -> None:
    box = Letterbox.fit(*size, 384)
    points = hand_points(seed=size[0])
    keypoints = box.to_original(project(points, virtual_intrinsics(384)))
    moved = to_camera_frame(points, points[0], box, REAL_K)
    np.testing.assert_allclose(project(moved, REAL_K), keypoints, atol=1e-4)
    np.testing.assert_allclose(moved[:, 2] - moved[0, 2], points[:, 2] - points[0, 2], atol=1e-12)
    f_real = np.sqrt(615.0 * 605.0)
    f_assumed = 512 / box.scale
    assert moved[0, 2] == pytest.approx(points[0, 2] * f_real / f_assumed)


def test_to_camera_frame_keeps_metric_size() -> None:
    box = Letterbox.fit(1280, 720, 384)
    points = hand_points(seed=7)
    # With square pixels, points at the wrist's depth keep their distances exactly (the scale
    # f_real / f_assumed of the wrist depth cancels the change of pixel size).
    square = np.array([[610.0, 0.0, 640.5], [0.0, 610.0, 351.0], [0.0, 0.0, 1.0]])
    flat = points.copy()
    flat[:, 2] = flat[0, 2]
    moved = to_camera_frame(flat, flat[0], box, square)
    for i, j in [(0, 5), (3, 17), (8, 20)]:
        before = np.linalg.norm(flat[i] - flat[j])
        assert np.linalg.norm(moved[i] - moved[j]) == pytest.approx(before, rel=1e-9)


def test_to_camera_frame_with_a_wrist_outside_the_points() -> None:
    box = Letterbox.fit(640, 480, 384)
    points = hand_points(seed=3)
    wrist = points[0]
    vertices = points[1:]
    moved_all = to_camera_frame(points, wrist, box, REAL_K)
    moved_vertices = to_camera_frame(vertices, wrist, box, REAL_K)
    np.testing.assert_allclose(moved_vertices, moved_all[1:], atol=1e-12)


def test_to_camera_frame_without_k_is_identity() -> None:
    box = Letterbox.fit(640, 480, 384)
    points = hand_points()
    moved = to_camera_frame(points, points[0], box, None)
    np.testing.assert_array_equal(moved, points)
    assert moved is not points


def test_bad_camera_matrix_is_rejected() -> None:
    box = Letterbox.fit(640, 480, 384)
    with pytest.raises(ValueError, match="3x3"):
        to_camera_frame(hand_points(), hand_points()[0], box, np.eye(4))
    with pytest.raises(ValueError, match="positive focal"):
        to_camera_frame(hand_points(), hand_points()[0], box, np.diag([-1.0, 1.0, 1.0]))


def test_place_at_depth_keeps_projections_and_shape_in_depth() -> None:
    points = hand_points(seed=5)
    moved = place_at_depth(points, 0, REAL_K, 0.45)
    assert moved[0, 2] == pytest.approx(0.45)
    np.testing.assert_allclose(project(moved, REAL_K), project(points, REAL_K), atol=1e-9)
    np.testing.assert_allclose(moved[:, 2] - moved[0, 2], points[:, 2] - points[0, 2], atol=1e-12)
    by_point = place_at_depth(points[1:], points[0], REAL_K, 0.45)
    np.testing.assert_allclose(by_point, moved[1:], atol=1e-12)
    with pytest.raises(ValueError, match="new_wrist_depth_m"):
        place_at_depth(points, 0, REAL_K, 0.0)


def test_project_and_back_project_are_inverse_with_batch_dims() -> None:
    points = hand_points().reshape(3, 7, 3)
    uv = project(points, REAL_K)
    assert uv.shape == (3, 7, 2)
    np.testing.assert_allclose(back_project(uv, points[..., 2], REAL_K), points, atol=1e-12)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (384, 384)])
def test_input_intrinsics_project_into_the_network_input(size: tuple[int, int]) -> None:
    box = Letterbox.fit(*size, 256)
    points = hand_points(seed=size[1])
    k_input = input_intrinsics(box, REAL_K)
    np.testing.assert_allclose(
        project(points, k_input), box.to_input(project(points, REAL_K)), atol=1e-9
    )
    # Without a real camera the input's camera is the virtual one.
    np.testing.assert_allclose(input_intrinsics(box, None), virtual_intrinsics(256), atol=1e-9)


def test_input_cameras_follow_each_hands_image() -> None:
    boxes = [Letterbox.fit(640, 480, 256), Letterbox.fit(1280, 720, 256)]
    cameras = input_cameras([1, 0, 1], boxes, [REAL_K, None])
    assert cameras.shape == (3, 3, 3) and cameras.dtype == torch.float32
    np.testing.assert_allclose(cameras[0].numpy(), input_intrinsics(boxes[1], None), rtol=1e-6)
    np.testing.assert_allclose(cameras[1].numpy(), input_intrinsics(boxes[0], REAL_K), rtol=1e-6)
    assert input_cameras([], boxes, [None, None]).shape == (0, 3, 3)
    with pytest.raises(ValueError, match="camera_matrix"):
        input_cameras([0], boxes, [np.eye(2), None])
