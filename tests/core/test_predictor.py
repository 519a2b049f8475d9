"""The predictor against the naive full-map path, real intrinsics, batching and bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from smhr_core.camera import project
from smhr_core.checkpoint import save_checkpoint
from smhr_core.config import DecodeConfig, ModelConfig
from smhr_core.decode import choose_side, find_peaks, select_params, split_params
from smhr_core.network import SMHRNet
from smhr_core.predictor import Predictor, PredictorError
from smhr_core.preprocess import letterbox, normalise

DATA = Path(__file__).resolve().parents[1] / "data"
CONFIG = ModelConfig(backbone="resnet18", input_resolution=128, heads=("hm", "params", "handmap"))
REFERENCE = DecodeConfig(mode="reference")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random.pth"
    save_checkpoint(path, SMHRNet(CONFIG), CONFIG, epoch=0, meta={"trained": False})
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    torch.set_num_threads(2)
    return Predictor(checkpoint, device="cpu", decode=DecodeConfig(mode="robot", score_threshold=0))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    image = cv2.imread(str(DATA / "handSrc.jpg"))
    assert image is not None
    return image


def test_peak_only_heads_equal_the_naive_full_map_path(predictor: Predictor, photo) -> None:
    (result,) = predictor.predict([photo])
    square, _ = letterbox(photo, CONFIG.input_resolution)
    with torch.inference_mode():
        maps = predictor.network(normalise(square[None]))
    peaks = find_peaks(maps["hm"], predictor.decode.top_k(128), 0.0)
    b, ys, xs = peaks.batch_index, peaks.ys, peaks.xs
    is_right, probability = choose_side(maps["handmap"][b, :, ys, xs])
    naive = split_params(select_params(maps["params"][b, :, ys, xs], is_right))
    assert len(result.hands) == len(peaks) == 4
    for i, hand in enumerate(result.hands):
        assert hand.score == pytest.approx(float(peaks.scores[i]), abs=1e-6)
        assert bool(hand.handedness) == bool(is_right[i])
        assert hand.handedness_probability == pytest.approx(float(probability[i]), abs=1e-5)
        np.testing.assert_allclose(hand.hand_pose, naive.hand_pose[i].numpy(), atol=1e-5)
        np.testing.assert_allclose(hand.global_orient, naive.global_orient[i].numpy(), atol=1e-5)
        np.testing.assert_allclose(hand.betas, naive.betas[i].numpy(), atol=1e-5)


def test_keypoints_are_the_projection_of_the_joints(predictor: Predictor, photo) -> None:
    (assumed,) = predictor.predict([photo])
    assert assumed.intrinsics_assumed
    for hand in assumed.hands:
        np.testing.assert_allclose(
            project(hand.joints_m.astype(np.float64), assumed.camera_matrix),
            hand.keypoints_px,
            atol=1e-2,
        )


def test_real_intrinsics_keep_keypoints_and_reproject_exactly(predictor: Predictor, photo) -> None:
    k = np.array([[600.0, 0, 330.0], [0, 610.0, 235.0], [0, 0, 1]])
    (assumed,) = predictor.predict([photo])
    (real,) = predictor.predict([photo], camera_matrices=[k])
    assert not real.intrinsics_assumed
    np.testing.assert_array_equal(real.camera_matrix, k)
    for a, r in zip(assumed.hands, real.hands, strict=True):
        np.testing.assert_allclose(r.keypoints_px, a.keypoints_px, atol=1e-2)
        np.testing.assert_allclose(
            project(r.joints_m.astype(np.float64), k), r.keypoints_px, atol=1e-2
        )
        np.testing.assert_allclose(
            r.joints_m[:, 2] - r.joints_m[0, 2], a.joints_m[:, 2] - a.joints_m[0, 2], atol=1e-5
        )
        assert r.vertices_m.shape == (778, 3)


def test_batch_equals_one_by_one_and_rgb_equals_bgr(predictor: Predictor, photo) -> None:
    small = cv2.resize(photo, (200, 300))
    together = predictor.predict([photo, small])
    alone = [predictor.predict([photo])[0], predictor.predict([small])[0]]
    for a, b in zip(together, alone, strict=True):
        assert a.image_size == b.image_size
        for ha, hb in zip(a.hands, b.hands, strict=True):
            np.testing.assert_allclose(ha.joints_m, hb.joints_m, atol=1e-4)
    (rgb,) = predictor.predict([np.ascontiguousarray(photo[:, :, ::-1])], color_order="rgb")
    np.testing.assert_allclose(rgb.hands[0].keypoints_px, alone[0].hands[0].keypoints_px, atol=1e-3)


def test_reference_mode_reads_one_peak_at_small_inputs_without_threshold(checkpoint, photo) -> None:
    # The release demo reads K=1 peak at 224 px input and below, K=4 above; no threshold.
    predictor = Predictor(checkpoint, device="cpu", decode=REFERENCE)
    (result,) = predictor.predict([photo])
    assert len(result.hands) == 1
    assert result.hands[0].score < 0.3
    wide = Predictor(checkpoint, device="cpu", decode=REFERENCE, input_resolution=256)
    assert len(wide.predict([photo])[0].hands) == 4
    robot = Predictor(checkpoint, device="cpu", decode=DecodeConfig(score_threshold=0.3))
    assert robot.predict([photo])[0].hands == ()


def test_non_finite_network_output_drops_the_hand_and_counts_it(checkpoint: Path, photo) -> None:
    predictor = Predictor(checkpoint, device="cpu", decode=DecodeConfig(score_threshold=0))
    with torch.no_grad():
        predictor.network.params[2].bias[5] = float("nan")
    (result,) = predictor.predict([photo])
    assert result.hands == ()
    assert result.non_finite_hands == 4


def test_bad_inputs_give_clear_errors(predictor: Predictor, tmp_path: Path) -> None:
    with pytest.raises(PredictorError, match="does not exist"):
        Predictor(tmp_path / "missing.pth", device="cpu")
    with pytest.raises(PredictorError, match="hand model file not found"):
        Predictor(predictor.checkpoint_path, hand_model_dir=tmp_path, device="cpu")
    with pytest.raises(PredictorError, match="uint8"):
        predictor.predict([np.zeros((10, 10, 3), dtype=np.float32)])
    with pytest.raises(PredictorError, match=r"shape \(H, W, 3\)"):
        predictor.predict([np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(PredictorError, match="too small"):
        predictor.predict([np.zeros((0, 10, 3), dtype=np.uint8)])
    with pytest.raises(PredictorError, match="color_order"):
        predictor.predict([np.zeros((10, 10, 3), dtype=np.uint8)], color_order="yuv")
