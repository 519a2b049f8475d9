"""The 2D fit on the real open hand model: it recovers a known hand from its projected joints."""

from __future__ import annotations

import pytest
import torch

from smhr_core.fit_2d import FitSettings, finger_pose_prior, fit_hands, project, start_in_camera
from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory

RESOLUTION = 256


@pytest.fixture(scope="module")
def hand_model() -> HandModel:
    return HandModel.from_directory(open_hand_directory())


def _true_and_start(seed: int):
    """Three true hands (right, left, right) and a start perturbed as a network's guess is."""
    g = torch.Generator().manual_seed(seed)
    n = 3
    orient = torch.randn(n, 3, generator=g) * 0.6
    pose = torch.randn(n, 45, generator=g) * 0.2
    betas = torch.randn(n, 10, generator=g) * 0.5
    translation = torch.tensor([[-0.08, 0.02, 0.55], [0.05, -0.04, 0.7], [0.02, 0.06, 0.45]])
    is_right = torch.tensor([True, False, True])
    start = (
        orient + torch.randn(n, 3, generator=g) * 0.25,
        pose + torch.randn(n, 45, generator=g) * 0.08,
        translation + torch.tensor([0.015, -0.01, 0.04]),
    )
    return (orient, pose, betas, translation, is_right), start


def _error_pct(hand_model, params, betas, is_right, target):
    orient, pose, translation = params
    keypoints = project(hand_model.joints(orient, pose, betas, translation, is_right), RESOLUTION)
    side = (target.amax(1) - target.amin(1)).amax(-1)
    return ((keypoints - target).norm(dim=-1).mean(-1) / side * 100).tolist()


def test_fit_recovers_a_hand_from_its_projected_joints(hand_model: HandModel) -> None:
    (orient, pose, betas, translation, is_right), start = _true_and_start(0)
    target = project(hand_model.joints(orient, pose, betas, translation, is_right), RESOLUTION)
    before = _error_pct(hand_model, start, betas, is_right, target)
    assert min(before) > 8.0  # the start is visibly off: the test can fail
    fitted = fit_hands(
        hand_model, *start[:2], betas, start[2], is_right, target, torch.ones(3, 21), RESOLUTION
    )
    after = _error_pct(
        hand_model, (fitted.global_orient, fitted.hand_pose, fitted.translation), betas, is_right,
        target,
    )  # fmt: skip
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    assert max(after) < 4.0 and max(ratios) < 0.3, (before, after)
    assert bool((fitted.cost_after < fitted.cost_before).all())
    # The priors hold the fit near the start: the finger pose moves, but not far.
    change = (fitted.hand_pose - start[1]).abs().mean()
    assert 0.005 < float(change) < 0.2


def test_unconfident_joints_do_not_pull(hand_model: HandModel) -> None:
    (orient, pose, betas, translation, is_right), start = _true_and_start(1)
    target = project(hand_model.joints(orient, pose, betas, translation, is_right), RESOLUTION)
    wrong = target.clone()
    wrong[:, 16:] += 40.0  # fingertips far off, reported with a low score
    errors = {}
    for tip_score in (1.0, 0.02):  # 0.02 is below the default cut-off
        confidence = torch.ones(3, 21)
        confidence[:, 16:] = tip_score
        fitted = fit_hands(
            hand_model, *start[:2], betas, start[2], is_right, wrong, confidence, RESOLUTION
        )
        errors[tip_score] = _error_pct(
            hand_model, (fitted.global_orient, fitted.hand_pose, fitted.translation), betas,
            is_right, target,
        )  # fmt: skip
    assert max(errors[0.02]) < 6.0, errors
    assert all(low < 0.6 * high for low, high in zip(errors[0.02], errors[1.0], strict=True))


def test_the_confidence_power_weakens_the_pull_of_doubtful_joints(hand_model: HandModel) -> None:
    """Fingertips 40 px off with a middling score (0.3, above the cut-off) against the rest at
    0.9: squaring the scores lets the sure joints decide, and the fit lands closer to the truth."""
    (orient, pose, betas, translation, is_right), start = _true_and_start(5)
    target = project(hand_model.joints(orient, pose, betas, translation, is_right), RESOLUTION)
    wrong = target.clone()
    wrong[:, 16:] += 40.0
    confidence = torch.full((3, 21), 0.9)
    confidence[:, 16:] = 0.3
    errors = {}
    for power in (1.0, 2.0):
        fitted = fit_hands(
            hand_model, *start[:2], betas, start[2], is_right, wrong, confidence, RESOLUTION,
            FitSettings(confidence_power=power),
        )  # fmt: skip
        errors[power] = _error_pct(
            hand_model, (fitted.global_orient, fitted.hand_pose, fitted.translation), betas,
            is_right, target,
        )  # fmt: skip
    assert all(sq < 0.8 * lin for sq, lin in zip(errors[2.0], errors[1.0], strict=True)), errors


