"""FreiHAND, HO3D and reference-pickle readers on tiny trees in each release layout (made from
rendered synthetic hands), and on-the-fly multi-hand composition."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from smhr_core.camera import project, virtual_intrinsics
from smhr_core.hand_model import FREIHAND_FROM_MANO, HandModel
from smhr_core.open_hand import open_hand_directory
from training import sample as S
from training.augment import CropConfig, HandRecord
from training.datasets.composition import ComposedHands, CompositionConfig
from training.datasets.freihand import FreiHAND
from training.datasets.ho3d import HO3D, OPENGL_TO_OPENCV
from training.datasets.reference_pickle import PickleError, ReferencePickle, load_pickle
from training.synthetic import Scene, SceneConfig, SceneGenerator

R = 128
HANDS_MEAN = np.linspace(-0.3, 0.4, 45).astype(np.float32)
"""A made-up MANO hands_mean: FreiHAND-style labels store pose - mean."""
CROP = CropConfig(output_size=128)


@pytest.fixture(scope="module")
def hand_model() -> HandModel:
    return HandModel.from_directory(open_hand_directory())


@pytest.fixture(scope="module")
def scenes(hand_model: HandModel) -> list[Scene]:
    config = SceneConfig(
        resolution=R, min_hands=1, max_hands=1, hand_size=(0.45, 0.6), left_probability=0.0
    )
    generator = SceneGenerator(config, hand_model)
    return [generator.scene(seed) for seed in (3, 4, 5)]


def _write_jpg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])


def _mano61(scene: Scene) -> list[float]:
    hand = scene.hands[0]
    pose = np.concatenate([hand.global_orient, hand.hand_pose - HANDS_MEAN])
    return np.concatenate([pose, hand.betas, hand.translation_m]).tolist()


@pytest.fixture(scope="module")
def freihand_root(tmp_path_factory: pytest.TempPathFactory, scenes: list[Scene]) -> Path:
    root = tmp_path_factory.mktemp("FreiHAND_pub_v2")
    count = len(scenes)
    for i, scene in enumerate(scenes):
        _write_jpg(root / "training" / "rgb" / f"{i:08d}.jpg", scene.image_bgr)
        darker = (scene.image_bgr * 0.7).astype(np.uint8)  # appearance version 1
        _write_jpg(root / "training" / "rgb" / f"{count + i:08d}.jpg", darker)
        _write_jpg(root / "training" / "mask" / f"{i:08d}.jpg", scene.mask * 255)
    (root / "training_K.json").write_text(json.dumps([s.camera_matrix.tolist() for s in scenes]))
    (root / "training_xyz.json").write_text(
        json.dumps([s.hands[0].joints_m.tolist() for s in scenes])
    )
    (root / "training_mano.json").write_text(json.dumps([[_mano61(s)] for s in scenes]))
    (root / "training_verts.json").write_text(
        json.dumps([s.hands[0].vertices_m.tolist() for s in scenes])
    )
    for i, scene in enumerate(scenes[:2]):
        _write_jpg(root / "evaluation" / "rgb" / f"{i:08d}.jpg", scene.image_bgr)
    (root / "evaluation_K.json").write_text(
        json.dumps([s.camera_matrix.tolist() for s in scenes[:2]])
    )
    (root / "evaluation_xyz.json").write_text(
        json.dumps([s.hands[0].joints_m.tolist() for s in scenes[:2]])
    )
    return root


def _on_mask(keypoints: np.ndarray, mask: np.ndarray, grow: int = 5) -> float:
    near = cv2.dilate((mask > 0.5).astype(np.uint8), np.ones((grow, grow), np.uint8))
    uv = np.floor(keypoints).astype(int)
    inside = (uv >= 0).all(axis=1) & (uv[:, 0] < mask.shape[1]) & (uv[:, 1] < mask.shape[0])
    uv = uv[inside]
    return float(near[uv[:, 1], uv[:, 0]].sum()) / len(keypoints)


def test_freihand_records_match_the_rendered_hands(
    freihand_root: Path, scenes: list[Scene]
) -> None:
    data = FreiHAND(freihand_root, versions=(0, 1), hands_mean=HANDS_MEAN, load_vertices=True)
    assert len(data) == 6
    for index in (1, 4):  # sample 4 is version 1 of scene 1
        record = data.record(index)
        hand, truth = record.hands[0], scenes[1].hands[0]
        np.testing.assert_allclose(hand.keypoints_px, truth.keypoints_px, atol=1e-3)
        np.testing.assert_allclose(hand.mano_pose[3:], truth.hand_pose, atol=1e-5)
        np.testing.assert_allclose(hand.vertices_3d, truth.vertices_m, atol=1e-6)
        assert _on_mask(hand.keypoints_px, record.mask) > 0.85
        assert np.abs(record.mask - scenes[1].mask).mean() < 0.01
    assert data.record(4).image_bgr.mean() < data.record(1).image_bgr.mean()
    assert "FreiHAND training sample 4" in data.record(4).name


def test_freihand_samples(freihand_root: Path) -> None:
    data = FreiHAND(freihand_root, versions=(0,), hands_mean=HANDS_MEAN, crop=CROP, seed=9)
    sample = data[2]
    S.validate_sample(sample, 128)
    torch.testing.assert_close(sample, data[2])
    assert sample[S.HAS_MANO][0] == 1 and sample[S.HAS_MASK] == 1
    assert sample[S.HAS_3D][0] == 0  # vertices not loaded
    assert _on_mask(sample[S.KEYPOINTS_PX][0].numpy(), sample[S.MASK][0].numpy()) > 0.85
    np.testing.assert_allclose(
        project(sample[S.JOINTS_3D][0].numpy(), virtual_intrinsics(128)),
        sample[S.KEYPOINTS_PX][0].numpy(),
        atol=1e-2,
    )
    without_mean = FreiHAND(freihand_root, versions=(0,), crop=CROP, augment=False)
    assert without_mean[0][S.HAS_MANO][0] == 0
    evaluation = FreiHAND(freihand_root, split="evaluation", crop=CROP, augment=False)
    assert len(evaluation) == 2 and evaluation.record(1).mask is None
    S.validate_sample(evaluation[1], 128)


def test_freihand_errors_name_files_and_samples(
    freihand_root: Path, tmp_path: Path, scenes: list[Scene]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("training_K.json", "training_xyz.json", "training_mano.json"):
        (broken / name).write_text((freihand_root / name).read_text())
    (broken / "training").symlink_to(freihand_root / "training", target_is_directory=True)
    xyz = json.loads((broken / "training_xyz.json").read_text())
    (broken / "training_xyz.json").write_text(json.dumps(xyz[:2]))
    with pytest.raises(
        ValueError, match=r"training_xyz\.json has 2 entries but training_K\.json has 3"
    ):
        FreiHAND(broken)
    (broken / "training_xyz.json").write_text(json.dumps(xyz))
    with pytest.raises(ValueError, match=r"holds 6 images .* need 12"):
        FreiHAND(broken, versions=(3,))
    with pytest.raises(FileNotFoundError, match=r"training_verts\.json"):
        FreiHAND(broken, load_vertices=True)
    bad_k = json.loads((broken / "training_K.json").read_text())
    bad_k[1] = [[1.0, 0.0], [0.0, 1.0]]
    (broken / "training_K.json").write_text(json.dumps(bad_k))
    with pytest.raises(
        ValueError, match=r"training_K\.json: entries do not all have the same shape"
    ):
        FreiHAND(broken)
    # A missing or corrupt image is reported with its sample index and path.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("training_K.json", "training_xyz.json"):
        (copy / name).write_text((freihand_root / name).read_text())
    for i, scene in enumerate(scenes):
        _write_jpg(copy / "training" / "rgb" / f"{i:08d}.jpg", scene.image_bgr)
    data = FreiHAND(copy, versions=(0,))
    (copy / "training" / "rgb" / "00000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"FreiHAND training sample 1: unreadable image .*01\.jpg"):
        data[1]
    (copy / "training" / "rgb" / "00000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample 2: missing image .*02\.jpg"):
        data.record(2)


@pytest.fixture(scope="module")
def ho3d_root(
    tmp_path_factory: pytest.TempPathFactory, scenes: list[Scene], hand_model: HandModel
) -> Path:
    root = tmp_path_factory.mktemp("HO3D_v3")
    order = np.argsort(FREIHAND_FROM_MANO)  # FreiHAND order -> HO3D (MANO + tips) order
    lines = []
    for i, scene in enumerate(scenes):
        hand = scene.hands[0]
        sequence, frame = f"SEQ{i % 2}", f"{i:04d}"
        lines.append(f"{sequence}/{frame}")
        _write_jpg(root / "train" / sequence / "rgb" / f"{frame}.jpg", scene.image_bgr)
        rotation, _ = cv2.Rodrigues(hand.global_orient.astype(np.float64))
        orient_gl, _ = cv2.Rodrigues(OPENGL_TO_OPENCV @ rotation)
        with torch.no_grad():
            rest = (
                hand_model(
                    torch.zeros(1, 3),
                    torch.zeros(1, 45),
                    torch.from_numpy(hand.betas[None]),
                    torch.zeros(1, 3),
                    torch.tensor([True]),
                )
                .rest_wrist[0]
                .numpy()
            )
        translation_gl = OPENGL_TO_OPENCV @ (hand.translation_m + rest) - rest
        meta = {
            "handPose": np.concatenate([orient_gl.reshape(3), hand.hand_pose]),
            "handBeta": hand.betas.astype(np.float64),
            "handTrans": translation_gl,
            "handJoints3D": (hand.joints_m @ OPENGL_TO_OPENCV)[order],
            "camMat": scene.camera_matrix,
            "objName": "006_mustard_bottle",
        }
        path = root / "train" / sequence / "meta" / f"{frame}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(meta, protocol=2))
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def test_ho3d_records_are_in_the_optical_frame_and_freihand_order(
    ho3d_root: Path, scenes: list[Scene], hand_model: HandModel
) -> None:
    data = HO3D(ho3d_root, hand_model=hand_model, crop=CROP, seed=1)
    assert len(data) == 3
    record = data.record(2)
    hand, truth = record.hands[0], scenes[2].hands[0]
    np.testing.assert_allclose(hand.joints_3d, truth.joints_m, atol=1e-6)
    np.testing.assert_allclose(hand.keypoints_px, truth.keypoints_px, atol=1e-3)
    np.testing.assert_allclose(hand.mano_pose[:3], truth.global_orient, atol=1e-5)
    np.testing.assert_allclose(hand.vertices_3d, truth.vertices_m, atol=1e-5)
    assert record.mask is None and "SEQ0/0002" in record.name
    sample = data[0]
    S.validate_sample(sample, 128)
    assert sample[S.HAS_3D][0] == 1 and sample[S.HAS_MASK] == 0
    without_model = HO3D(ho3d_root, crop=CROP, augment=False)
    assert without_model[1][S.HAS_3D][0] == 0 and without_model[1][S.HAS_MANO][0] == 1


def test_ho3d_errors_name_the_frame(ho3d_root: Path, tmp_path: Path, hand_model: HandModel) -> None:
    meta_path = ho3d_root / "train" / "SEQ1" / "meta" / "0001.pkl"
    meta = pickle.loads(meta_path.read_bytes())
    copy = tmp_path / "ho3d"
    (copy / "train" / "SEQ1" / "meta").mkdir(parents=True)
    (copy / "train" / "SEQ1" / "rgb").symlink_to(ho3d_root / "train" / "SEQ1" / "rgb")
    (copy / "train.txt").write_text("SEQ1/0001\nSEQ1/0003\n")
    (copy / "train" / "SEQ1" / "meta" / "0001.pkl").write_bytes(
        pickle.dumps(dict(meta, handPose=None), protocol=2)
    )
    data = HO3D(copy)
    with pytest.raises(ValueError, match=r"sample 0 \(SEQ1/0001\).*has no 'handPose'"):
        data.record(0)
    with pytest.raises(FileNotFoundError, match=r"sample 1 \(SEQ1/0003\): missing .*0003\.pkl"):
        data.record(1)
    shifted = dict(meta, handBeta=meta["handBeta"] + 1.5)
    (copy / "train" / "SEQ1" / "meta" / "0001.pkl").write_bytes(pickle.dumps(shifted))
    with pytest.raises(ValueError, match="mm off HO3D's labelled joints"):
        HO3D(copy, hand_model=hand_model).record(0)
    (copy / "train.txt").write_text("SEQ1\n")
    with pytest.raises(ValueError, match=r"train.txt line 1: expected '<sequence>/<frame>'"):
        HO3D(copy)


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory: pytest.TempPathFactory, scenes: list[Scene]) -> Path:
    root = tmp_path_factory.mktemp("smhr_reference")
    entries = []
    for i, scene in enumerate(scenes[:2]):
        hand = scene.hands[0]
        _write_jpg(
            root / "data" / "FreiHAND" / "training" / "rgb" / f"{i:08d}.jpg", scene.image_bgr
        )
        _write_jpg(
            root / "data" / "FreiHAND" / "training" / "mask" / f"{i:08d}.jpg", scene.mask * 255
        )
        entries.append(
            {
                "filepath": f"training/rgb/{i:08d}.jpg",
                "maskpath": f"training/mask/{i:08d}.jpg",
                "bboxes": np.array([[10.0, 10.0, 100.0, 100.0]]),
                "lms21": hand.keypoints_px.astype(np.float64),
                "K": scene.camera_matrix.reshape(9),
                "mano_coeff": np.array(_mano61(scene)).reshape(1, 61),
                "xyz": hand.joints_m,
                "handness": [1],
            }
        )
    (root / "cache").mkdir()
    (root / "cache" / "FreiHAND_train.pkl").write_bytes(pickle.dumps(entries, protocol=2))
    return root


def test_reference_pickle_records(reference_tree: Path, scenes: list[Scene]) -> None:
    data = ReferencePickle(
        reference_tree / "cache" / "FreiHAND_train.pkl",
        data_root=reference_tree / "data",
        hands_mean=HANDS_MEAN,
        crop=CROP,
        seed=0,
    )
    assert len(data) == 2
    record = data.record(1)
    hand, truth = record.hands[0], scenes[1].hands[0]
    np.testing.assert_allclose(hand.mano_pose[3:], truth.hand_pose, atol=1e-5)
    np.testing.assert_allclose(hand.joints_3d, truth.joints_m, atol=1e-6)
    assert hand.is_right and _on_mask(hand.keypoints_px, record.mask) > 0.85
    sample = data[1]
    S.validate_sample(sample, 128)
    assert sample[S.HAS_MANO][0] == 1 and sample[S.HAS_MASK] == 1


def test_reference_pickle_errors(reference_tree: Path, tmp_path: Path) -> None:
    entries = load_pickle(reference_tree / "cache" / "FreiHAND_train.pkl")
    broken = tmp_path / "FreiHAND_train.pkl"
    broken.write_bytes(pickle.dumps([entries[0], dict(entries[1], lms21=np.zeros(5))]))
    data = ReferencePickle(broken, data_root=reference_tree / "data")
    with pytest.raises(ValueError, match=r"FreiHAND_train\.pkl entry 1: field 'lms21'"):
        data.record(1)
    assert data.record(0).hands[0].mano_pose is None  # no hands_mean given
    del entries[0]["filepath"]
    broken.write_bytes(pickle.dumps(entries))
    with pytest.raises(ValueError, match="entry 0: needs 'filepath' and 'lms21'"):
        ReferencePickle(broken, data_root=reference_tree / "data")


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Touch:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([{"filepath": "x", "lms21": Touch()}]))
    with pytest.raises(PickleError, match=r"evil\.pkl: refused to load 'pathlib.*touch'"):
        load_pickle(evil)
    assert not marker.exists()

    class System:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    evil.write_bytes(pickle.dumps({"a": System()}, protocol=2))
    with pytest.raises(PickleError, match=r"refused to load '(posix|os)\.system'"):
        load_pickle(evil)
    assert not marker.exists()
    evil.write_bytes(b"garbage")
    with pytest.raises(PickleError, match="not a readable pickle"):
        load_pickle(evil)


def test_composition_keeps_keypoints_on_the_pasted_hands(freihand_root: Path) -> None:
    source = FreiHAND(freihand_root, versions=(0, 1), hands_mean=HANDS_MEAN, load_vertices=True)
    config = CompositionConfig(output_size=192, crop_size=(80.0, 90.0), min_hands=2, max_hands=3)
    data = ComposedHands([source], length=4, config=config, seed=0)
    sides, hands = set(), 0
    for index in range(4):
        sample = data[index]
        S.validate_sample(sample, 192)
        valid = sample[S.VALID] > 0
        hands += int(valid.sum())
        assert sample[S.HAS_MASK] == 1
        k_v = virtual_intrinsics(192)
        for slot in torch.nonzero(valid).flatten().tolist():
            keypoints = sample[S.KEYPOINTS_PX][slot].numpy()
            assert _on_mask(keypoints, sample[S.MASK][0].numpy()) > 0.85
            np.testing.assert_allclose(
                project(sample[S.JOINTS_3D][slot].numpy(), k_v), keypoints, atol=1e-2
            )
            sides.add(bool(sample[S.IS_RIGHT][slot]))
    assert hands >= 8 and sides == {True, False}
    torch.testing.assert_close(data[1], data[1])
    assert not torch.equal(data[1][S.IMAGE], data[2][S.IMAGE])


def test_composition_needs_masks(ho3d_root: Path) -> None:
    data = ComposedHands([HO3D(ho3d_root)], length=1, seed=0)
    with pytest.raises(ValueError, match=r"HO3D train sample \d .*needs a hand mask"):
        data[0]
    with pytest.raises(ValueError, match="non-empty source"):
        ComposedHands([], length=1)


def test_records_without_camera_compose_without_3d(scenes: list[Scene]) -> None:
    class Source:
        def __len__(self) -> int:
            return 1

        def record(self, index: int) -> HandRecord:
            scene = scenes[index]
            return HandRecord(scene.image_bgr, (scene.hands[0].label(),), scene.mask, None, "x")

    data = ComposedHands(
        [Source()], 1, CompositionConfig(output_size=192, crop_size=(80, 90)), seed=3
    )
    sample = data[0]
    S.validate_sample(sample, 192)
    assert sample[S.VALID].sum() >= 1 and sample[S.HAS_3D].sum() == 0
