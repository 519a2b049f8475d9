"""Single-hand crops and mirroring keep 2D, masks, 3D and MANO labels consistent."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from smhr_core.camera import project, virtual_intrinsics
from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from training import sample as S
from training.augment import (
    CropConfig,
    HandRecord,
    apply_affine,
    crop_affine,
    crop_single_hand,
    flip_record,
    sample_rng,
    single_hand_sample,
    warp_image,
)
from training.synthetic import SceneConfig, SceneGenerator

R = 128
BONES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10)]


@pytest.fixture(scope="module")
def hand_model() -> HandModel:
    return HandModel.from_directory(open_hand_directory())


@pytest.fixture(scope="module")
def record(hand_model: HandModel) -> HandRecord:
    config = SceneConfig(resolution=R, min_hands=1, max_hands=1, hand_size=(0.4, 0.5))
    scene = SceneGenerator(config, hand_model).scene(7)
    return HandRecord(
        image_bgr=scene.image_bgr,
        hands=tuple(hand.label() for hand in scene.hands),
        mask=scene.mask,
        camera_matrix=scene.camera_matrix,
        name="scene 7",
    )


def _forward(model: HandModel, label: S.HandLabel) -> np.ndarray:
    with torch.no_grad():
        out = model(
            torch.from_numpy(label.mano_pose[None, :3]),
            torch.from_numpy(label.mano_pose[None, 3:]),
            torch.from_numpy(label.mano_betas[None]),
            torch.zeros(1, 3),
            torch.tensor([label.is_right]),
        )
    return out.joints[0].numpy()


def _bones(joints: np.ndarray) -> np.ndarray:
    return np.array([np.linalg.norm(joints[a] - joints[b]) for a, b in BONES])


def test_affine_and_warp_share_the_pixel_convention() -> None:
    image = np.zeros((40, 40), np.float32)
    image[10, 20] = 1.0  # pixel (u, v) = (20, 10), centre (20.5, 10.5)
    affine = crop_affine(np.array([20.0, 20.0]), 20.0, 0.3, 80)
    warped = warp_image(image, affine, 80)
    peak = np.unravel_index(np.argmax(warped), warped.shape)
    expected = apply_affine(affine, np.array([20.5, 10.5]))
    assert abs(peak[1] + 0.5 - expected[0]) <= 1.0 and abs(peak[0] + 0.5 - expected[1]) <= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crop_keeps_2d_and_3d_consistent(record: HandRecord, seed: int) -> None:
    image, mask, label = crop_single_hand(record, sample_rng(seed))
    k_v = virtual_intrinsics(224)
    assert image.shape == (224, 224, 3) and mask.shape == (224, 224)
    np.testing.assert_allclose(project(label.joints_3d, k_v), label.keypoints_px, atol=1e-3)
    np.testing.assert_allclose(
        project(label.vertices_3d, k_v)[:50],
        apply_affine(
            crop_affine_from(record, label),
            project(record.hands[0].vertices_3d, record.camera_matrix),
        )[:50],
        atol=1e-3,
    )
    # The hand keeps its metric size. Exact 2D and kept relative depths stretch points off the
    # root's depth a little when the crop magnifies (about 2x here): a few percent, up to ~9 %
    # for the bones that reach furthest in depth.
    np.testing.assert_allclose(_bones(label.joints_3d), _bones(record.hands[0].joints_3d), rtol=0.1)
    # The keypoints land on the warped hand mask.
    on_hand = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    uv = np.floor(label.keypoints_px).astype(int)
    inside = (uv >= 0).all(axis=1) & (uv < 224).all(axis=1)
    assert inside.all()
    assert on_hand[uv[:, 1], uv[:, 0]].mean() > 0.9


def crop_affine_from(record: HandRecord, label: S.HandLabel) -> np.ndarray:
    """The affine that took the record's keypoints to `label`'s (least squares, exact here)."""
    source = record.hands[0].keypoints_px.astype(np.float64)
    target = label.keypoints_px.astype(np.float64)
    design = np.concatenate([source, np.ones((21, 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return solution.T


def test_crop_rotation_turns_the_mano_orientation(
    record: HandRecord, hand_model: HandModel
) -> None:
    _, _, label = crop_single_hand(record, sample_rng(1))  # turns by 36 degrees
    expected = label.joints_3d - label.joints_3d[9]
    joints = _forward(hand_model, label)
    turned = np.abs((joints - joints[9]) - expected).max()
    # Same hand up to the crop's perspective change (about 2x magnification here): within 1 cm
    # root-relative, far closer than with the orientation left as it was.
    assert turned < 0.01
    kept = _forward(hand_model, replace(label, mano_pose=record.hands[0].mano_pose))
    assert np.abs((kept - kept[9]) - expected).max() > 2 * turned
    untouched = _forward(hand_model, record.hands[0])
    original = record.hands[0].joints_3d
    assert np.abs((untouched - untouched[9]) - (original - original[9])).max() < 1e-5


def test_crop_size_and_centre_follow_the_spec(record: HandRecord) -> None:
    config = CropConfig(max_rotation_deg=0.0, centre_jitter_px=0.0)
    fractions = []
    for seed in range(8):
        _, _, label = crop_single_hand(record, sample_rng(seed), config)
        box = np.concatenate([label.keypoints_px.min(0), label.keypoints_px.max(0)])
        fractions.append((box[2:] - box[:2]).max() / 224)
        np.testing.assert_allclose((box[:2] + box[2:]) / 2, [112, 112], atol=1e-3)
    assert min(fractions) >= 0.3 - 1e-6 and max(fractions) <= 0.6 + 1e-6
    assert max(fractions) - min(fractions) > 0.05
    _, _, centred = crop_single_hand(record, None, config)
    box = np.concatenate([centred.keypoints_px.min(0), centred.keypoints_px.max(0)])
    assert (box[2:] - box[:2]).max() / 224 == pytest.approx(0.45, abs=1e-4)


def test_flip_mirrors_image_labels_and_mano(record: HandRecord, hand_model: HandModel) -> None:
    flipped = flip_record(record)
    hand, original = flipped.hands[0], record.hands[0]
    assert hand.is_right != original.is_right
    assert np.array_equal(flipped.image_bgr, record.image_bgr[:, ::-1])
    np.testing.assert_allclose(
        project(hand.joints_3d, flipped.camera_matrix), hand.keypoints_px, atol=1e-3
    )
    on_hand = cv2.dilate(flipped.mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    uv = np.floor(hand.keypoints_px).astype(int)
    assert on_hand[uv[:, 1], uv[:, 0]].mean() > 0.9
    # The open model's left hand is the mirror of its right: mirrored MANO gives the mirror.
    joints = _forward(hand_model, hand)
    mirrored = original.joints_3d * np.array([-1.0, 1.0, 1.0])
    error = np.abs((joints - joints[0]) - (mirrored - mirrored[0])).max(axis=1)
    assert error[12] < 2e-3  # the left model reads the middle fingertip at vertex 445, not 444
    assert np.delete(error, 12).max() < 1e-4
    twice = flip_record(flipped)
    np.testing.assert_allclose(twice.hands[0].mano_pose, original.mano_pose)
    np.testing.assert_allclose(twice.camera_matrix, record.camera_matrix)


def test_single_hand_sample_is_a_valid_deterministic_sample(record: HandRecord) -> None:
    first = single_hand_sample(record, sample_rng(3))
    S.validate_sample(first, 224)
    torch.testing.assert_close(first, single_hand_sample(record, sample_rng(3)))
    assert not torch.equal(first[S.IMAGE], single_hand_sample(record, sample_rng(4))[S.IMAGE])
    kp = first[S.KEYPOINTS_PX][0].numpy()
    centre = (kp.min(0) + kp.max(0)) / 2
    x, y = np.floor(centre / 4).astype(int)
    assert int(first[S.IND][0]) == y * 56 + x
    assert first[S.HAS_3D][0] == 1 and first[S.HAS_MASK] == 1
    torch.manual_seed(0)
    drawn = sample_rng().integers(0, 1000, size=3)
    torch.manual_seed(0)
    assert np.array_equal(drawn, sample_rng().integers(0, 1000, size=3))


def test_crop_without_camera_drops_3d_and_errors_name_the_record(record: HandRecord) -> None:
    no_camera = HandRecord(record.image_bgr, record.hands, record.mask, None, "no K")
    _, _, label = crop_single_hand(no_camera, sample_rng(0))
    assert label.joints_3d is None and label.mano_pose is not None
    empty = HandRecord(record.image_bgr, (), None, None, "FreiHAND training sample 12")
    with pytest.raises(ValueError, match="FreiHAND training sample 12: no hand"):
        crop_single_hand(empty, None)
    hidden = S.HandLabel(True, record.hands[0].keypoints_px, keypoints_vis=np.zeros(21))
    with pytest.raises(ValueError, match="sample 5: hand has no labelled keypoint"):
        crop_single_hand(HandRecord(record.image_bgr, (hidden,), name="sample 5"), None)
