"""The shipped model's keypoint fit, second look and mirror reading on the bundled demo frames
(real network, real hand model): each keeps the detections and brings the 2D joints closer to the
frames' ground truth; the mirror reading's gain is checked on validation scenes, where it is
measured."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from smhr_core.config import DecodeConfig
from smhr_core.predictor import Predictor
from training.synthetic import SceneConfig, SceneGenerator

DEMO = Path(__file__).resolve().parents[2] / "smhr_ros" / "data" / "demo"
VALIDATION_SEEDS = range(7_000_000, 7_000_040)
"""The first 40 validation scenes (seeds 7000000-7000199, 256 px, supersampled, as `python -m
training synth` writes them). The mirror reading's gain is a shift of the median over many hands:
v34 on these 108 hands 3.91 against 4.11 % of the box, on all 470 of the 200 scenes 4.01 against
4.22; the 26 hands of the demo frames below (median 1.7 against 1.9 %, mean 2.2 against 2.8; v33
2.2 against 1.9 and 2.5 against 2.4) are too few and too easy to show it."""


@pytest.fixture(scope="module")
def frames() -> tuple[list[np.ndarray], list[list[dict]]]:
    labels = json.loads((DEMO / "labels.json").read_text())
    chosen = labels["frames"][::4]  # 12 frames over the sequence, 1-3 hands each
    images = [cv2.imread(str(DEMO / f["file"])) for f in chosen]
    assert all(image is not None for image in images)
    return images, [f["hands"] for f in chosen]


def _errors(results, truth) -> list[float]:
    """Per labelled hand: mean 2D joint error of the nearest predicted hand, % of its box."""
    errors = []
    for result, hands in zip(results, truth, strict=True):
        for hand in hands:
            true = np.asarray(hand["keypoints_px"])
            side = (true.max(0) - true.min(0)).max()
            best = min(
                (np.linalg.norm(h.keypoints_px - true, axis=1).mean() for h in result.hands),
                default=np.inf,
            )
            errors.append(100.0 * best / side)
    return errors


def test_the_fit_keeps_the_detections_and_lowers_the_2d_error(frames) -> None:
    torch.set_num_threads(2)
    images, truth = frames
    fitted = Predictor(
        None, device="cpu", decode=DecodeConfig(second_look=False, mirror_reading=False)
    )
    plain = Predictor(None, device="cpu", decode=DecodeConfig(fit_keypoints=False))
    assert fitted.fits_keypoints and not plain.fits_keypoints
    assert not fitted.looks_twice and not plain.looks_twice
    assert fitted.model_description.endswith("default_model.pth +keypoint-fit")
    assert plain.model_description.endswith("default_model.pth")
    with_fit, without = fitted.predict(images), plain.predict(images)
    moved = []
    for a_result, b_result in zip(with_fit, without, strict=True):
        assert len(a_result.hands) == len(b_result.hands)
        for a, b in zip(a_result.hands, b_result.hands, strict=True):
            # Detection, side and shape are the network's; the fit moves pose and position.
            np.testing.assert_array_equal(a.centre_px, b.centre_px)
            assert a.handedness == b.handedness and a.score == b.score
            np.testing.assert_array_equal(a.betas, b.betas)
            assert abs(a.joints_m[0, 2] / b.joints_m[0, 2] - 1.0) < 0.15
            moved.append(np.linalg.norm(a.keypoints_px - b.keypoints_px, axis=1).mean())
    assert np.median(moved) > 0.5  # the fit really moved the joints (pixels)
    fit_errors, plain_errors = _errors(with_fit, truth), _errors(without, truth)
    assert np.median(fit_errors) < 0.95 * np.median(plain_errors), (
        np.median(fit_errors),
        np.median(plain_errors),
    )


def test_the_second_look_keeps_the_detections_and_lowers_the_2d_error(frames) -> None:
    torch.set_num_threads(2)
    images, truth = frames
    twice = Predictor(None, device="cpu", decode=DecodeConfig(mirror_reading=False))
    once = Predictor(
        None, device="cpu", decode=DecodeConfig(second_look=False, mirror_reading=False)
    )
    assert twice.looks_twice and not once.looks_twice
    assert twice.model_description.endswith("default_model.pth +keypoint-fit +second-look")
    second, first = twice.predict(images), once.predict(images)
    moved = []
    for a_result, b_result in zip(second, first, strict=True):
        assert len(a_result.hands) == len(b_result.hands)
        for a, b in zip(a_result.hands, b_result.hands, strict=True):
            # The first look's detection, reconstructed again from the crop around it.
            assert a.score == b.score
            np.testing.assert_array_equal(a.centre_px, b.centre_px)
            moved.append(np.linalg.norm(a.keypoints_px - b.keypoints_px, axis=1).mean())
    assert np.median(moved) > 0.3  # the second look really moved the joints (pixels)
    second_errors, first_errors = _errors(second, truth), _errors(first, truth)
    assert np.mean(second_errors) < np.mean(first_errors), (
        np.mean(second_errors),
        np.mean(first_errors),
    )


def test_reading_the_mirror_image_too_keeps_the_detections_and_lowers_the_2d_error(frames) -> None:
    torch.set_num_threads(2)
    images, truth = frames
    both = Predictor(None, device="cpu")
    alone = Predictor(None, device="cpu", decode=DecodeConfig(mirror_reading=False))
    assert both.model_description.endswith("default_model.pth +keypoint-fit +second-look +mirror")
    mirrored, plain = both.predict(images), alone.predict(images)
    moved = []
    for a_result, b_result in zip(mirrored, plain, strict=True):
        assert len(a_result.hands) == len(b_result.hands)
        for a, b in zip(a_result.hands, b_result.hands, strict=True):
            # The same detections; the hand and its side are read again from both images.
            assert a.score == b.score
            np.testing.assert_array_equal(a.centre_px, b.centre_px)
            moved.append(np.linalg.norm(a.keypoints_px - b.keypoints_px, axis=1).mean())
    assert np.median(moved) > 0.1  # the mirror image really moved the joints (pixels)
    generator = SceneGenerator(SceneConfig(resolution=256, supersampling=2))
    scenes = [generator.scene(seed) for seed in VALIDATION_SEEDS]
    images = [scene.image_bgr for scene in scenes]
    truth = [[{"keypoints_px": hand.keypoints_px} for hand in scene.hands] for scene in scenes]
    mirrored_errors = _errors(both.predict(images), truth)
    plain_errors = _errors(alone.predict(images), truth)
    assert np.median(mirrored_errors) < np.median(plain_errors), (
        np.median(mirrored_errors),
        np.median(plain_errors),
    )
