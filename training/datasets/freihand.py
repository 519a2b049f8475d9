"""FreiHAND v2 (Zimmermann et al., ICCV 2019) in its public release layout.

    <root>/training/rgb/%08d.jpg      4 x 32,560 images, 224 x 224 (appearance versions)
    <root>/training/mask/%08d.jpg     32,560 hand masks (shared by the 4 versions)
    <root>/training_K.json            32,560 camera matrices (3 x 3)
    <root>/training_xyz.json          32,560 x 21 joints, metres, camera frame, FreiHAND order
    <root>/training_mano.json         32,560 x [61] = 48 pose + 10 shape + 3 translation
    <root>/training_verts.json        32,560 x 778 vertices (optional, large)
    <root>/evaluation/rgb/%08d.jpg    3,960 images; evaluation_K.json and, in the labelled
                                      release, evaluation_xyz/mano/verts.json

Image i + k x N (k = appearance version) shares the labels of i. FreiHAND's MANO pose is relative
to MANO's `hands_mean` (flat_hand_mean=False); the batch contract wants it relative to the flat
hand, so the 45 finger values get `hands_mean` added. That mean belongs to the licensed MANO
model: pass it (`mano_hands_mean(directory)`) to get MANO labels, otherwise `has_mano` is 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from smhr_core.camera import project
from smhr_core.mano_pickle import load_mano_pickle
from training import sample as S
from training.augment import CropConfig, HandRecord
from training.datasets import RecordDataset

SPLITS = ("training", "evaluation")
VERSIONS = 4
"""Appearance versions of the training images."""


def mano_hands_mean(directory: str | Path) -> np.ndarray:
    """(45,) `hands_mean` of the right MANO model in `directory` (MANO_RIGHT.pkl)."""
    data = load_mano_pickle(Path(directory) / "MANO_RIGHT.pkl")
    if "hands_mean" not in data:
        raise ValueError(f"{Path(directory) / 'MANO_RIGHT.pkl'}: no 'hands_mean'")
    mean = np.asarray(data["hands_mean"], dtype=np.float32).reshape(-1)
    if mean.shape != (45,):
        raise ValueError(f"hands_mean has {mean.size} values, expected 45")
    return mean


def read_image(path: Path, what: str) -> np.ndarray:
    """BGR uint8 image at `path`; errors name `what` (the sample) and the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what}: missing image {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{what}: unreadable image {path}")
    return image


def read_mask(path: Path, what: str, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 0/1 hand mask from a grey or colour image (> 127 is hand)."""
    if not path.is_file():
        raise FileNotFoundError(f"{what}: missing mask {path}")
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"{what}: unreadable mask {path}")
    if mask.shape != shape:
        raise ValueError(f"{what}: mask {path} is {mask.shape}, image is {shape}")
    return (mask > 127).astype(np.float32)


def _load_json(path: Path) -> list:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of per-sample entries")
    return data


def _as_array(entries: list, shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        array = np.asarray(entries, dtype=np.float32)
    except ValueError as error:
        raise ValueError(f"{path}: entries do not all have the same shape ({error})") from error
    if array.shape[1:] != shape:
        raise ValueError(f"{path}: each entry should have shape {shape}, got {array.shape[1:]}")
    bad = np.nonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))[0]
    if len(bad):
        raise ValueError(f"{path}: entry {int(bad[0])} has NaN or infinite values")
    return array


class FreiHAND(RecordDataset):
    """FreiHAND samples (single right hands) from the release at `root`."""

    def __init__(
        self,
        root: str | Path,
        split: str = "training",
        versions: Sequence[int] = (0, 1, 2, 3),
        hands_mean: np.ndarray | None = None,
        load_vertices: bool = False,
        crop: CropConfig | None = None,
        augment: bool = True,
        max_hands: int = S.DEFAULT_MAX_HANDS,
        seed: int | None = None,
    ) -> None:
        super().__init__(crop, augment, max_hands, seed)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.versions = tuple(int(v) for v in versions) if split == "training" else (0,)
        if not self.versions or any(not 0 <= v < VERSIONS for v in self.versions):
            raise ValueError(f"versions must be a non-empty subset of 0..3, got {versions}")
        self.hands_mean = None
        if hands_mean is not None:
            self.hands_mean = np.asarray(hands_mean, dtype=np.float32).reshape(45)
        k_path = self.root / f"{split}_K.json"
        xyz_path = self.root / f"{split}_xyz.json"
        for path in (k_path, xyz_path):
            if not path.is_file():
                raise FileNotFoundError(f"FreiHAND {split}: missing {path}")
        self.camera_matrices = _as_array(_load_json(k_path), (3, 3), k_path)
        self.joints = _as_array(_load_json(xyz_path), (21, 3), xyz_path)
        count = len(self.camera_matrices)
        self._check_count(xyz_path, len(self.joints), count)
        self.mano = None
        mano_path = self.root / f"{split}_mano.json"
        if mano_path.is_file():
            raw = _load_json(mano_path)
            self._check_count(mano_path, len(raw), count)
            self.mano = _as_array([np.ravel(entry) for entry in raw], (61,), mano_path)
        self.vertices = None
        verts_path = self.root / f"{split}_verts.json"
        if load_vertices:
            if not verts_path.is_file():
                raise FileNotFoundError(f"FreiHAND {split}: load_vertices needs {verts_path}")
            self.vertices = _as_array(_load_json(verts_path), (778, 3), verts_path)
            self._check_count(verts_path, len(self.vertices), count)
        self.count = count
        rgb = self.root / split / "rgb"
        if not rgb.is_dir():
            raise FileNotFoundError(f"FreiHAND {split}: missing image folder {rgb}")
        images = sum(1 for entry in rgb.iterdir() if entry.suffix == ".jpg")
        needed = count * (max(self.versions) + 1)
        if images < needed:
            raise ValueError(
                f"FreiHAND {split}: {rgb} holds {images} images but {k_path.name} has {count} "
                f"entries and versions {self.versions} need {needed}"
            )
        self.mask_dir = self.root / split / "mask"

    def _check_count(self, path: Path, found: int, expected: int) -> None:
        if found != expected:
            raise ValueError(
                f"FreiHAND {self.split}: {path.name} has {found} entries but "
                f"{self.split}_K.json has {expected}"
            )

    def __len__(self) -> int:
        return self.count * len(self.versions)

    def image_path(self, index: int) -> Path:
        """Image file of sample `index`."""
        version = self.versions[index // self.count]
        return (
            self.root / self.split / "rgb" / f"{version * self.count + index % self.count:08d}.jpg"
        )

    def record(self, index: int) -> HandRecord:
        if not 0 <= index < len(self):
            raise IndexError(f"FreiHAND {self.split}: index {index} out of range [0, {len(self)})")
        label_index = index % self.count
        path = self.image_path(index)
        what = f"FreiHAND {self.split} sample {index}"
        image = read_image(path, what)
        k = self.camera_matrices[label_index].astype(np.float64)
        joints = self.joints[label_index]
        pose = betas = None
        if self.mano is not None and self.hands_mean is not None:
            pose = self.mano[label_index, :48].copy()
            pose[3:] += self.hands_mean
            betas = self.mano[label_index, 48:58]
        label = S.HandLabel(
            is_right=True,
            keypoints_px=project(joints, k).astype(np.float32),
            mano_pose=pose,
            mano_betas=betas,
            joints_3d=joints,
            vertices_3d=None if self.vertices is None else self.vertices[label_index],
        )
        mask = None
        mask_path = self.mask_dir / f"{label_index:08d}.jpg"
        if self.split == "training" and self.mask_dir.is_dir():
            mask = read_mask(mask_path, what, image.shape[:2])
        return HandRecord(image, (label,), mask, k, f"{what} ({path})")
