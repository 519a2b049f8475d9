"""Correcting a hand's distance with an aligned depth image."""

from __future__ import annotations

import numpy as np
import pytest

from smhr_core.camera import project
from smhr_ros.depth_correction import (
    DepthCorrectionSettings,
    correct_hand_depth,
    measure_keypoint_depths,
)

SIZE = (640, 480)


def _flat_depth(value_m: float, shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    return np.full(shape, value_m, dtype=np.float32)


def test_hand_moves_to_the_measured_depth_keeping_its_keypoints(make_hand, camera_matrix) -> None:
    hand = make_hand((0.02, 0.01, 0.5))
    settings = DepthCorrectionSettings(joint_offset_m=0.01)
    # The camera sees the skin at 0.69 m: the joints are 1 cm behind, so the wrist goes to ~0.7.
    surface = hand.joints_m[:, 2] - 0.5 + 0.69
    depth = _flat_depth(np.nan)
    for (u, v), z in zip(hand.keypoints_px, surface, strict=True):
        depth[int(v) - 3 : int(v) + 4, int(u) - 3 : int(u) + 4] = z
    corrected, measurement = correct_hand_depth(hand, depth, SIZE, camera_matrix, settings)
    assert measurement.offset_m == pytest.approx(0.2, abs=0.01)
    assert corrected.joints_m[0, 2] == pytest.approx(0.7, abs=0.01)
    np.testing.assert_allclose(
        project(corrected.joints_m, camera_matrix), hand.keypoints_px, atol=0.05
    )
    np.testing.assert_allclose(
        project(corrected.vertices_m, camera_matrix),
        project(hand.vertices_m, camera_matrix),
        atol=0.05,
    )
    # Depths relative to the wrist are kept; the translation follows the wrist.
    np.testing.assert_allclose(
        corrected.joints_m[:, 2] - corrected.joints_m[0, 2],
        hand.joints_m[:, 2] - hand.joints_m[0, 2],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        corrected.translation_m - hand.translation_m,
        corrected.joints_m[0] - hand.joints_m[0],
        atol=1e-5,
    )


def test_occluded_keypoints_are_rejected_as_outliers(make_hand, camera_matrix) -> None:
    hand = make_hand((0.0, 0.0, 0.5))
    depth = _flat_depth(np.nan)
    for i, ((u, v), z) in enumerate(zip(hand.keypoints_px, hand.joints_m[:, 2], strict=True)):
        # Six keypoints read an object 20 cm in front of the hand.
        depth[int(v), int(u)] = z + 0.1 if i % 3 else z - 0.2
    measured = measure_keypoint_depths(
        hand.keypoints_px, depth, SIZE, DepthCorrectionSettings(window_px=1)
    )
    assert np.isfinite(measured).sum() >= 15
    _corrected, measurement = correct_hand_depth(
        hand, depth, SIZE, camera_matrix, DepthCorrectionSettings(window_px=1, joint_offset_m=0.0)
    )
    assert measurement.inliers < measurement.valid_points
    assert measurement.offset_m == pytest.approx(0.1, abs=0.005)


def test_too_few_valid_points_leave_the_hand_unchanged(make_hand, camera_matrix) -> None:
    hand = make_hand((0.0, 0.0, 0.5))
    out_of_range = _flat_depth(9.0)
    corrected, measurement = correct_hand_depth(
        hand, out_of_range, SIZE, camera_matrix, DepthCorrectionSettings()
    )
    assert corrected is hand and measurement.offset_m is None and measurement.valid_points == 0
    missing = _flat_depth(np.nan)
    corrected, measurement = correct_hand_depth(
        hand, missing, SIZE, camera_matrix, DepthCorrectionSettings()
    )
    assert corrected is hand and measurement.offset_m is None


def test_depth_image_of_another_resolution_is_scaled(make_hand, camera_matrix) -> None:
    hand = make_hand((0.0, 0.0, 0.5))
    half = _flat_depth(0.8, shape=(240, 320))
    corrected, measurement = correct_hand_depth(
        hand, half, SIZE, camera_matrix, DepthCorrectionSettings(joint_offset_m=0.0)
    )
    assert measurement.valid_points == 21
    assert corrected.joints_m[0, 2] == pytest.approx(
        0.8 + (hand.joints_m[0, 2] - np.median(hand.joints_m[:, 2])), abs=0.01
    )


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="window_px"):
        DepthCorrectionSettings(window_px=0)
    with pytest.raises(ValueError, match="range_m"):
        DepthCorrectionSettings(range_m=(2.0, 1.0))
