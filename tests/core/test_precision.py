"""Inference precision: resolution per device, and bfloat16 on the shipped model against float32."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from smhr_core.config import PRECISIONS
from smhr_core.precision import autocast, prefers_channels_last, resolve_precision
from smhr_core.predictor import Predictor, PredictorError

DEMO = Path(__file__).resolve().parents[2] / "smhr_ros" / "data" / "demo"
CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # a device object only: nothing runs on it here


def test_precision_resolves_per_device_and_refuses_what_a_device_cannot_run() -> None:
    assert resolve_precision("auto", CPU) == "float32"
    assert resolve_precision("auto", CUDA) == "float16"
    for precision in ("float32", "bfloat16"):
        assert resolve_precision(precision, CPU) == precision
        assert resolve_precision(precision, CUDA) == precision
    with pytest.raises(ValueError, match=r"'float16' runs on cuda only.*use bfloat16 on a CPU"):
        resolve_precision("float16", CPU)
    with pytest.raises(ValueError, match="'bfloat16' runs on cpu or cuda only, not on mps"):
        resolve_precision("bfloat16", torch.device("mps"))
    with pytest.raises(ValueError, match=r"'half' is not one of \['auto', 'float32'"):
        resolve_precision("half", CPU)
    assert set(PRECISIONS) == {"auto", "float32", "bfloat16", "float16"}
    assert prefers_channels_last("bfloat16", CPU) and not prefers_channels_last("float32", CPU)
    assert prefers_channels_last("float32", CUDA)
    with autocast("bfloat16", CPU):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("float32", CPU):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_predictor_refuses_float16_on_a_cpu_by_name() -> None:
    with pytest.raises(PredictorError, match="'float16' runs on cuda only"):
        Predictor(None, device="cpu", precision="float16")


@pytest.fixture(scope="module")
def demo_frames() -> tuple[list[np.ndarray], list[list[dict]]]:
    labels = json.loads((DEMO / "labels.json").read_text())
    frames = labels["frames"][::8]  # 6 frames spread over the sequence, 1-3 hands each
    images = [cv2.imread(str(DEMO / f["file"])) for f in frames]
    assert all(image is not None for image in images)
    return images, [f["hands"] for f in frames]


def test_bfloat16_gives_the_float32_hands_of_the_shipped_model(demo_frames) -> None:
    torch.set_num_threads(2)
    images, truth = demo_frames
    full = Predictor(None, device="cpu", precision="float32")
    reduced = Predictor(None, device="cpu", precision="bfloat16")
    assert reduced.precision == "bfloat16" and "bfloat16" in reduced.model_description
    assert full.precision == "float32" and "float32" in full.model_description
    conv = next(m for m in reduced.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)

    cell_px = 4 * max(images[0].shape[:2]) / full.config.input_resolution
    differences = []
    for full_result, reduced_result, hands in zip(
        full.predict(images), reduced.predict(images), truth, strict=True
    ):
        assert len(full_result.hands) == len(reduced_result.hands) == len(hands)
        for a in full_result.hands:
            b = min(reduced_result.hands, key=lambda h: np.abs(h.centre_px - a.centre_px).sum())
            # The same heatmap cell, or where two cells were nearly tied, its neighbour.
            assert np.abs(b.centre_px - a.centre_px).max() < cell_px + 0.5
            assert b.handedness == a.handedness
            assert abs(b.score - a.score) < 0.05
            assert np.isfinite(b.joints_m).all() and b.joints_m.dtype == np.float32
            differences.append(np.linalg.norm(b.keypoints_px - a.keypoints_px, axis=1))
    differences = np.concatenate(differences)
    # The network really ran in bfloat16 (the hands differ a little), and it hardly matters:
    # the demo frames' hands are 40-120 px wide.
    assert differences.max() > 1e-3
    assert np.median(differences) < 1.0
