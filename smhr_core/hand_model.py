"""MANO-format hand models (left and right) through smplx, with the SMHR release's conventions.

Pose is axis-angle relative to the flat hand (no `hands_mean`), the global rotation turns the
hand about its wrist joint, and the translation is added afterwards, so that
`wrist = rest_wrist + translation`. The 21 joints are the 16 joints of the kinematic chain (not
regressed again from the posed mesh) plus five fingertip vertices, in FreiHAND order.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import smplx
import torch
from smplx.lbs import blend_shapes, vertices2joints
from smplx.utils import Struct

from smhr_core.joint_rig import JointRig, chain_levels
from smhr_core.mano_pickle import MANO_DOWNLOAD_HINT, ManoPickleError, load_mano_pickle

TIP_VERTICES_RIGHT = (745, 317, 444, 556, 673)
"""Fingertip vertices (thumb, index, middle, ring, pinky) read by the release, right model."""
TIP_VERTICES_LEFT = (745, 317, 445, 556, 673)
"""Same for the left model: the release reads the middle fingertip at 445."""

FREIHAND_FROM_MANO = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
"""FreiHAND joint j is MANO joint FREIHAND_FROM_MANO[j]; 16-20 are the tips in the order above."""

_EXPECTED_SHAPES = {
    "v_template": (778, 3),
    "f": (1538, 3),
    "J_regressor": (16, 778),
    "kintree_table": (2, 16),
    "weights": (778, 16),
    "posedirs": (778, 3, 135),
    "shapedirs": (778, 3, 10),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}


class HandModelError(ValueError):
    """A hand model file is missing or does not hold a MANO-format model."""


@dataclass(frozen=True)
class HandModelOutput:
    """Posed hands, metres, in the frame of the given global rotation and translation."""

    vertices: torch.Tensor
    """(N, 778, 3) mesh vertices."""
    joints: torch.Tensor
    """(N, 21, 3) joints in FreiHAND order."""
    rest_wrist: torch.Tensor
    """(N, 3) shaped rest-pose wrist before translation: wrist = rest_wrist + translation."""


def _model_arrays(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check keys and shapes, turn a sparse regressor dense; raise naming the file and key."""
    arrays: dict[str, Any] = {}
    for key, shape in _EXPECTED_SHAPES.items():
        if key not in data:
            raise HandModelError(f"{path}: missing '{key}' (a MANO-format model needs it)")
        value = data[key]
        value = value.toarray() if scipy.sparse.issparse(value) else np.asarray(value)
        if value.shape != shape:
            raise HandModelError(f"{path}: '{key}' has shape {value.shape}, expected {shape}")
        if not np.issubdtype(value.dtype, np.number):
            raise HandModelError(f"{path}: '{key}' is not numeric (dtype {value.dtype})")
        arrays[key] = value
    return arrays


