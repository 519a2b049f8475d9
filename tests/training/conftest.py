"""Fixtures of the training tests: the open hand model and network maps with known hands."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from smhr_core.decode import virtual_translation
from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from training import sample as S
from training.losses import project_virtual

R = 64
"""Input side of the `exact_scene` maps, pixels."""
W = R // 4
M = 2
"""Hand slots per sample of the `exact_scene` batches."""


def logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.fixture
def tiny_run_settings() -> list[str]:
    """`--set` overrides of a training run small enough for a test: EfficientNet-Lite0 at 64 px
    with a 32-channel neck, two stored synthetic scenes, batch 2, on the CPU, seeded."""
    return [
        "model.backbone=efficientnet_lite0",
        "model.input_resolution=64",
        "model.heads=[hm, params, handmap]",
        "model.neck_channels=32",
        "data.synthetic_count=2",
        "data.max_hands=2",
        "data.num_workers=0",
        "optim.batch_size=2",
        "optim.lr=1e-2",
        "device=cpu",
        "log.progress=false",
        "seed=5",
    ]


@pytest.fixture(scope="session")
def hand_model() -> HandModel:
    return HandModel.from_directory(open_hand_directory())


@pytest.fixture
def exact_scene(hand_model: HandModel) -> Callable[..., tuple[dict, dict]]:
    """`exact_scene(cells, rights, seed=0, beta_scale=0.5) -> (outputs, batch)`: network maps
    of an R = 64 px input whose read-out at the labelled cells (x, y) reproduces the labels
    exactly, and the batch of those labels (see `_scene`)."""

    def build(
        cells: list[list[tuple[int, int]]],
        rights: list[list[bool]],
        seed: int = 0,
        beta_scale: float = 0.5,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return _scene(hand_model, cells, rights, seed, beta_scale)

    return build


def _params61(seed: int, beta_scale: float, depth: float = 2.2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.zeros(61)
    p[0:3] = torch.tensor([0.0, 0.0, 3.0]) + 0.2 * torch.randn(3, generator=g)
    p[3:48] = 0.1 * torch.rand(45, generator=g)  # inside every limit of either side
    p[48:58] = beta_scale * torch.randn(10, generator=g)
    p[58:61] = torch.tensor([0.0, 0.0, depth])
    return p


def _scene(
    hand_model: HandModel,
    cells: list[list[tuple[int, int]]],
    rights: list[list[bool]],
    seed: int = 0,
    beta_scale: float = 0.5,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Network maps whose read-out at the labelled cells reproduces the labels exactly."""
    b = len(cells)
    g = torch.Generator().manual_seed(seed)
    params = 0.3 * torch.randn(b, 122, W, W, generator=g)  # garbage everywhere else
    batch = {
        S.IND: torch.zeros(b, M, dtype=torch.int64),
        S.VALID: torch.zeros(b, M),
        S.IS_RIGHT: torch.zeros(b, M),
        S.KEYPOINTS_PX: torch.zeros(b, M, 21, 2),
        S.KEYPOINTS_VIS: torch.zeros(b, M, 21),
        S.MANO_POSE: torch.zeros(b, M, 48),
        S.MANO_BETAS: torch.zeros(b, M, 10),
        S.HAS_MANO: torch.zeros(b, M),
        S.JOINTS_3D: torch.zeros(b, M, 21, 3),
        S.VERTICES_3D: torch.zeros(b, M, 778, 3),
        S.HAS_3D: torch.zeros(b, M),
        S.HM: torch.zeros(b, 1, W, W),
        S.HANDMAP: torch.zeros(b, 2, W, W),
        S.MASK: torch.zeros(b, 1, R, R),
        S.HAS_MASK: torch.zeros(b),
        S.IMAGE_RGB: torch.zeros(b, 3, R, R),
    }
    for i in range(b):
        for slot, ((x, y), right) in enumerate(zip(cells[i], rights[i], strict=True)):
            p = _params61(seed * 10 + i * 2 + slot, beta_scale)
            offset = 61 if right else 0
            params[i, offset : offset + 61, y, x] = p
            t = virtual_translation(p[None, 58:61], torch.tensor([x]), torch.tensor([y]), R)
            out = hand_model(p[None, 0:3], p[None, 3:48], p[None, 48:58], t, torch.tensor([right]))
            batch[S.IND][i, slot] = y * W + x
            batch[S.VALID][i, slot] = 1
            batch[S.IS_RIGHT][i, slot] = float(right)
            batch[S.KEYPOINTS_PX][i, slot] = project_virtual(out.joints[0], R)
            batch[S.KEYPOINTS_VIS][i, slot] = 1
            batch[S.MANO_POSE][i, slot] = p[0:48]
            batch[S.MANO_BETAS][i, slot] = p[48:58]
            batch[S.HAS_MANO][i, slot] = 1
            batch[S.JOINTS_3D][i, slot] = out.joints[0]
            batch[S.VERTICES_3D][i, slot] = out.vertices[0]
            batch[S.HAS_3D][i, slot] = 1
            batch[S.HM][i, 0, y, x] = 1
            batch[S.HANDMAP][i, int(right), y, x] = 1
    outputs = {
        "hm": torch.where(batch[S.HM] > 0, logit(0.9), logit(0.01)),
        "handmap": torch.where(batch[S.HANDMAP] > 0, logit(0.9), logit(0.01)),
        "params": params.requires_grad_(),
        "texture": torch.zeros(b, 2334, W, W),
        "light": torch.zeros(b, 27, W, W),
    }
    return outputs, batch