def test_zero_iterations_and_no_evidence_keep_the_network_hand(hand_model: HandModel) -> None:
    (orient, pose, betas, translation, is_right), start = _true_and_start(2)
    target = project(hand_model.joints(orient, pose, betas, translation, is_right), RESOLUTION)
    for settings, confidence in (
        (FitSettings(iterations=0), torch.ones(3, 21)),
        (FitSettings(), torch.zeros(3, 21)),
    ):
        fitted = fit_hands(
            hand_model, *start[:2], betas, start[2], is_right, target, confidence, RESOLUTION,
            settings,
        )  # fmt: skip
        torch.testing.assert_close(fitted.global_orient, start[0])
        torch.testing.assert_close(fitted.hand_pose, start[1])
        torch.testing.assert_close(fitted.translation, start[2])


def test_non_finite_joints_do_not_pull(hand_model: HandModel) -> None:
    (orient, pose, betas, translation, is_right), start = _true_and_start(4)
    target = project(hand_model.joints(orient, pose, betas, translation, is_right), RESOLUTION)
    broken, confidence = target.clone(), torch.ones(3, 21)
    broken[0, :5] = float("nan")
    confidence[1, :] = float("nan")  # hand 1 has no usable joint at all
    fitted = fit_hands(
        hand_model, *start[:2], betas, start[2], is_right, broken, confidence, RESOLUTION
    )
    for value in (fitted.global_orient, fitted.hand_pose, fitted.translation):
        assert bool(torch.isfinite(value).all())
    torch.testing.assert_close(fitted.hand_pose[1], start[1][1])
    before = _error_pct(hand_model, start, betas, is_right, target)
    after = _error_pct(
        hand_model, (fitted.global_orient, fitted.hand_pose, fitted.translation), betas, is_right,
        target,
    )  # fmt: skip
    assert after[0] < 0.5 * before[0] and after[2] < 0.5 * before[2], (before, after)


def test_fit_runs_on_inference_mode_tensors(hand_model: HandModel) -> None:
    """The predictor hands over tensors made under `torch.inference_mode`."""
    (orient, pose, betas, translation, is_right), start = _true_and_start(3)
    with torch.inference_mode():
        target = project(hand_model.joints(orient, pose, betas, translation, is_right), RESOLUTION)
        frozen = [t.clone() for t in (*start, betas)]
    fitted = fit_hands(
        hand_model, frozen[0], frozen[1], frozen[3], frozen[2], is_right, target,
        torch.ones(3, 21), RESOLUTION,
    )  # fmt: skip
    assert bool((fitted.cost_after < fitted.cost_before).all())


def test_the_finger_prior_lets_fingers_bend_rather_than_twist(hand_model: HandModel) -> None:
    """The prior's axes are the model's: each finger joint's z value bends the finger towards the
    palm, and fitting to bent fingers moves those values, not the twist (x) ones."""
    n = 2
    betas, is_right = torch.zeros(n, 10), torch.tensor([True, False])
    orient = torch.tensor([[0.3, -0.2, 0.1], [0.2, 0.3, -0.1]])
    translation = torch.tensor([[0.02, 0.01, 0.5], [-0.03, 0.02, 0.55]])
    bent = torch.zeros(n, 45)
    bent[:, 2:36:3] = 0.5  # every finger joint flexed by 0.5 rad; the thumb straight
    target = project(hand_model.joints(orient, bent, betas, translation, is_right), RESOLUTION)
    flat = torch.zeros(n, 45)
    settings = FitSettings()
    prior = finger_pose_prior(settings)
    assert prior.shape == (45,)
    assert prior[2] == settings.flexion_prior and prior[0] == settings.twist_prior
    assert prior[1] == settings.spread_prior and bool((prior[36:] == settings.thumb_prior).all())
    fitted = fit_hands(
        hand_model, orient, flat, betas, translation, is_right, target, torch.ones(n, 21),
        RESOLUTION, settings,
    )  # fmt: skip
    change = (fitted.hand_pose - flat)[:, :36].reshape(n, 12, 3)
    flexion, twist = change[..., 2].mean(), change[..., 0].abs().mean()
    assert float(flexion) > 0.2 and float(twist) < 0.25 * float(flexion), change
    before = _error_pct(hand_model, (orient, flat, translation), betas, is_right, target)
    after = _error_pct(
        hand_model, (fitted.global_orient, fitted.hand_pose, fitted.translation), betas, is_right,
        target,
    )  # fmt: skip
    assert all(a < 0.4 * b for a, b in zip(after, before, strict=True)), (before, after)


