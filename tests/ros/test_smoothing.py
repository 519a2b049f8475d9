"""One Euro smoothing of tracked hands."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from smhr_core.camera import project
from smhr_ros.smoothing import HandSmoother, OneEuroFilter


def test_noise_at_rest_is_reduced_and_a_constant_passes_unchanged() -> None:
    rng = np.random.default_rng(0)
    noisy = OneEuroFilter(min_cutoff_hz=1.0, beta=0.0, d_cutoff_hz=1.0)
    constant = OneEuroFilter(min_cutoff_hz=1.0, beta=0.0, d_cutoff_hz=1.0)
    raw, filtered = [], []
    for i in range(300):
        t = i / 30.0
        sample = rng.normal(0.0, 0.01, (4, 3))
        raw.append(sample)
        filtered.append(noisy(sample, t))
        np.testing.assert_allclose(constant(np.ones((4, 3)), t), 1.0)
    # An EMA with alpha = 0.17 (1 Hz at 30 Hz) keeps sqrt(alpha / (2 - alpha)) = 0.31 of the noise.
    assert np.std(filtered[50:]) < 0.4 * np.std(raw[50:])


def test_speed_coefficient_reduces_lag_when_moving() -> None:
    lag = {}
    for beta in (0.0, 50.0):
        f = OneEuroFilter(min_cutoff_hz=1.0, beta=beta, d_cutoff_hz=1.0)
        for i in range(60):
            t = i / 30.0
            out = f(np.array([[0.5 * t, 0.0, 0.0]]), t)
        lag[beta] = 0.5 * t - out[0, 0]
    assert lag[0.0] > 0.05
    assert 0.0 < lag[50.0] < 0.25 * lag[0.0]


def test_repeated_or_backward_stamps_restart_the_filter() -> None:
    f = OneEuroFilter(1.0, 0.0, 1.0)
    f(np.zeros((1, 3)), 1.0)
    assert f(np.ones((1, 3)), 1.1)[0, 0] < 0.5
    np.testing.assert_array_equal(f(np.full((1, 3), 5.0), 1.1), 5.0)
    np.testing.assert_array_equal(f(np.full((1, 3), 7.0), 0.5), 7.0)


def test_shared_cutoff_blends_every_point_equally() -> None:
    f = OneEuroFilter(1.0, 100.0, 1.0, shared_cutoff=True)
    f(np.zeros((3, 3)), 0.0)
    moved = np.array([[1.0, 0, 0], [0.0, 0, 0], [0.5, 0, 0]])
    out = f(moved, 1 / 30)
    alpha = out[0, 0] / moved[0, 0]
    np.testing.assert_allclose(out, alpha * moved)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="min_cutoff_hz"):
        OneEuroFilter(0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        HandSmoother(beta_position=-1.0)


def test_rotation_wrapping_near_pi_does_not_pass_through_identity(make_hand, camera_matrix) -> None:
    smoother = HandSmoother(min_cutoff_hz=0.5, beta_rotation=0.0)
    axis = np.array([0.0, 0.0, 1.0])
    for i, angle in enumerate([math.pi - 0.05, math.pi + 0.05, math.pi - 0.05, math.pi + 0.05]):
        rotvec = Rotation.from_rotvec(axis * angle).as_rotvec()  # wraps into |r| <= pi
        hand = make_hand(global_orient=tuple(rotvec))
        out = smoother.smooth(1, hand, i / 30.0, camera_matrix)
        assert abs(np.linalg.norm(out.global_orient) - math.pi) < 0.1


def test_smoothed_hand_stays_consistent(make_hand, camera_matrix) -> None:
    smoother = HandSmoother(min_cutoff_hz=1.0, beta_position=0.0)
    smoother.smooth(7, make_hand((0.0, 0.0, 0.6)), 0.0, camera_matrix)
    raw = make_hand((0.05, 0.0, 0.6))
    out = smoother.smooth(7, raw, 1 / 30, camera_matrix)
    shift = out.joints_m[0, 0]
    assert 0.0 < shift < 0.05
    # Every 3D point moved by the same fraction: the mesh keeps its shape.
    np.testing.assert_allclose(
        out.vertices_m - out.joints_m[0], raw.vertices_m - raw.joints_m[0], atol=1e-5
    )
    np.testing.assert_allclose(out.keypoints_px, project(out.joints_m, camera_matrix), atol=1e-3)
    np.testing.assert_allclose(out.box_px[:2], out.keypoints_px.min(axis=0), atol=1e-4)
    assert out.translation_m[0] == pytest.approx(raw.translation_m[0] - (0.05 - shift), abs=1e-5)
    assert smoother.track_ids == (7,)
    smoother.retain([3])
    assert smoother.track_ids == ()
