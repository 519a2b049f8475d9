"""Anatomical bounds of the 45-D finger pose (axis-angle per joint), for the pose prior.

Written for this project (not from a dataset). Axes are those of MANO's right template, which our
open hand model shares: fingers along -x, palm facing -y, thumb towards +z. A finger bends towards
the palm by a positive rotation about z; spreading is a rotation about y; twist is about x.
The thumb's joints are tilted in the palm, so their bounds are wide and symmetric.

Left hands are the mirror image in x: an axis-angle (x, y, z) of the right hand is (x, -y, -z) on
the left, so the y and z bounds swap and change sign (`left_limits`).
"""

from __future__ import annotations

import numpy as np

MANO_FINGER_JOINTS = (
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)  # fmt: skip
"""The 15 joints of the 45-D pose, in MANO order (3 values each)."""

# (lower, upper) radians about x (twist), y (spread), z (flexion) of the right hand.
_KNUCKLE = ((-0.30, 0.30), (-0.35, 0.35), (-0.40, 1.70))
_MIDDLE = ((-0.15, 0.15), (-0.15, 0.15), (-0.10, 1.90))
_END = ((-0.15, 0.15), (-0.15, 0.15), (-0.10, 1.60))
_THUMB_BASE = ((-1.00, 1.00), (-1.00, 1.00), (-1.00, 1.00))
_THUMB_OTHER = ((-0.80, 0.80), (-0.80, 0.80), (-0.80, 0.80))

_PER_JOINT = (
    *(_KNUCKLE, _MIDDLE, _END) * 4,
    _THUMB_BASE,
    _THUMB_OTHER,
    _THUMB_OTHER,
)


def right_limits() -> np.ndarray:
    """(45, 2) float32 lower/upper bound of every pose component of a right hand, radians."""
    return np.array([axis for joint in _PER_JOINT for axis in joint], dtype=np.float32)


def left_limits() -> np.ndarray:
    """(45, 2) float32 bounds of a left hand: the mirror of `right_limits` (y, z negated)."""
    right = right_limits().reshape(15, 3, 2)
    left = right.copy()
    left[:, 1:, 0] = -right[:, 1:, 1]
    left[:, 1:, 1] = -right[:, 1:, 0]
    return left.reshape(45, 2)


def limits_for(is_right: bool) -> np.ndarray:
    """Bounds of one side's pose, (45, 2) radians."""
    return right_limits() if is_right else left_limits()
