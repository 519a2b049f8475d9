"""HO3D v2 / v3 (Hampali et al., CVPR 2020) in its public release layout.

    <root>/train.txt, <root>/evaluation.txt      lines "<sequence>/<frame>"
    <root>/<split>/<sequence>/rgb/<frame>.jpg    (v3; v2 uses .png), 640 x 480
    <root>/<split>/<sequence>/meta/<frame>.pkl   per-frame labels (Python 2 pickles)

A meta file is a dict with `handPose` (48: global orientation + 45 finger joints, axis-angle,
flat-hand relative), `handBeta` (10), `handTrans` (3), `handJoints3D` (21 x 3, metres) and
`camMat` (3 x 3), in OpenGL axes (y up, z towards the viewer) and HO3D's joint order (MANO's
16 joints, then the thumb, index, middle, ring and pinky tips). They are turned into the
camera's optical frame (y and z negated) and FreiHAND order here. HO3D has no mesh file: with a
`hand_model` holding the official MANO model, the vertices are computed from the MANO labels
(and checked against the labelled joints); without it only joints are given (`has_3d` = 0).
The evaluation split's labels are withheld by the release (only the root joint).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from smhr_core.camera import project
from smhr_core.hand_model import FREIHAND_FROM_MANO, HandModel
from training import sample as S
from training.augment import CropConfig, HandRecord
from training.datasets import RecordDataset
from training.datasets.freihand import read_image
from training.datasets.reference_pickle import load_pickle

SPLITS = ("train", "evaluation")
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
"""Axes of HO3D's labels (OpenGL) to the camera's optical frame."""
JOINT_TOLERANCE_M = 0.01
"""Largest joint error allowed between `hand_model` and HO3D's labelled joints."""


def _axis_angle_to_matrix(vector: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(vector))
    if angle < 1e-12:
        return np.eye(3)
    axis = vector / angle
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    angle = np.arccos(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0))
    if angle < 1e-9:
        return np.zeros(3)
    if np.pi - angle < 1e-6:
        # Half turn: the axis is the column of (R + I) with the largest norm.
        column = (matrix + np.eye(3))[:, np.argmax(np.diag(matrix))]
        return np.pi * column / np.linalg.norm(column)
    axis = np.array(
        [matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]]
    )
    return angle * axis / (2.0 * np.sin(angle))


def opengl_orient_to_camera(global_orient: np.ndarray) -> np.ndarray:
    """(3,) global orientation in OpenGL axes -> the same rotation in the optical frame."""
    rotation = OPENGL_TO_OPENCV @ _axis_angle_to_matrix(np.asarray(global_orient, np.float64))
    return _matrix_to_axis_angle(rotation).astype(np.float32)


class HO3D(RecordDataset):
    """HO3D samples (single right hands) of `split` from the release at `root`."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        hand_model: HandModel | None = None,
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
        self.hand_model = hand_model
        listing = self.root / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"HO3D {split}: missing {listing}")
        self.frames: list[tuple[str, str]] = []
        for number, line in enumerate(listing.read_text().splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("/")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{listing} line {number}: expected '<sequence>/<frame>'")
            self.frames.append((parts[0], parts[1]))
        if not self.frames:
            raise ValueError(f"{listing}: lists no frames")

    def __len__(self) -> int:
        return len(self.frames)

    def paths(self, index: int) -> tuple[Path, Path]:
        """(image, meta) files of sample `index` (the image is .jpg in v3, .png in v2)."""
        sequence, frame = self.frames[index]
        folder = self.root / self.split / sequence
        image = folder / "rgb" / f"{frame}.jpg"
        if not image.is_file():
            image = folder / "rgb" / f"{frame}.png"
        return image, folder / "meta" / f"{frame}.pkl"

    def _meta(self, path: Path, where: str) -> dict[str, np.ndarray]:
        meta = load_pickle(path)
        if not isinstance(meta, dict):
            raise ValueError(f"{where}: {path} does not hold a dict")
        shapes = {
            "handPose": (48,),
            "handBeta": (10,),
            "handTrans": (3,),
            "handJoints3D": (21, 3),
            "camMat": (3, 3),
        }
        values = {}
        for key, shape in shapes.items():
            value = meta.get(key)
            if value is None:
                raise ValueError(
                    f"{where}: {path} has no '{key}'"
                    + (" (HO3D withholds evaluation labels)" if self.split == "evaluation" else "")
                )
            array = np.asarray(value, dtype=np.float64)
            if array.size != int(np.prod(shape)):
                raise ValueError(f"{where}: {path} '{key}' has shape {array.shape}, need {shape}")
            values[key] = array.reshape(shape)
        return values

    def record(self, index: int) -> HandRecord:
        if not 0 <= index < len(self):
            raise IndexError(f"HO3D {self.split}: index {index} out of range [0, {len(self)})")
        image_path, meta_path = self.paths(index)
        where = f"HO3D {self.split} sample {index} ({'/'.join(self.frames[index])})"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{where}: missing {meta_path}")
        meta = self._meta(meta_path, where)
        image = read_image(image_path, where)
        camera = meta["camMat"]
        joints = (meta["handJoints3D"] @ OPENGL_TO_OPENCV)[list(FREIHAND_FROM_MANO)]
        pose = meta["handPose"].astype(np.float32)
        pose[:3] = opengl_orient_to_camera(meta["handPose"][:3])
        betas = meta["handBeta"].astype(np.float32)
        vertices = None
        if self.hand_model is not None:
            vertices = self._vertices(pose, betas, meta["handTrans"], joints, where)
        label = S.HandLabel(
            is_right=True,
            keypoints_px=project(joints, camera).astype(np.float32),
            mano_pose=pose,
            mano_betas=betas,
            joints_3d=joints.astype(np.float32),
            vertices_3d=vertices,
        )
        return HandRecord(image, (label,), None, camera, f"{where} ({image_path})")

    def _vertices(
        self,
        pose: np.ndarray,
        betas: np.ndarray,
        opengl_translation: np.ndarray,
        joints: np.ndarray,
        where: str,
    ) -> np.ndarray:
        """Camera-frame vertices from the MANO labels, checked against the labelled joints."""
        with torch.no_grad():
            rest = self.hand_model(
                torch.from_numpy(pose[None, :3]),
                torch.from_numpy(pose[None, 3:]),
                torch.from_numpy(betas[None]),
                torch.zeros(1, 3),
                torch.tensor([True]),
            )
        # HO3D: v = R (v0 - J0) + J0 + t in OpenGL axes; in ours the rotation is the same
        # about the same wrist, so the translation becomes F (J0 + t) - J0.
        wrist = rest.rest_wrist[0].numpy().astype(np.float64)
        translation = OPENGL_TO_OPENCV @ (wrist + opengl_translation) - wrist
        vertices = rest.vertices[0].numpy() + translation
        model_joints = rest.joints[0].numpy() + translation
        error = float(np.abs(model_joints - joints).max())
        if error > JOINT_TOLERANCE_M:
            raise ValueError(
                f"{where}: the hand model's joints are {error * 1000:.0f} mm off HO3D's labelled "
                "joints; pass the official MANO model (not the open hand model) as hand_model"
            )
        return vertices.astype(np.float32)
