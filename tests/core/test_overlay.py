"""Overlay drawing: where pixels change, colours, depth order, and hands off-image or behind."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from smhr_core.overlay import FREIHAND_BONES, MESH_COLOURS_BGR, draw_hands, draw_mesh
from smhr_core.results import Hand, Handedness

K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
SIZE = (240, 320)


@pytest.fixture(scope="module")
def hand_model():
    return HandModel.from_directory(open_hand_directory())


def _project(points: np.ndarray) -> np.ndarray:
    return points[:, :2] / points[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]


def _hand(model, centre_m, is_right=True, with_vertices=True, score=0.9) -> Hand:
    # Back of the hand towards the camera, fingers up in the image (columns: images of x, y, z).
    finger_up = [0.0, 1.0, 0.0] if is_right else [0.0, -1.0, 0.0]
    rotation = np.array([finger_up, [0.0, 0.0, -1.0], np.cross(finger_up, [0.0, 0.0, -1.0])]).T
    orient = torch.tensor(cv2.Rodrigues(rotation)[0].reshape(1, 3), dtype=torch.float32)
    out = model(
        orient, torch.zeros(1, 45), torch.zeros(1, 10), torch.zeros(1, 3),
        torch.tensor([is_right]),
    )  # fmt: skip
    vertices = out.vertices[0].numpy().astype(np.float64)
    shift = np.asarray(centre_m) - vertices.mean(axis=0)
    vertices += shift
    joints = (out.joints[0].numpy() + shift).astype(np.float32)
    keypoints = _project(joints.astype(np.float64)).astype(np.float32)
    box = np.concatenate([keypoints.min(axis=0), keypoints.max(axis=0)]).astype(np.float32)
    return Hand(
        score=score,
        handedness=Handedness.RIGHT if is_right else Handedness.LEFT,
        handedness_probability=0.95,
        joints_m=joints,
        keypoints_px=keypoints,
        global_orient=orient[0].numpy(),
        hand_pose=np.zeros(45, np.float32),
        betas=np.zeros(10, np.float32),
        translation_m=shift.astype(np.float32),
        box_px=box,
        centre_px=keypoints[9],
        vertices_m=vertices.astype(np.float32) if with_vertices else None,
        faces=model.faces(is_right),
    )


def _background() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(*SIZE, 3), dtype=np.uint8)


def _changed(a, b):
    return np.any(a != b, axis=2)


def test_pixels_change_only_near_the_hand(hand_model):
    image = _background()
    original = image.copy()
    hand = _hand(hand_model, [0.0, 0.0, 0.6])
    out = draw_hands(image, [hand], K, draw_labels=False)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, original)  # input untouched
    changed = _changed(out, image)
    uv = np.vstack([_project(hand.vertices_m.astype(np.float64)), hand.keypoints_px])
    u_min, v_min = np.floor(uv.min(axis=0)).astype(int) - 4
    u_max, v_max = np.ceil(uv.max(axis=0)).astype(int) + 4
    inside = np.zeros(SIZE, dtype=bool)
    inside[max(v_min, 0) : v_max + 1, max(u_min, 0) : u_max + 1] = True
    assert changed.sum() > 0.2 * inside.sum()  # the hand covers a good part of its box
    assert not (changed & ~inside).any()


def test_label_drawn_near_the_box(hand_model):
    image = _background()
    hand = _hand(hand_model, [0.0, 0.02, 0.6])
    without = draw_hands(image, [hand], K, draw_labels=False)
    with_label = draw_hands(image, [hand], K)
    rows, cols = np.nonzero(_changed(with_label, without))
    assert len(rows) > 50
    assert abs(cols.min() - hand.box_px[0]) < 10
    assert rows.max() <= hand.box_px[1] + 10


def test_left_and_right_colours_differ_and_alpha_blends(hand_model):
    black = np.zeros((*SIZE, 3), np.uint8)
    right = _hand(hand_model, [0.0, 0.0, 0.6], is_right=True)
    left = _hand(hand_model, [0.0, 0.0, 0.6], is_right=False)
    draw = dict(draw_skeleton=False, draw_labels=False, mesh_alpha=1.0)
    right_img = draw_hands(black, [right], K, **draw)
    left_img = draw_hands(black, [left], K, **draw)
    mean_right = right_img[_changed(right_img, black)].mean(axis=0)
    mean_left = left_img[_changed(left_img, black)].mean(axis=0)
    # Right is orange-ish (red channel highest), left bluish (blue channel highest).
    assert mean_right[2] > mean_right[0] + 40
    assert mean_left[0] > mean_left[2] + 40
    half = draw_hands(black, [right], K, draw_skeleton=False, draw_labels=False, mesh_alpha=0.5)
    covered = _changed(right_img, black)
    ratio = half[covered].astype(float).sum() / right_img[covered].astype(float).sum()
    assert 0.45 < ratio < 0.55
    none = draw_hands(black, [right], K, draw_skeleton=False, draw_labels=False, mesh_alpha=0.0)
    np.testing.assert_array_equal(none, black)


def test_nearer_mesh_is_painted_over_farther(hand_model):
    black = np.zeros((*SIZE, 3), np.uint8)
    near_left = _hand(hand_model, [0.0, 0.0, 0.45], is_right=False)
    far_right = _hand(hand_model, [0.01, 0.0, 0.7], is_right=True)
    options = dict(draw_skeleton=False, draw_labels=False, mesh_alpha=1.0)
    for order in ([near_left, far_right], [far_right, near_left]):
        out = draw_hands(black, order, K, **options)
        centre = out[int(K[1, 2]), int(K[0, 2])].astype(float)
        assert centre[0] > centre[2] + 40, (order, centre)  # left (bluish) on top


def test_hand_without_vertices_gets_skeleton_only(hand_model):
    image = _background()
    hand = _hand(hand_model, [0.0, 0.0, 0.6], with_vertices=False)
    assert hand.vertices_m is None
    out = draw_hands(image, [hand], K, draw_labels=False)
    changed = _changed(out, image)
    assert changed.sum() > 100
    rows, cols = np.nonzero(changed)
    points = np.stack([cols, rows], axis=1).astype(float)
    # Every changed pixel is within a few pixels of a bone segment.
    kp = hand.keypoints_px.astype(float)
    distances = []
    for i, j in FREIHAND_BONES:
        a, b = kp[i], kp[j]
        t = np.clip(((points - a) @ (b - a)) / max((b - a) @ (b - a), 1e-9), 0.0, 1.0)
        distances.append(np.linalg.norm(points - (a + t[:, None] * (b - a)), axis=1))
    assert np.min(distances, axis=0).max() < 5.0


def test_partly_outside_and_behind_the_camera(hand_model):
    image = _background()
    off_side = _hand(hand_model, [0.25, 0.0, 0.6])  # about half outside on the right
    straddling = _hand(hand_model, [0.0, 0.0, 0.01])  # crosses the camera plane
    behind = _hand(hand_model, [0.0, 0.0, -0.5])
    assert (straddling.vertices_m[:, 2] <= 0).any() and (straddling.vertices_m[:, 2] > 0).any()
    out = draw_hands(image, [off_side, straddling, behind], K)
    assert out.shape == image.shape and out.dtype == np.uint8
    only_behind = draw_hands(image, [behind], K, draw_labels=False)
    np.testing.assert_array_equal(only_behind, image)
    only_off = draw_hands(image, [off_side], K, draw_labels=False)
    assert _changed(only_off, image)[:, -20:].any()


def test_draw_mesh_and_input_validation(hand_model):
    hand = _hand(hand_model, [0.0, 0.0, 0.6])
    black = np.zeros((*SIZE, 3), np.uint8)
    out = draw_mesh(black, hand.vertices_m, hand.faces, K, MESH_COLOURS_BGR[Handedness.LEFT], 1.0)
    assert _changed(out, black).sum() > 1000
    with pytest.raises(ValueError, match="uint8"):
        draw_hands(black.astype(np.float32), [hand], K)
    with pytest.raises(ValueError, match="3x3"):
        draw_hands(black, [hand], np.eye(4))
    with pytest.raises(ValueError, match="mesh_alpha"):
        draw_hands(black, [hand], K, mesh_alpha=1.5)
