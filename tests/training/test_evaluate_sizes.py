"""`python -m training evaluate --resolution`: held-out images larger than the network's input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from smhr_core.camera import project, virtual_intrinsics
from smhr_core.predictor import DEFAULT_CHECKPOINT, Predictor
from training.cli import main
from training.data_source import DataConfig, build_dataset, write_synthetic_scenes
from training.evaluate import _to_uint8_rgb, sample_truth


def test_384_px_scenes_are_letterboxed_and_scored_in_their_own_camera(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes384"
    write_synthetic_scenes(scenes, count=3, seed=1_000_003, resolution=384, max_hands=4)
    out = tmp_path / "eval.json"
    args = ["evaluate", f"--checkpoint={DEFAULT_CHECKPOINT}", "--data=scenes", f"--root={scenes}"]
    assert main([*args, "--resolution=384", f"--json={out}"]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["images"] == 3 and metrics["true_hands"] >= 3
    assert metrics["recall"] >= 0.9 and metrics["precision"] >= 0.9
    assert metrics["keypoint_error_box_pct_median"] < 25.0
    assert metrics["pa_mpjpe_mm"] < 25.0
    # Without --resolution the folder does not match the model's 256 px input: a clear refusal.
    assert main([*args, f"--json={tmp_path / 'no.json'}"]) == 2

    # The hands come back in the scene's camera: depth and projection agree with the labels.
    dataset = build_dataset(DataConfig(dataset="scenes", root=str(scenes)), 384, train=False)
    sample = dataset[0]
    image = _to_uint8_rgb(sample["image_rgb"][None])[0]
    (result,) = Predictor(None, device="cpu").predict(
        [image], color_order="rgb", camera_matrices=[virtual_intrinsics(384)]
    )
    for truth in sample_truth(sample):
        hand = min(result.hands, key=lambda h: np.abs(h.keypoints_px - truth.keypoints_px).mean())
        np.testing.assert_allclose(
            project(hand.joints_m.astype(np.float64), virtual_intrinsics(384)),
            hand.keypoints_px,
            atol=0.05,
        )
        depth_error = abs(hand.joints_m[0, 2] - truth.joints_m[0, 2]) / truth.joints_m[0, 2]
        assert depth_error < 0.25  # about 0.5 if the 256 px camera were assumed
