"""Rodrigues with the release's angle = |w| + 1e-8, and the composition of two rotations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from smhr_core.rotations import axis_angle_to_matrix, compose_axis_angle


def release_rodrigues(w: np.ndarray) -> np.ndarray:
    """The release's formula written out independently (numpy, float64)."""
    angle = np.linalg.norm(w) + 1e-8
    a = w / angle
    cross = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def test_matches_exact_rotations_to_float_precision() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(scale=1.2, size=(4, 5, 3))
    ours = axis_angle_to_matrix(torch.from_numpy(vectors).float())
    assert ours.shape == (4, 5, 3, 3)
    exact = Rotation.from_rotvec(vectors.reshape(-1, 3)).as_matrix().reshape(4, 5, 3, 3)
    np.testing.assert_allclose(ours.numpy(), exact, atol=2e-6)
    eye = torch.eye(3).expand(4, 5, 3, 3)
    assert torch.allclose(ours @ ours.transpose(-1, -2), eye, atol=1e-5)


def test_uses_the_release_epsilon_convention() -> None:
    w = np.array([0.3, -0.2, 0.5])
    ours = axis_angle_to_matrix(torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(ours, release_rodrigues(w), rtol=0, atol=1e-15)
    # The epsilon is visible in float64: exact Rodrigues differs by ~1e-8.
    assert np.abs(ours - Rotation.from_rotvec(w).as_matrix()).max() > 1e-10


def test_zero_vector_is_identity_and_dtype_is_kept() -> None:
    out = axis_angle_to_matrix(torch.zeros(2, 3, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert torch.equal(out, torch.eye(3, dtype=torch.float64).expand(2, 3, 3))


def test_composition_is_the_matrix_product() -> None:
    """Checked against scipy's rotations, half turns and zero rotations included; the result's
    angle is at most a half turn."""
    rng = np.random.default_rng(3)
    outer = rng.normal(size=(60, 3)) * 1.5
    inner = rng.normal(size=(60, 3)) * 1.5
    outer[0], inner[1] = 0.0, 0.0
    outer[2] = inner[2] = [0.0, 0.0, np.pi]  # two half turns: the identity
    composed = compose_axis_angle(torch.from_numpy(outer), torch.from_numpy(inner)).numpy()
    expected = (Rotation.from_rotvec(outer) * Rotation.from_rotvec(inner)).as_matrix()
    np.testing.assert_allclose(Rotation.from_rotvec(composed).as_matrix(), expected, atol=1e-9)
    assert np.linalg.norm(composed, axis=-1).max() <= np.pi + 1e-9
    with pytest.raises(ValueError, match="one shape"):
        compose_axis_angle(torch.zeros(2, 3), torch.zeros(3, 3))
