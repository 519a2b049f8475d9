"""Annotation lists pickled by the SMHR reference code (`zijinxuxu/SMHR`, lib/datasets).

The reference trains from `<cache>/<Name>_train.pkl` (or `_evaluation.pkl`): a list of dicts,
one per image, whose images live under `<data_root>/<Name>/`. Fields read here:

| field | meaning |
|---|---|
| filepath | image path relative to `<data_root>/<Name>/` |
| maskpath | hand mask path (same root); optional |
| lms21 | (21, 2) keypoints, image pixels, FreiHAND order |
| K | camera matrix (3 x 3 or 9 values); optional |
| mano_coeff | 61 values: 48 pose + 10 shape + 3 translation; optional |
| xyz | (21, 3) joints in the camera frame, metres; optional |
| handness | 0 left / 1 right (int or one-element list); right if absent |

FreiHAND entries keep FreiHAND's `hands_mean`-relative pose (the reference adds the mean when it
reads them), so for pickles named `FreiHAND*` the mean is added here (pass `hands_mean`, from
`training.datasets.freihand.mano_hands_mean`; without it MANO labels are dropped).

Pickles are untrusted input: `load_pickle` rebuilds numpy arrays and plain Python values only
and refuses every other class a file names, without running code from it.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from smhr_core.camera import project
from training import sample as S
from training.augment import CropConfig, HandRecord
from training.datasets import RecordDataset
from training.datasets.freihand import read_image, read_mask


class PickleError(ValueError):
    """A pickle names a class outside the allow-list or is not a readable pickle."""


def _numpy_object(module: str, name: str) -> Any:
    from numpy._core import multiarray, numeric

    if name in ("_reconstruct", "scalar") and module.endswith("multiarray"):
        return getattr(multiarray, name)
    if name == "_frombuffer" and module.endswith("numeric"):
        return numeric._frombuffer
    return None


def _latin1_bytes(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if encoding != "latin1" or not isinstance(text, str):
        raise PickleError(f"_codecs.encode is allowed only for latin1 bytes, got {encoding!r}")
    return codecs.encode(text, "latin1", errors)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays, scalars and dtypes (and protocol-2 bytes); nothing else."""

    _NUMPY_MODULES = (
        "numpy.core.multiarray",
        "numpy._core.multiarray",
        "numpy.core.numeric",
        "numpy._core.numeric",
    )

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        found = None
        if module in self._NUMPY_MODULES:
            found = _numpy_object(module, name)
        elif module == "numpy" and name in ("ndarray", "dtype"):
            found = getattr(np, name)
        elif module == "_codecs" and name == "encode":
            found = _latin1_bytes
        if found is None:
            raise PickleError(
                f"{self._path}: refused to load '{module}.{name}': only numpy arrays and plain "
                "Python values are allowed"
            )
        return found


def load_pickle(path: str | Path) -> Any:
    """Load an untrusted pickle of numpy arrays and plain values (Python 2 pickles included)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle not found: {path}")
    with path.open("rb") as handle:
        try:
            return _NumpyOnlyUnpickler(handle, path).load()
        except PickleError:
            raise
        except Exception as error:
            raise PickleError(f"{path}: not a readable pickle ({error})") from error


def _field(entry: dict, key: str, shape: tuple[int, ...], where: str) -> np.ndarray | None:
    if key not in entry or entry[key] is None:
        return None
    try:
        value = np.asarray(entry[key], dtype=np.float32).reshape(shape)
    except ValueError as error:
        raise ValueError(
            f"{where}: field '{key}' does not hold {shape} values ({error})"
        ) from error
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{where}: field '{key}' has NaN or infinite values")
    return value


class ReferencePickle(RecordDataset):
    """Samples of one reference annotation pickle, e.g. `FreiHAND_train.pkl`.

    `data_root / name` holds the images, where `name` is the pickle's file name up to the last
    `_` (as the reference does), unless `image_root` is given.
    """

    def __init__(
        self,
        pickle_path: str | Path,
        data_root: str | Path | None = None,
        image_root: str | Path | None = None,
        hands_mean: np.ndarray | None = None,
        mean_relative_pose: bool | None = None,
        crop: CropConfig | None = None,
        augment: bool = True,
        max_hands: int = S.DEFAULT_MAX_HANDS,
        seed: int | None = None,
    ) -> None:
        super().__init__(crop, augment, max_hands, seed)
        self.path = Path(pickle_path)
        name = self.path.stem.rsplit("_", 1)[0]
        if image_root is None:
            if data_root is None:
                raise ValueError("give data_root (images under data_root/<name>) or image_root")
            image_root = Path(data_root) / name
        self.image_root = Path(image_root)
        entries = load_pickle(self.path)
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"{self.path}: expected a list of dicts (one per image)")
        for number, entry in enumerate(entries):
            if "filepath" not in entry or "lms21" not in entry:
                raise ValueError(f"{self.path} entry {number}: needs 'filepath' and 'lms21'")
        self.entries = entries
        if mean_relative_pose is None:
            mean_relative_pose = name.lower().startswith("freihand")
        self.mean_relative_pose = mean_relative_pose
        self.hands_mean = None
        if hands_mean is not None:
            self.hands_mean = np.asarray(hands_mean, dtype=np.float32).reshape(45)

    def __len__(self) -> int:
        return len(self.entries)

    def record(self, index: int) -> HandRecord:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: index {index} out of range [0, {len(self)})")
        entry = self.entries[index]
        where = f"{self.path} entry {index}"
        image_path = self.image_root / str(entry["filepath"])
        image = read_image(image_path, where)
        mask = None
        if entry.get("maskpath"):
            mask = read_mask(self.image_root / str(entry["maskpath"]), where, image.shape[:2])
        keypoints = _field(entry, "lms21", (21, 2), where)
        camera = _field(entry, "K", (3, 3), where)
        joints = _field(entry, "xyz", (21, 3), where)
        if joints is not None and camera is not None:
            reprojected = project(joints, camera)
            if np.abs(reprojected - keypoints).max() > 5.0:
                raise ValueError(f"{where}: 'xyz' projected with 'K' is off 'lms21' by > 5 px")
        mano = _field(entry, "mano_coeff", (61,), where)
        pose = betas = None
        if mano is not None and (not self.mean_relative_pose or self.hands_mean is not None):
            pose = mano[:48].copy()
            if self.mean_relative_pose:
                pose[3:] += self.hands_mean
            betas = mano[48:58]
        side = entry.get("handness", 1)
        side = int(np.ravel(side)[0]) if np.size(side) else 1
        if side not in (0, 1):
            raise ValueError(f"{where}: 'handness' must be 0 (left) or 1 (right), got {side}")
        label = S.HandLabel(
            is_right=bool(side),
            keypoints_px=keypoints,
            mano_pose=pose,
            mano_betas=betas,
            joints_3d=joints,
        )
        camera_matrix = None if camera is None else camera.astype(np.float64)
        return HandRecord(image, (label,), mask, camera_matrix, f"{where} ({image_path})")
