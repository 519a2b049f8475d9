"""Axis-angle to rotation matrix (Rodrigues), with the release's numerical convention."""

from __future__ import annotations

import torch

ANGLE_EPSILON = 1e-8
"""Added to |w| so a zero rotation vector gives the identity without dividing by zero; the
released checkpoints were trained with this value (radians)."""


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle vectors.

    Args:
        axis_angle: (..., 3) rotation vectors, radians (direction = axis, length = angle).

    Returns:
        (..., 3, 3) rotation matrices, same dtype and device. The angle is taken as
        ``|w| + 1e-8`` exactly as the reference implementation does, so results match it to
        float precision (a zero vector maps to the identity).
    """
    if axis_angle.shape[-1] != 3:
        raise ValueError(
            f"axis_angle: last dimension must be 3, got shape {tuple(axis_angle.shape)}"
        )
    angle = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True) + ANGLE_EPSILON
    axis = axis_angle / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    # Cross-product matrix L of the unit axis: L @ v = axis x v.
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(
        *axis.shape[:-1], 3, 3
    )
    sin = torch.sin(angle)[..., None]
    cos = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin * cross + (1.0 - cos) * (cross @ cross)
