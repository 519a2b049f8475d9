"""Every `data.dataset` kind builds from a config into contract samples at the model's
resolution; bad settings and broken trees give errors that name them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training import sample as S
from training.config import DataConfig
from training.data_source import DataError, build_dataset, write_synthetic_scenes
from training.datasets.composition import ComposedHands

R = 64


def _dataset_trees():
    """The dataset readers' test module, whose fixtures write tiny trees in each release layout
    (tests run with --import-mode=importlib, so it is loaded by path)."""
    path = Path(__file__).with_name("test_datasets.py")
    spec = importlib.util.spec_from_file_location("dataset_tree_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_trees = _dataset_trees()
hand_model = _trees.hand_model
scenes = _trees.scenes
freihand_root = _trees.freihand_root
ho3d_root = _trees.ho3d_root
reference_tree = _trees.reference_tree


def _data(**kwargs: object) -> DataConfig:
    return DataConfig(num_workers=0, max_hands=2, **kwargs)


def _check(dataset, count: int | None = None) -> dict:
    if count is not None:
        assert len(dataset) == count
    sample = dataset[0]
    S.validate_sample(sample, resolution=R, max_hands=2)
    return sample


def test_synthetic() -> None:
    sample = _check(build_dataset(_data(synthetic_count=3, synthetic_seed=5), R), 3)
    assert sample[S.VALID].sum() >= 1 and sample[S.HAS_3D].sum() >= 1


def test_synthetic_hand_size_sets_how_large_the_hands_are_drawn() -> None:
    def box_sides(size: list[float]) -> list[float]:
        data = _data(synthetic_count=6, synthetic_seed=11, synthetic_hand_size=size)
        sides = []
        for sample in build_dataset(data, R):
            for slot in range(2):
                if sample[S.VALID][slot]:
                    points = sample[S.KEYPOINTS_PX][slot]
                    sides.append(float((points.amax(0) - points.amin(0)).amax()) / R)
        return sides

    small, large = box_sides([0.25, 0.3]), box_sides([0.7, 0.75])
    assert small and large
    # The joints' box is a little smaller than the mesh's box the range is drawn for.
    assert max(small) <= 0.3 and min(large) >= 0.4 and min(large) > max(small)


def test_synthetic_background_scale_reaches_the_scenes() -> None:
    def roughness(scale: list[float]) -> float:
        data = _data(synthetic_count=4, synthetic_seed=21, synthetic_background_scale=scale)
        values = []
        for sample in build_dataset(data, R):
            image = sample[S.IMAGE_RGB].permute(1, 2, 0).numpy()
            values.append(float(np.abs(cv2.Laplacian(image, cv2.CV_32F)).mean()))
        return float(np.median(values))

    assert roughness([0.5, 0.5]) < 0.7 * roughness([1.0, 1.0])


def test_synthetic_supersampling_renders_like_the_scene_writer(tmp_path: Path) -> None:
    write_synthetic_scenes(
        tmp_path / "s1", count=1, seed=4, resolution=R, max_hands=2, supersampling=1
    )
    written = build_dataset(_data(dataset="scenes", root=str(tmp_path / "s1")), R)[0]
    fast = build_dataset(_data(synthetic_count=1, synthetic_seed=4, synthetic_supersampling=1), R)
    smooth = build_dataset(_data(synthetic_count=1, synthetic_seed=4), R)[0]
    assert (fast[0][S.IMAGE_RGB] - written[S.IMAGE_RGB]).abs().max() < 1 / 255 + 1e-6
    assert (fast[0][S.IMAGE_RGB] - smooth[S.IMAGE_RGB]).abs().max() > 0.05  # other edges
    assert fast[0][S.KEYPOINTS_PX].tolist() == smooth[S.KEYPOINTS_PX].tolist()  # same hands
    with pytest.raises(ValueError, match=r"data\.synthetic_supersampling.*>= 1"):
        _data(synthetic_supersampling=0)


def test_scene_folder(tmp_path: Path) -> None:
    assert write_synthetic_scenes(tmp_path / "s", count=2, seed=9, resolution=R, max_hands=2) == 2
    dataset = build_dataset(_data(dataset="scenes", root=str(tmp_path / "s")), R, train=False)
    sample = _check(dataset, 2)
    again = build_dataset(_data(synthetic_count=1, synthetic_seed=9), R)[0]
    assert (sample[S.IMAGE_RGB] - again[S.IMAGE_RGB]).abs().max() < 1 / 255 + 1e-6
    with pytest.raises(DataError, match=r"data\.root.*64 x 64.*128 x 128"):
        build_dataset(_data(dataset="scenes", root=str(tmp_path / "s")), 128)
    with pytest.raises(DataError, match=r"data\.root.*nowhere"):
        build_dataset(_data(dataset="scenes", root=str(tmp_path / "nowhere")), R)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no scenes"):
        build_dataset(_data(dataset="scenes", root=str(tmp_path / "empty")), R)


def test_freihand_training_and_evaluation(freihand_root: Path) -> None:
    data = _data(dataset="freihand", root=str(freihand_root), freihand_versions=(0, 1))
    sample = _check(build_dataset(data, R), 3 * 2)  # 3 labelled images x 2 versions
    # Open hand model: FreiHAND's hands_mean-relative MANO labels are dropped; no vertices.
    assert sample[S.HAS_MANO].sum() == 0 and sample[S.HAS_3D].sum() == 0
    assert sample[S.HAS_MASK] == 1
    evaluation = build_dataset(
        _data(dataset="freihand", root=str(freihand_root), split="evaluation"), R, train=False
    )
    _check(evaluation, 2)


def test_freihand_errors_name_the_file(freihand_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "training_K.json").write_text(json.dumps([[[1, 0, 0], [0, 1, 0], [0, 0, 1]]]))
    with pytest.raises(DataError, match=r"freihand.*training_xyz\.json"):
        build_dataset(_data(dataset="freihand", root=str(broken)), R)


def test_ho3d(ho3d_root: Path) -> None:
    sample = _check(build_dataset(_data(dataset="ho3d", root=str(ho3d_root)), R), 3)
    assert sample[S.HAS_MANO].sum() == 1


def test_reference_pickle(reference_tree: Path) -> None:
    data = _data(
        dataset="reference",
        root=str(reference_tree / "data"),
        pickle=str(reference_tree / "cache" / "FreiHAND_train.pkl"),
    )
    _check(build_dataset(data, R), 2)


def test_composed(freihand_root: Path) -> None:
    data = _data(
        dataset="composed", root=str(freihand_root), synthetic_count=5, freihand_versions=(0,)
    )
    dataset = build_dataset(data, R)
    assert isinstance(dataset, ComposedHands) and len(dataset) == 5
    sample = _check(dataset)
    assert 1 <= sample[S.VALID].sum() <= 2
    fixed = build_dataset(data, R, train=False)
    assert (fixed[1][S.IMAGE] == build_dataset(data, R, train=False)[1][S.IMAGE]).all()
