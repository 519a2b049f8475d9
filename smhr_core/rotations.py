"""Axis-angle rotations: to rotation matrices (Rodrigues, with the release's numerical convention),
the rotation halfway between two and the composition of two."""

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


def average_axis_angle(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle (radians) of the rotation halfway between two rotations: the
    normalised mean of their unit quaternions, taken on the same side of the sphere.

    Averaging the axis-angle vectors themselves fails where the two sit on either side of a
    half turn (the same rotation can be w or w - 2 pi w / |w|).
    """
    if first.shape != second.shape or first.shape[-1] != 3:
        raise ValueError(
            f"axis_angle: expected two (..., 3) tensors of one shape, got "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )
    q1, q2 = _quaternion(first), _quaternion(second)
    same_side = torch.where((q1 * q2).sum(-1, keepdim=True) < 0, -q2, q2)
    return _axis_angle(q1 + same_side)


def compose_axis_angle(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle (radians) of the rotation `inner` followed by `outer` (matrices
    R_outer @ R_inner), both (..., 3) axis-angle of one shape."""
    if outer.shape != inner.shape or outer.shape[-1] != 3:
        raise ValueError(
            f"axis_angle: expected two (..., 3) tensors of one shape, got "
            f"{tuple(outer.shape)} and {tuple(inner.shape)}"
        )
    a, b = _quaternion(outer), _quaternion(inner)
    aw, av = a[..., :1], a[..., 1:]
    bw, bv = b[..., :1], b[..., 1:]
    product = torch.cat(
        [
            aw * bw - (av * bv).sum(-1, keepdim=True),
            aw * bv + bw * av + torch.cross(av, bv, dim=-1),
        ],
        dim=-1,
    )
    return _axis_angle(product)


def _axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle of (..., 4) quaternions (w, x, y, z), not necessarily unit ones; the
    angle is at most a half turn."""
    q = torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)
    vector = q[..., 1:]
    norm = torch.linalg.vector_norm(vector, dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(norm, q[..., :1])
    return torch.where(norm > 0, vector * angle / norm.clamp(min=1e-12), torch.zeros_like(vector))


def _quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternions (w, x, y, z) of axis-angle vectors (..., 3)."""
    angle = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True)
    half = angle / 2.0
    # sin(half) / angle, with its limit 1/2 at a zero rotation.
    scale = torch.where(angle > 1e-8, torch.sin(half) / angle.clamp(min=1e-8), 0.5 - angle**2 / 48)
    return torch.cat([torch.cos(half), axis_angle * scale], dim=-1)