CROP_CAMERA = torch.tensor([[341.0, 0.0, 278.0], [0.0, 341.0, 38.0], [0.0, 0.0, 1.0]])
"""A crop's own camera in its input pixels: a crop of the top-right part of a larger image (the
optical axis lies outside the crop, 150 px right and 90 px up of its centre) at f = 341 px."""


def test_fit_in_the_inputs_own_camera_recovers_a_hand_seen_off_axis(
    hand_model: HandModel,
) -> None:
    (orient, pose, betas, translation, is_right), start = _true_and_start(6)
    camera = CROP_CAMERA.expand(3, 3, 3)
    joints = hand_model.joints(orient, pose, betas, translation, is_right)
    target = project(joints, RESOLUTION, camera)
    # The same joints through the virtual camera land elsewhere: the camera matters.
    assert float((project(joints, RESOLUTION) - target).norm(dim=-1).mean()) > 50.0
    fitted = fit_hands(
        hand_model, *start[:2], betas, start[2], is_right, target, torch.ones(3, 21), RESOLUTION,
        camera_px=camera,
    )  # fmt: skip

    def error(params) -> list[float]:
        posed = hand_model.joints(params[0], params[1], betas, params[2], is_right)
        side = (target.amax(1) - target.amin(1)).amax(-1)
        distance = (project(posed, RESOLUTION, camera) - target).norm(dim=-1).mean(-1)
        return (distance / side * 100).tolist()

    before = error(start)
    after = error((fitted.global_orient, fitted.hand_pose, fitted.translation))
    assert min(before) > 8.0 and max(after) < 4.0, (before, after)


def test_start_in_camera_keeps_the_wrist_pixel_and_turns_the_hand_with_its_ray(
    hand_model: HandModel,
) -> None:
    """A hand read in the virtual camera, moved into the crop's own camera: its wrist stays on
    its pixel, its size in the image stays, and turning it with the ray keeps its look (the
    projected joints) far closer than moving it alone; in the virtual camera nothing moves."""
    g = torch.Generator().manual_seed(7)
    n = 3
    orient, pose = torch.randn(n, 3, generator=g) * 0.6, torch.randn(n, 45, generator=g) * 0.2
    betas, is_right = torch.zeros(n, 10), torch.tensor([True, False, True])
    translation = torch.tensor([[0.0, 0.0, 0.5], [0.01, -0.01, 0.45], [0.0, 0.02, 0.6]])
    joints = hand_model.joints(orient, pose, betas, translation, is_right)
    seen = project(joints, RESOLUTION)
    side = (seen.amax(1) - seen.amin(1)).amax(-1)
    camera = CROP_CAMERA.expand(n, 3, 3)
    turned, moved = start_in_camera(orient, translation, joints[:, 0], camera, RESOLUTION)
    placed = project(hand_model.joints(turned, pose, betas, moved, is_right), RESOLUTION, camera)
    unturned = project(hand_model.joints(orient, pose, betas, moved, is_right), RESOLUTION, camera)
    torch.testing.assert_close(placed[:, 0], seen[:, 0], atol=1e-3, rtol=0.0)
    size = (placed.amax(1) - placed.amin(1)).amax(-1)
    assert bool(((size / side - 1.0).abs() < 0.15).all()), size / side
    look = (placed - seen).norm(dim=-1).mean(-1) / side
    look_unturned = (unturned - seen).norm(dim=-1).mean(-1) / side
    assert bool((look < 0.7 * look_unturned).all()), (look, look_unturned)
    virtual = torch.tensor(
        [[512.0, 0.0, RESOLUTION / 2], [0.0, 512.0, RESOLUTION / 2], [0.0, 0.0, 1.0]]
    ).expand(n, 3, 3)
    same_orient, same_translation = start_in_camera(
        orient, translation, joints[:, 0], virtual, RESOLUTION
    )
    torch.testing.assert_close(same_orient, orient, atol=1e-5, rtol=0.0)
    torch.testing.assert_close(same_translation, translation, atol=1e-6, rtol=0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("iterations", -1),
        ("iterations", 1.5),
        ("flexion_prior", -0.1),
        ("spread_prior", -0.1),
        ("twist_prior", float("nan")),
        ("thumb_prior", -1.0),
        ("confidence_power", -1.0),
    ],
)
def test_settings_are_validated(field: str, value) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        FitSettings(**{field: value})
