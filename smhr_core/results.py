"""Results that cross module lines: one reconstructed hand, and all hands of one image."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class Handedness(enum.IntEnum):
    """Which hand. Values match the `handmap` channel index and `Hand.msg` constants."""

    LEFT = 0
    RIGHT = 1


@dataclass(frozen=True, eq=False)
class Hand:
    """One reconstructed hand.

    Coordinates are in the original image (pixels) and in the camera's optical frame (metres,
    x right, y down, z forward). Joints follow the FreiHAND order.
    """

    score: float
    """Centre heatmap peak after the sigmoid, in [0, 1]."""
    handedness: Handedness
    handedness_probability: float
    """Probability of `handedness` from the `handmap` head (1.0 for a model without it)."""
    joints_m: np.ndarray
    """(21, 3) float32, metres, camera optical frame."""
    keypoints_px: np.ndarray
    """(21, 2) float32, original-image pixels (u, v); the projection of `joints_m`."""
    global_orient: np.ndarray
    """(3,) float32 axis-angle, radians, rotation about the wrist."""
    hand_pose: np.ndarray
    """(45,) float32 axis-angle of the 15 finger joints, radians, relative to the flat hand."""
    betas: np.ndarray
    """(10,) float32 MANO shape coefficients."""
    translation_m: np.ndarray
    """(3,) float32, metres: wrist position minus the shaped rest-pose wrist position."""
    box_px: np.ndarray
    """(4,) float32 (u_min, v_min, u_max, v_max) of the keypoints, original-image pixels."""
    centre_px: np.ndarray
    """(2,) float32 heatmap peak location, original-image pixels."""
    vertices_m: np.ndarray | None
    """(778, 3) float32 mesh vertices, metres, camera optical frame; None unless requested."""
    faces: np.ndarray
    """(1538, 3) int64 triangle indices for `vertices_m`; shared between hands of one side."""


@dataclass(frozen=True, eq=False)
class ImageHands:
    """All hands found in one image and the camera they are expressed in."""

    hands: tuple[Hand, ...]
    image_size: tuple[int, int]
    """(width, height) of the original image, pixels."""
    camera_matrix: np.ndarray
    """(3, 3) float64 intrinsics the 3D results are expressed in (original-image pixels)."""
    intrinsics_assumed: bool
    """True when no real K was given and the network's virtual camera was used."""
    non_finite_hands: int = 0
    """Peaks dropped because the network produced NaN/inf values for them."""
