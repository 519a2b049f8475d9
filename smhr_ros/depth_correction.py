"""Correct a hand's distance to the camera with an aligned depth image.

A monocular estimate gets the hand's shape and its image position right but its distance only
roughly. With a depth image registered to the colour image:
1. at every keypoint inside the depth image, measure the median valid depth in a small window;
2. compare it with the predicted depth of the skin there (the joint's depth minus
   `joint_offset_m`, as joint centres lie inside the hand);
3. keep the keypoints whose offset is within max(outlier_m, 3 MADs) of the median offset
   (fingers hidden behind others, or keypoints off the hand, read the wrong surface);
4. with at least `min_points` left, move the whole hand by their median offset along the viewing
   rays (`smhr_core.camera.place_at_depth`): every point keeps its projection and its depth
   relative to the wrist, so the keypoints do not change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from smhr_core.camera import place_at_depth
from smhr_core.results import Hand

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class DepthCorrectionSettings:
    """How measured depth is compared with a hand (see the module docstring)."""

    window_px: int = 5
    """Side of the square window sampled around each keypoint, depth-image pixels."""
    min_points: int = 5
    """Fewest consistent keypoints needed to correct a hand."""
    joint_offset_m: float = 0.01
    """Depth of joint centres behind the visible skin, metres."""
    outlier_m: float = 0.03
    """Smallest tolerance around the median offset, metres."""
    range_m: tuple[float, float] = (0.1, 5.0)
    """Measured depths outside [min, max] metres count as missing."""

    def __post_init__(self) -> None:
        if self.window_px < 1 or self.min_points < 1 or self.outlier_m <= 0:
            raise ValueError(
                "DepthCorrectionSettings: window_px and min_points must be >= 1 and outlier_m > 0, "
                f"got {self.window_px}, {self.min_points}, {self.outlier_m}"
            )
        if not 0 < self.range_m[0] < self.range_m[1]:
            raise ValueError(
                f"DepthCorrectionSettings.range_m: need 0 < min < max, got {self.range_m}"
            )


@dataclass(frozen=True)
class DepthMeasurement:
    """The outcome of comparing one hand with a depth image."""

    offset_m: float | None
    """Measured minus predicted depth, metres (median over inliers); None when not measurable."""
    valid_points: int
    """Keypoints with a valid measured depth."""
    inliers: int
    """Valid keypoints consistent with the median offset."""


def measure_keypoint_depths(
    keypoints_px: np.ndarray,
    depth_m: np.ndarray,
    image_size: tuple[int, int],
    settings: DepthCorrectionSettings,
) -> np.ndarray:
    """Median valid depth (metres) in a window around each keypoint; NaN where none.

    Args:
        keypoints_px: (K, 2) (u, v) in pixels of the colour image.
        depth_m: (H_d, W_d) depth in metres, NaN where missing, registered to the colour image
            (a different resolution is scaled to it).
        image_size: (width, height) of the colour image, pixels.
    """
    depth_height, depth_width = depth_m.shape
    scale = np.array([depth_width / image_size[0], depth_height / image_size[1]])
    uv = np.asarray(keypoints_px, dtype=np.float64) * scale
    low, high = settings.range_m
    half = settings.window_px // 2
    measured = np.full(len(uv), np.nan)
    for index, (u, v) in enumerate(uv):
        if not (np.isfinite(u) and np.isfinite(v)):
            continue
        col, row = int(np.floor(u)), int(np.floor(v))
        if not (0 <= col < depth_width and 0 <= row < depth_height):
            continue
        window = depth_m[
            max(row - half, 0) : row + half + 1, max(col - half, 0) : col + half + 1
        ].ravel()
        window = window[np.isfinite(window) & (window >= low) & (window <= high)]
        if window.size:
            measured[index] = float(np.median(window))
    return measured


def measure_offset(
    hand: Hand,
    depth_m: np.ndarray,
    image_size: tuple[int, int],
    settings: DepthCorrectionSettings,
) -> DepthMeasurement:
    """Robust measured-minus-predicted depth of `hand`'s visible skin, metres."""
    measured = measure_keypoint_depths(hand.keypoints_px, depth_m, image_size, settings)
    predicted = hand.joints_m[:, 2].astype(np.float64) - settings.joint_offset_m
    offsets = (measured - predicted)[np.isfinite(measured)]
    if offsets.size < settings.min_points:
        return DepthMeasurement(None, int(offsets.size), 0)
    median = float(np.median(offsets))
    spread = float(np.median(np.abs(offsets - median)))
    tolerance = max(settings.outlier_m, 3.0 * _MAD_TO_SIGMA * spread)
    inliers = offsets[np.abs(offsets - median) <= tolerance]
    if inliers.size < settings.min_points:
        return DepthMeasurement(None, int(offsets.size), int(inliers.size))
    return DepthMeasurement(float(np.median(inliers)), int(offsets.size), int(inliers.size))


def correct_hand_depth(
    hand: Hand,
    depth_m: np.ndarray,
    image_size: tuple[int, int],
    camera_matrix: np.ndarray,
    settings: DepthCorrectionSettings,
) -> tuple[Hand, DepthMeasurement]:
    """`hand` moved to the measured depth, or unchanged when it cannot be measured.

    Returns the hand and the measurement; the hand was corrected iff `measurement.offset_m` is
    not None. `camera_matrix` (3x3, pixels) is the one the hand's 3D values are expressed in.
    """
    measurement = measure_offset(hand, depth_m, image_size, settings)
    if measurement.offset_m is None:
        return hand, measurement
    wrist = hand.joints_m[0].astype(np.float64)
    new_wrist_depth = float(wrist[2]) + measurement.offset_m
    if not new_wrist_depth > 0:
        return hand, DepthMeasurement(None, measurement.valid_points, measurement.inliers)
    joints = place_at_depth(hand.joints_m, wrist, camera_matrix, new_wrist_depth)
    vertices = None
    if hand.vertices_m is not None:
        vertices = place_at_depth(hand.vertices_m, wrist, camera_matrix, new_wrist_depth)
    translation = hand.translation_m.astype(np.float64) + (joints[0] - wrist)
    corrected = dataclasses.replace(
        hand,
        joints_m=joints.astype(np.float32),
        translation_m=translation.astype(np.float32),
        vertices_m=None if vertices is None else vertices.astype(np.float32),
    )
    return corrected, measurement
