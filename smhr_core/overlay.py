"""Draw reconstructed hands over an image: shaded meshes, 21-joint skeletons and labels (OpenCV)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from smhr_core.results import Hand, Handedness

FREIHAND_BONES = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (0, 5), (5, 6), (6, 7), (7, 8),
    (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16),
    (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
"""Bones of the FreiHAND joint order: thumb, index, middle, ring, pinky chains from the wrist."""

FINGER_COLOURS_BGR = (
    (60, 60, 230),  # thumb
    (60, 200, 240),  # index
    (80, 210, 80),  # middle
    (230, 160, 60),  # ring
    (200, 80, 200),  # pinky
)
MESH_COLOURS_BGR = {
    Handedness.LEFT: (235, 170, 110),
    Handedness.RIGHT: (110, 170, 235),
}
"""Base mesh colour per side (left bluish, right orange-ish)."""

_NEAR_M = 1e-3
"""Points closer to the camera plane than this (metres) are not projected."""
_SUBPIXEL_BITS = 4


def _check_image(image_bgr: np.ndarray) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8:
        raise ValueError("image_bgr must be a numpy uint8 array of shape (H, W, 3)")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"image_bgr must have shape (H, W, 3), got {image_bgr.shape}")


def _camera(camera_matrix: np.ndarray) -> np.ndarray:
    k = np.asarray(camera_matrix, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f"camera_matrix must be 3x3, got shape {k.shape}")
    return k


def draw_mesh(
    image_bgr: np.ndarray,
    vertices_m: np.ndarray,
    faces: np.ndarray,
    camera_matrix: np.ndarray,
    colour_bgr: tuple[int, int, int] = (110, 170, 235),
    alpha: float = 0.6,
) -> np.ndarray:
    """Draw one shaded mesh (camera optical frame, metres) over a copy of `image_bgr`.

    Front-facing triangles in front of the camera are painted back to front with Lambert
    shading (light from the camera) and blended with opacity `alpha`.
    """
    return _draw_meshes(image_bgr, [(vertices_m, faces, colour_bgr)], _camera(camera_matrix), alpha)


def _draw_meshes(
    image_bgr: np.ndarray,
    meshes: Sequence[tuple[np.ndarray, np.ndarray, tuple[int, int, int]]],
    k: np.ndarray,
    alpha: float,
) -> np.ndarray:
    _check_image(image_bgr)
    out = image_bgr.copy()
    height, width = out.shape[:2]
    limit = 4.0 * max(height, width)
    polygons, colours, depths = [], [], []
    for vertices_m, faces, colour in meshes:
        v = np.asarray(vertices_m, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        tri = v[f]  # (F, 3, 3)
        in_front = np.all(tri[:, :, 2] > _NEAR_M, axis=1)
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        centre = tri.mean(axis=1)
        facing = np.einsum("ij,ij->i", normal, centre) < 0.0
        keep = in_front & facing
        tri, normal, centre = tri[keep], normal[keep], centre[keep]
        if len(tri) == 0:
            continue
        z = tri[:, :, 2:3]
        uv = (tri[:, :, :2] / z) @ k[:2, :2].T + k[:2, 2]
        on_canvas = np.all(np.abs(uv) < limit, axis=(1, 2))
        uv, normal, centre = uv[on_canvas], normal[on_canvas], centre[on_canvas]
        unit_n = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        to_camera = -centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)
        lambert = np.clip(np.einsum("ij,ij->i", unit_n, to_camera), 0.0, 1.0)
        shade = 0.35 + 0.65 * lambert
        polygons.append(uv)
        colours.append(shade[:, None] * np.asarray(colour, dtype=np.float64)[None, :])
        depths.append(centre[:, 2])
    if not polygons:
        return out
    uv = np.concatenate(polygons)
    colour = np.concatenate(colours)
    order = np.argsort(-np.concatenate(depths), kind="stable")
    layer = out.copy()
    mask = np.zeros((height, width), dtype=np.uint8)
    points = np.round(uv * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    for i in order:
        c = tuple(int(x) for x in colour[i])
        cv2.fillConvexPoly(layer, points[i], c, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
        cv2.fillConvexPoly(mask, points[i], 255, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    covered = mask > 0
    blended = (1.0 - alpha) * out[covered].astype(np.float64) + alpha * layer[covered]
    out[covered] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return out


def _draw_skeleton(image: np.ndarray, hand: Hand, thickness: int) -> None:
    keypoints = np.asarray(hand.keypoints_px, dtype=np.float64)
    valid = np.all(np.isfinite(keypoints), axis=1) & (np.asarray(hand.joints_m)[:, 2] > _NEAR_M)
    height, width = image.shape[:2]
    valid &= np.all(np.abs(keypoints) < 4.0 * max(height, width), axis=1)
    scale = 1 << _SUBPIXEL_BITS
    px = [
        (round(float(u) * scale), round(float(v) * scale)) if ok else (0, 0)
        for (u, v), ok in zip(keypoints, valid, strict=True)
    ]
    for b, (i, j) in enumerate(FREIHAND_BONES):
        if valid[i] and valid[j]:
            colour = FINGER_COLOURS_BGR[b // 4]
            cv2.line(image, px[i], px[j], colour, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
    for j in range(len(keypoints)):
        if valid[j]:
            colour = (255, 255, 255) if j == 0 else FINGER_COLOURS_BGR[(j - 1) // 4]
            radius = (thickness + 1) * scale
            cv2.circle(image, px[j], radius, colour, -1, cv2.LINE_AA, _SUBPIXEL_BITS)


def _draw_label(image: np.ndarray, hand: Hand) -> None:
    side = "right" if hand.handedness == Handedness.RIGHT else "left"
    text = f"{side} {hand.score:.2f}"
    height, width = image.shape[:2]
    font_scale = max(0.4, min(height, width) / 800.0)
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    box = np.asarray(hand.box_px, dtype=np.float64)
    if not np.all(np.isfinite(box)):
        return
    x = int(np.clip(box[0], 0, max(0, width - tw - 4)))
    y = int(np.clip(box[1] - 4, th + 4, max(th + 4, height - baseline - 1)))
    colour = MESH_COLOURS_BGR[hand.handedness]
    cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + baseline), colour, -1)
    cv2.putText(image, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1)


def draw_hands(
    image_bgr: np.ndarray,
    hands: Sequence[Hand],
    camera_matrix: np.ndarray,
    mesh_alpha: float = 0.6,
    draw_mesh: bool = True,
    draw_skeleton: bool = True,
    draw_labels: bool = True,
) -> np.ndarray:
    """Return a copy of `image_bgr` with the hands drawn over it.

    Meshes (`Hand.vertices_m`, camera optical frame, metres) are projected with `camera_matrix`
    (pixels of this image) and painted back to front with Lambert shading, blended with
    `mesh_alpha`; left and right hands get distinct colours. Skeletons use `Hand.keypoints_px`
    (pixels of this image) with the FreiHAND bones. Hands without vertices get the skeleton
    only. Points at or behind the camera plane are skipped.
    """
    _check_image(image_bgr)
    k = _camera(camera_matrix)
    if not 0.0 <= mesh_alpha <= 1.0:
        raise ValueError(f"mesh_alpha must be within [0, 1], got {mesh_alpha}")
    out = image_bgr.copy()
    if draw_mesh:
        meshes = [
            (hand.vertices_m, hand.faces, MESH_COLOURS_BGR[hand.handedness])
            for hand in hands
            if hand.vertices_m is not None
        ]
        if meshes:
            out = _draw_meshes(out, meshes, k, mesh_alpha)
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for hand in hands:
        if draw_skeleton:
            _draw_skeleton(out, hand, thickness)
        if draw_labels:
            _draw_label(out, hand)
    return out
