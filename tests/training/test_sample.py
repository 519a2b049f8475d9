"""The batch contract: shapes, CenterNet targets, centres, validation errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from smhr_core.preprocess import normalise
from training import sample as S

R = 128
W = R // 4


def _hand(offset: float, is_right: bool = True, **extra: np.ndarray) -> S.HandLabel:
    keypoints = np.random.default_rng(int(offset)).uniform(0, 24, size=(21, 2)) + offset
    return S.HandLabel(is_right=is_right, keypoints_px=keypoints.astype(np.float32), **extra)


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(R, R, 3), dtype=np.uint8)


def test_empty_sample_follows_contract_and_collates() -> None:
    sample = S.empty_sample(R, 3)
    S.validate_sample(sample)
    assert set(sample) == set(S.KEYS)
    batch = default_collate([sample, S.empty_sample(R, 3)])
    assert batch[S.KEYPOINTS_PX].shape == (2, 3, 21, 2)
    assert batch[S.HM].shape == (2, 1, W, W)
    assert batch[S.HAS_MASK].shape == (2,)


def test_gaussian_radius_matches_centernet_values() -> None:
    # CenterNet's formula (r = (b + sqrt(b^2 - 4ac)) / 2 per case, the smallest wins), by hand:
    # 10 x 10: case 3 has a = 2.8, b = -28, c = -30 -> (-28 + sqrt(1120)) / 2.
    assert S.gaussian_radius(10, 10) == pytest.approx((-28 + 1120**0.5) / 2, abs=1e-9)
    # 20 x 5: case 3 has b = -35, c = -30 -> (-35 + sqrt(1561)) / 2.
    assert S.gaussian_radius(20, 5) == pytest.approx((-35 + 1561**0.5) / 2, abs=1e-9)
    assert S.gaussian_radius(10, 10, 0.5) > S.gaussian_radius(10, 10, 0.7)


def test_draw_gaussian_peak_radius_and_max_merge() -> None:
    heat = np.zeros((16, 16), np.float32)
    S.draw_gaussian(heat, (5, 6), 2)
    assert heat[6, 5] == 1.0
    assert heat[6, 7] == pytest.approx(np.exp(-4 / (2 * (5 / 6) ** 2)), rel=1e-5)
    assert heat[6, 8] == 0.0 and heat[9, 5] == 0.0
    S.draw_gaussian(heat, (6, 6), 2)
    assert heat[6, 5] == 1.0 and heat[6, 6] == 1.0  # overlapping peaks keep the maximum
    S.draw_gaussian(heat, (0, 15), 3)  # clipped at the border without error
    assert heat[15, 0] == 1.0


def test_make_sample_targets_centres_and_slots() -> None:
    right, left = _hand(10), _hand(70, is_right=False)
    mask = np.zeros((R, R), np.float32)
    mask[20:40, 20:40] = 1
    sample = S.make_sample(_image(), [right, left], mask=mask, max_hands=3)
    S.validate_sample(sample)
    for slot, hand in enumerate((right, left)):
        centre = hand.keypoints_px.mean(axis=0)
        x, y = np.floor(centre / 4).astype(int)
        assert sample[S.IND][slot] == y * W + x
        assert sample[S.HM][0, y, x] == 1.0
        assert sample[S.HANDMAP][int(hand.is_right), y, x] == 1.0
        assert sample[S.HANDMAP][1 - int(hand.is_right), y, x] < 1.0
    assert sample[S.VALID].tolist() == [1, 1, 0]
    assert sample[S.IS_RIGHT].tolist() == [1, 0, 0]
    assert sample[S.HAS_MASK] == 1 and sample[S.MASK].sum() == 400
    assert sample[S.HAS_MANO].sum() == 0 and sample[S.HAS_3D].sum() == 0
    # Box centre for single hands.
    boxed = S.make_sample(_image(), [right], centre_mode=S.CENTRE_BOX)
    kp = right.keypoints_px
    centre = (kp.min(axis=0) + kp.max(axis=0)) / 2
    x, y = np.floor(centre / 4).astype(int)
    assert boxed[S.IND][0] == y * W + x


def test_make_sample_images_follow_preprocessing() -> None:
    image = _image(3)
    sample = S.make_sample(image, [])
    torch.testing.assert_close(sample[S.IMAGE], normalise(image[None])[0])
    rgb = torch.from_numpy(image[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(sample[S.IMAGE_RGB], rgb)
    assert sample[S.VALID].sum() == 0 and sample[S.HM].sum() == 0


def test_centre_ignores_unlabelled_and_outside_keypoints() -> None:
    kp = np.full((21, 2), 50.0, np.float32)
    kp[0] = (-30, 50)  # outside the image
    kp[1] = (120, 120)  # not labelled
    vis = np.ones(21, np.float32)
    vis[1] = 0
    sample = S.make_sample(_image(), [S.HandLabel(True, kp, keypoints_vis=vis)])
    assert sample[S.IND][0] == (50 // 4) * W + 50 // 4
    assert sample[S.KEYPOINTS_VIS][0, 1] == 0 and sample[S.KEYPOINTS_VIS][0, 0] == 1
    # A hand with no labelled keypoint inside the image gets no slot.
    gone = S.make_sample(_image(), [S.HandLabel(True, kp - 200)])
    assert gone[S.VALID].sum() == 0


def test_three_d_labels_and_slot_limit() -> None:
    labels = dict(
        mano_pose=np.full(48, 0.1, np.float32),
        mano_betas=np.full(10, 0.2, np.float32),
        joints_3d=np.full((21, 3), 0.5, np.float32),
        vertices_3d=np.full((778, 3), 0.6, np.float32),
    )
    hands = [_hand(10 + 20 * i, **labels) for i in range(3)]
    sample = S.make_sample(_image(), hands, max_hands=2)
    S.validate_sample(sample)
    assert sample[S.VALID].tolist() == [1, 1]
    assert sample[S.HAS_3D].tolist() == [1, 1] and sample[S.HAS_MANO].tolist() == [1, 1]
    assert sample[S.VERTICES_3D][1].mean() == pytest.approx(0.6)
    joints_only = S.make_sample(_image(), [_hand(10, joints_3d=labels["joints_3d"])])
    assert joints_only[S.HAS_3D][0] == 0 and joints_only[S.JOINTS_3D][0].mean() > 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (S.IND, torch.tensor([W * W, 0, 0, 0]), "cell indices"),
        (S.MASK, torch.full((1, R, R), 2.0), "mask"),
        (S.VALID, torch.tensor([0.5, 0, 0, 0]), "valid"),
        (S.KEYPOINTS_PX, torch.zeros(4, 20, 2), "keypoints_px: expected shape"),
        (S.HM, torch.zeros(1, W, W, dtype=torch.float64), "dtype"),
        (S.JOINTS_3D, torch.full((4, 21, 3), float("nan")), "NaN"),
        (S.VERTICES_3D, torch.ones(4, 778, 3), "vertices_3d: must be zero"),
    ],
)
def test_validate_sample_names_the_broken_key(key: str, value: torch.Tensor, message: str) -> None:
    sample = S.empty_sample(R)
    sample[key] = value
    with pytest.raises(S.SampleError, match=message):
        S.validate_sample(sample)


def test_validate_sample_reports_missing_and_extra_keys() -> None:
    sample = S.empty_sample(R)
    del sample[S.HANDMAP]
    sample["heatmap"] = torch.zeros(1)
    with pytest.raises(S.SampleError, match=r"missing \['handmap'\].*unexpected \['heatmap'\]"):
        S.validate_sample(sample)


def test_hand_label_rejects_bad_shapes() -> None:
    with pytest.raises(S.SampleError, match="keypoints_px"):
        S.HandLabel(True, np.zeros((20, 2)))
    with pytest.raises(S.SampleError, match="together"):
        S.HandLabel(True, np.zeros((21, 2)), mano_pose=np.zeros(48))