class HandModel(torch.nn.Module):
    """Left and right MANO-format hand models with the SMHR release's conventions."""

    def __init__(
        self,
        right: dict[str, Any],
        left: dict[str, Any],
        model_id: str,
        is_open_model: bool,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.model_id = model_id
        self.is_open_model = is_open_model
        self._faces = {
            True: np.array(right["f"], dtype=np.int64),
            False: np.array(left["f"], dtype=np.int64),
        }
        # Shared by every Hand of a side (no copy per hand), so they must not be writable.
        for faces in self._faces.values():
            faces.setflags(write=False)
        # smplx prints a warning about having 10 (not 300) shape coefficients; MANO has 10.
        with contextlib.redirect_stdout(io.StringIO()):
            self.right = self._smplx_layer(right, is_right=True)
            self.left = self._smplx_layer(left, is_right=False)
        self.register_buffer("_tips_right", torch.tensor(TIP_VERTICES_RIGHT), persistent=False)
        self.register_buffer("_tips_left", torch.tensor(TIP_VERTICES_LEFT), persistent=False)
        self.register_buffer("_order", torch.tensor(FREIHAND_FROM_MANO), persistent=False)
        parents = [int(p) for p in self.right.parents]
        if parents != [int(p) for p in self.left.parents]:
            raise HandModelError(
                f"{model_id}: the right and left models' kinematic trees differ "
                "(MANO's are the same)"
            )
        try:
            levels = chain_levels(parents)
        except ValueError as error:
            raise HandModelError(f"{model_id}: kinematic tree: {error}") from None
        self._levels = tuple((tuple(children), tuple(up)) for children, up in levels)
        self.to(device)

    @staticmethod
    def _smplx_layer(data: dict[str, Any], is_right: bool) -> smplx.MANO:
        return smplx.MANO(
            model_path="",
            is_rhand=is_right,
            data_struct=Struct(**data),
            use_pca=False,
            flat_hand_mean=True,
            create_global_orient=False,
            create_hand_pose=False,
            create_betas=False,
            create_transl=False,
            dtype=torch.float32,
        )

    @classmethod
    def from_directory(cls, directory: str | Path, device: str | torch.device = "cpu") -> HandModel:
        """Load MANO_RIGHT.pkl and MANO_LEFT.pkl from `directory` (official MANO or open hand)."""
        directory = Path(directory)
        models, digest = {}, hashlib.sha256()
        for side in ("RIGHT", "LEFT"):
            path = directory / f"MANO_{side}.pkl"
            if not path.is_file():
                raise HandModelError(f"hand model file not found: {path}. {MANO_DOWNLOAD_HINT}")
            digest.update(path.read_bytes())
            try:
                data = load_mano_pickle(path)
            except ManoPickleError as error:
                raise HandModelError(str(error)) from error
            models[side] = (data, _model_arrays(data, path))
        versions = [data.get("open_hand_version") for data, _ in models.values()]
        is_open = all(v is not None for v in versions)
        if is_open:
            model_id = f"open_hand/{int(np.ravel(versions[0])[0])} sha256:{digest.hexdigest()[:16]}"
        else:
            model_id = f"MANO sha256:{digest.hexdigest()[:16]}"
        return cls(models["RIGHT"][1], models["LEFT"][1], model_id, is_open, device)

    def faces(self, is_right: bool) -> np.ndarray:
        """(1538, 3) int64 triangle vertex indices of the right or left model (read-only)."""
        return self._faces[bool(is_right)]

    def _sides(
        self, is_right: torch.Tensor
    ) -> Iterator[tuple[torch.Tensor, smplx.MANO, torch.Tensor]]:
        """(indices of the hands of a side, that side's layer, its tip vertices), present sides."""
        for side, layer, tips in (
            (True, self.right, self._tips_right),
            (False, self.left, self._tips_left),
        ):
            index = torch.nonzero(is_right == side).flatten()
            if index.numel():
                yield index, layer, tips

    def forward(
        self,
        global_orient: torch.Tensor,
        hand_pose: torch.Tensor,
        betas: torch.Tensor,
        translation: torch.Tensor,
        is_right: torch.Tensor,
    ) -> HandModelOutput:
        """Pose N hands.

        Args:
            global_orient: (N, 3) axis-angle about the wrist, radians.
            hand_pose: (N, 45) axis-angle of the 15 finger joints, radians, flat-hand relative.
            betas: (N, 10) shape coefficients.
            translation: (N, 3) metres, added after the rotation.
            is_right: (N,) bool; each hand uses the right or the left model.
        """
        n = global_orient.shape[0]
        for name, value, width in (
            ("global_orient", global_orient, 3),
            ("hand_pose", hand_pose, 45),
            ("betas", betas, 10),
            ("translation", translation, 3),
        ):
            if tuple(value.shape) != (n, width):
                raise ValueError(f"{name} must have shape ({n}, {width}), got {tuple(value.shape)}")
        if tuple(is_right.shape) != (n,):
            raise ValueError(f"is_right must have shape ({n},), got {tuple(is_right.shape)}")
        device, dtype = self._order.device, self.right.v_template.dtype
        inputs = [x.to(device=device, dtype=dtype) for x in (global_orient, hand_pose, betas)]
        translation = translation.to(device=device, dtype=dtype)
        is_right = is_right.to(device=device, dtype=torch.bool)
        vertices = torch.zeros((n, 778, 3), device=device, dtype=dtype)
        joints = torch.zeros((n, 21, 3), device=device, dtype=dtype)
        for index, layer, tips in self._sides(is_right):
            orient, pose, shape = (x[index] for x in inputs)
            out = layer(betas=shape, global_orient=orient, hand_pose=pose)
            vertices[index] = out.vertices
            joints[index] = torch.cat([out.joints, out.vertices[:, tips]], dim=1)[:, self._order]
        rest_wrist = joints[:, 0].clone()
        offset = translation[:, None, :]
        return HandModelOutput(
            vertices=vertices + offset, joints=joints + offset, rest_wrist=rest_wrist
        )

    def joint_rig(self, betas: torch.Tensor, is_right: torch.Tensor) -> JointRig:
        """N hands shaped once, each with its own side's model, for posing many times.

        Args:
            betas: (N, 10) shape coefficients.
            is_right: (N,) bool; each hand uses the right or the left model.
        """
        n = betas.shape[0]
        if tuple(betas.shape) != (n, 10) or tuple(is_right.shape) != (n,):
            raise ValueError(
                f"betas must be (N, 10) and is_right (N,), got {tuple(betas.shape)} and "
                f"{tuple(is_right.shape)}"
            )
        device, dtype = self._order.device, self.right.v_template.dtype
        betas = betas.to(device=device, dtype=dtype)
        is_right = is_right.to(device=device, dtype=torch.bool)
        rest_joints = torch.zeros((n, 16, 3), device=device, dtype=dtype)
        rest_tips = torch.zeros((n, 5, 3), device=device, dtype=dtype)
        tip_posedirs = torch.zeros((n, 135, 15), device=device, dtype=dtype)
        tip_weights = torch.zeros((n, 5, 16), device=device, dtype=dtype)
        for index, layer, tips in self._sides(is_right):
            shape = betas[index]
            rest_joints[index] = vertices2joints(
                layer.J_regressor, layer.v_template + blend_shapes(shape, layer.shapedirs)
            )
            rest_tips[index] = layer.v_template[tips] + blend_shapes(shape, layer.shapedirs[tips])
            vertex_count = layer.v_template.shape[0]
            tip_posedirs[index] = layer.posedirs.reshape(135, vertex_count, 3)[:, tips].reshape(
                135, 15
            )
            tip_weights[index] = layer.lbs_weights[tips]
        return JointRig(
            rest_joints=rest_joints,
            rest_tips=rest_tips,
            tip_posedirs=tip_posedirs,
            tip_weights=tip_weights,
            levels=self._levels,
            order=self._order,
        )

    def joints(
        self,
        global_orient: torch.Tensor,
        hand_pose: torch.Tensor,
        betas: torch.Tensor,
        translation: torch.Tensor,
        is_right: torch.Tensor,
    ) -> torch.Tensor:
        """(N, 21, 3) joints of `forward` (metres, FreiHAND order), computed without the mesh.

        Only the five fingertip vertices are posed (with their pose blend shapes and skinning
        weights), so this costs a fraction of `forward`. To pose the same hands many times (the
        2D fit, `smhr_core.fit_2d`), build a `joint_rig` once. Same arguments as `forward`.
        """
        rig = self.joint_rig(betas, is_right)
        dtype = rig.rest_joints.dtype
        inputs = (
            x.to(device=rig.rest_joints.device, dtype=dtype)[:, None]
            for x in (global_orient, hand_pose, translation)
        )
        return rig.pose(*inputs)[:, 0]
