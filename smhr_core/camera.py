"""Cameras: the network's virtual camera and the move of its hands into a real camera's frame.

All 3D points are metres in an optical frame (x right, y down, z forward); intrinsics are 3x3
pinhole matrices in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from smhr_core.decode import VIRTUAL_FOCAL_PX
from smhr_core.preprocess import Letterbox


def virtual_intrinsics(resolution: int) -> np.ndarray:
    """K_v = [[512, 0, R/2], [0, 512, R/2], [0, 0, 1]] of the R x R network input (float64)."""
    half = resolution / 2.0
    return np.array([[VIRTUAL_FOCAL_PX, 0.0, half], [0.0, VIRTUAL_FOCAL_PX, half], [0.0, 0.0, 1.0]])


def assumed_intrinsics(letterbox: Letterbox) -> np.ndarray:
    """The virtual camera expressed in original-image pixels: f = 512 / s, c = (R/2 - o) / s.

    Projecting with it gives exactly `letterbox.to_original` of the projection with K_v.
    """
    s = letterbox.scale
    half = letterbox.input_size / 2.0
    f = VIRTUAL_FOCAL_PX / s
    return np.array(
        [
            [f, 0.0, (half - letterbox.offset_u) / s],
            [0.0, f, (half - letterbox.offset_v) / s],
            [0.0, 0.0, 1.0],
        ]
    )


def input_intrinsics(letterbox: Letterbox, camera_matrix: np.ndarray | None) -> np.ndarray:
    """The camera of the network input: the real K (original-image pixels) expressed in input
    pixels (input = scale * original + offset), or the virtual K_v when `camera_matrix` is None."""
    k = assumed_intrinsics(letterbox) if camera_matrix is None else _check_matrix(camera_matrix)
    to_input = np.array(
        [
            [letterbox.scale, 0.0, letterbox.offset_u],
            [0.0, letterbox.scale, letterbox.offset_v],
            [0.0, 0.0, 1.0],
        ]
    )
    return to_input @ k


def input_cameras(
    image_index: Sequence[int],
    letterboxes: Sequence[Letterbox],
    camera_matrices: Sequence[np.ndarray | None],
) -> torch.Tensor:
    """(N, 3, 3) float32 `input_intrinsics` of the image `image_index[i]` of each of N hands."""
    if not image_index:
        return torch.zeros((0, 3, 3))
    return torch.from_numpy(
        np.stack(
            [input_intrinsics(letterboxes[b], camera_matrices[b]) for b in image_index]
        ).astype(np.float32)
    )


def _check_matrix(camera_matrix: np.ndarray) -> np.ndarray:
    k = np.asarray(camera_matrix, dtype=np.float64)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)):
        raise ValueError(f"camera_matrix: expected a finite 3x3 matrix, got shape {k.shape}")
    if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0.0, 0.0, 1.0]):
        raise ValueError(
            "camera_matrix: expected positive focal lengths fx, fy and last row (0, 0, 1), got "
            f"{k.tolist()}"
        )
    return k


def project(points_m: np.ndarray, camera_matrix: np.ndarray) -> np.ndarray:
    """Pinhole projection of (..., 3) points (metres) to (..., 2) pixels (u, v)."""
    points = np.asarray(points_m, dtype=np.float64)
    homogeneous = points @ np.asarray(camera_matrix, dtype=np.float64).T
    return homogeneous[..., :2] / homogeneous[..., 2:3]


def back_project(uv_px: np.ndarray, depth_m: np.ndarray, camera_matrix: np.ndarray) -> np.ndarray:
    """(..., 2) pixels and (...) depths (metres) -> (..., 3) points with those projections."""
    uv = np.asarray(uv_px, dtype=np.float64)
    rays = (
        np.concatenate([uv, np.ones_like(uv[..., :1])], axis=-1)
        @ np.linalg.inv(np.asarray(camera_matrix, dtype=np.float64)).T
    )
    return rays * (np.asarray(depth_m, dtype=np.float64)[..., None] / rays[..., 2:3])


def _focal(camera_matrix: np.ndarray) -> float:
    return float(np.sqrt(camera_matrix[0, 0] * camera_matrix[1, 1]))


def to_camera_frame(
    points_m: np.ndarray,
    root_index_point: np.ndarray,
    letterbox: Letterbox,
    camera_matrix: np.ndarray | None,
) -> np.ndarray:
    """Move points predicted in the virtual camera into the real camera's optical frame.

    Each point keeps its 2D projection in the original image exactly and its depth relative to
    the wrist; the wrist depth is scaled by f_real / f_assumed (f = sqrt(fx * fy)) so the hand
    keeps its metric size; points are then back-projected with the real K.

    Args:
        points_m: (P, 3) points in the virtual camera, metres.
        root_index_point: (3,) wrist in the virtual camera, metres.
        letterbox: geometry of the network input.
        camera_matrix: real 3x3 K in original-image pixels, or None to return the points
            unchanged (they are then in the assumed camera `assumed_intrinsics(letterbox)`).

    Returns:
        (P, 3) float64 points, metres.
    """
    points = np.asarray(points_m, dtype=np.float64)
    if camera_matrix is None:
        return points.copy()
    k_real = _check_matrix(camera_matrix)
    k_assumed = assumed_intrinsics(letterbox)
    wrist = np.asarray(root_index_point, dtype=np.float64).reshape(3)
    wrist_depth = wrist[2] * _focal(k_real) / _focal(k_assumed)
    depth = wrist_depth + (points[..., 2] - wrist[2])
    return back_project(project(points, k_assumed), depth, k_real)


def place_at_depth(
    points_m: np.ndarray,
    wrist_index_or_point: int | np.ndarray,
    camera_matrix: np.ndarray,
    new_wrist_depth_m: float,
) -> np.ndarray:
    """Move a hand so its wrist is at `new_wrist_depth_m`, keeping every point's projection with
    `camera_matrix` and its depth relative to the wrist (e.g. to apply a measured depth).

    Args:
        points_m: (P, 3) points in the camera frame, metres.
        wrist_index_or_point: index of the wrist in `points_m`, or the (3,) wrist itself.
        camera_matrix: 3x3 K the projections are kept in.
        new_wrist_depth_m: wrist depth to move to, metres (> 0).
    """
    if not np.isfinite(new_wrist_depth_m) or new_wrist_depth_m <= 0:
        raise ValueError(f"new_wrist_depth_m: must be a finite depth > 0, got {new_wrist_depth_m}")
    k = _check_matrix(camera_matrix)
    points = np.asarray(points_m, dtype=np.float64)
    if isinstance(wrist_index_or_point, (int, np.integer)):
        wrist = points[int(wrist_index_or_point)]
    else:
        wrist = np.asarray(wrist_index_or_point, dtype=np.float64).reshape(3)
    depth = new_wrist_depth_m + (points[..., 2] - wrist[2])
    return back_project(project(points, k), depth, k)
