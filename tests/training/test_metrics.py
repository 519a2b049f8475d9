"""FreiHAND-protocol and multi-hand metrics against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    PCK_THRESHOLDS_MM,
    MetricAccumulator,
    PredictedHand,
    TrueHand,
    aligned_errors_mm,
    curve_auc,
    f_score,
    format_table,
    match_hands,
    pck_curve,
    procrustes_align,
)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


@pytest.fixture
def cloud() -> np.ndarray:
    return np.random.default_rng(0).normal(scale=0.05, size=(21, 3))


def test_similarity_copy_aligns_exactly(cloud: np.ndarray) -> None:
    rot = _rotation(np.array([0.3, -1.0, 0.5]), 2.1)
    moved = 1.7 * cloud @ rot.T + np.array([0.4, -0.2, 0.9])
    np.testing.assert_allclose(procrustes_align(moved, cloud), cloud, atol=1e-12)
    assert aligned_errors_mm(moved, cloud).max() < 1e-9


def test_mirror_image_is_not_aligned_by_a_reflection(cloud: np.ndarray) -> None:
    mirrored = cloud * np.array([-1.0, 1.0, 1.0])
    aligned = procrustes_align(mirrored, cloud)
    # A proper rotation cannot undo a mirror: the error stays large, and the fitted
    # transform has a positive determinant.
    assert aligned_errors_mm(mirrored, cloud).mean() > 5.0
    centred = aligned - aligned.mean(0)
    source = mirrored - mirrored.mean(0)
    transform, *_ = np.linalg.lstsq(source, centred, rcond=None)
    assert np.linalg.det(transform) > 0


def test_known_offset_survives_alignment() -> None:
    # Two points 2 m apart; the prediction moves one of them 1 cm along the line. The best
    # similarity maps the prediction onto the target (scale absorbs it): zero error.
    target = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert aligned_errors_mm(target * 1.005, target).max() < 1e-9
    # Square vs a square with one corner pushed out by d along the diagonal: worked out by
    # hand (centroid shift d/4 plus least-squares scale/rotation), errors are symmetric.
    square = np.array([[1.0, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]])
    pushed = square.copy()
    pushed[0] += np.array([0.01, 0.01, 0.0])
    aligned = procrustes_align(pushed, square)
    # Mean preserved; the symmetric pair (1 and 3) has equal errors by reflection symmetry
    # about the diagonal.
    np.testing.assert_allclose(aligned.mean(0), square.mean(0), atol=1e-12)
    err = np.linalg.norm(aligned - square, axis=1)
    assert err[1] == pytest.approx(err[3], rel=1e-9)
    assert 0 < err.max() < 0.01


def test_pure_translation_offset_error_is_removed_but_noise_is_not() -> None:
    target = np.array([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]])
    assert aligned_errors_mm(target + 0.3, target).max() < 1e-9
    # Collapsing all points onto one gives an all-translation fit: error = distance to centroid.
    collapsed = np.zeros_like(target)
    expected = np.linalg.norm(target - target.mean(0), axis=1) * 1000
    np.testing.assert_allclose(aligned_errors_mm(collapsed, target), expected)


def test_pck_and_auc_by_hand() -> None:
    errors = np.array([0.0, 10.0, 30.0, 60.0])
    curve = pck_curve(errors)
    assert curve[0] == 0.25  # only the 0 mm error at the 0 mm threshold
    assert curve[-1] == 0.75  # 60 mm is beyond 50 mm
    # A step at t: AUC = 1 - t/50 for errors all equal to t (t on a threshold).
    t = PCK_THRESHOLDS_MM[33]
    assert curve_auc(pck_curve(np.full(5, t))) == pytest.approx(
        1 - t / 50 + 0.5 * (50 / 99) / 50, rel=1e-9
    )
    assert curve_auc(pck_curve(np.zeros(3))) == pytest.approx(1.0)
    assert curve_auc(pck_curve(np.full(3, 51.0))) == 0.0
    # Linear curve 0..1: area 1/2.
    assert curve_auc(np.linspace(0, 1, 100)) == pytest.approx(0.5)


def test_f_score_by_hand() -> None:
    target = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])
    pred = target.copy()
    pred[3] += np.array([0.0, 0.01, 0])  # 10 mm off
    at5 = f_score(pred, target, 5.0)
    assert (at5.precision, at5.recall) == (0.75, 0.75)
    assert at5.f == pytest.approx(0.75)
    assert f_score(pred, target, 15.0).f == 1.0
    # Extra far prediction: precision 4/5, recall 1.
    extra = np.vstack([target, [[10.0, 0, 0]]])
    score = f_score(extra, target, 5.0)
    assert (score.precision, score.recall) == (0.8, 1.0)
    assert score.f == pytest.approx(2 * 0.8 / 1.8)


def _true(centre: tuple[float, float], size: float, right: bool) -> TrueHand:
    kp = np.zeros((21, 2))
    kp[:, 0] = centre[0]
    kp[:, 1] = centre[1]
    kp[1] += (size / 2, size / 2)
    kp[2] -= (size / 2, size / 2)
    return TrueHand(is_right=right, keypoints_px=kp, keypoints_vis=np.ones(21))


def _pred(centre: tuple[float, float], right: bool, kp: np.ndarray) -> PredictedHand:
    return PredictedHand(
        centre_px=np.array(centre),
        score=0.9,
        is_right=right,
        keypoints_px=kp,
        joints_m=np.zeros((21, 3)),
        vertices_m=np.zeros((778, 3)),
    )


def test_matching_uses_radius_and_one_to_one() -> None:
    truth = [_true((100, 100), 40, True), _true((200, 100), 40, False)]
    preds = [
        _pred((205, 100), False, truth[1].keypoints_px),
        _pred((110, 100), True, truth[0].keypoints_px),
        _pred((100, 300), True, truth[0].keypoints_px),  # nowhere near a hand
    ]
    assert sorted(match_hands(preds, truth)) == [(0, 1), (1, 0)]
    # Radius 0.5 x 40 px = 20 px: a centre 25 px away does not match.
    assert match_hands([_pred((125, 100), True, truth[0].keypoints_px)], truth) == []


def test_accumulator_detection_handedness_and_keypoint_error() -> None:
    acc = MetricAccumulator()
    truth = [_true((100, 100), 40, True), _true((200, 100), 40, False)]
    shifted = truth[0].keypoints_px + np.array([3.0, 4.0])  # 5 px everywhere
    acc.add_image(
        [_pred((100, 100), False, shifted), _pred((50, 300), True, shifted)],
        truth,
    )
    acc.add_image([], [_true((100, 100), 40, True)])
    m = acc.summary()
    assert (m.images, m.true_hands, m.predicted_hands, m.matched_hands) == (2, 3, 2, 1)
    assert m.precision == 0.5
    assert m.recall == pytest.approx(1 / 3)
    assert m.handedness_accuracy == 0.0
    assert m.handedness_accuracy_right == 0.0 and m.handedness_accuracy_left is None
    assert m.keypoint_error_px == pytest.approx(5.0)
    assert m.keypoint_error_box_pct == pytest.approx(100 * 5 / 40)
    assert m.keypoint_error_box_pct_median == pytest.approx(100 * 5 / 40)
    assert m.pa_mpjpe_mm is None and m.hands_3d == 0
    assert "detection precision" in format_table(m)


def test_handedness_per_true_side_exposes_a_one_sided_network() -> None:
    acc = MetricAccumulator()
    truth = [_true((100, 100), 40, True), _true((200, 100), 40, False)]
    # Everything called right: half right overall, all of the right hands, none of the left.
    acc.add_image([_pred(tuple(t.centre_px()), True, t.keypoints_px) for t in truth], truth)
    acc.add_image([_pred((100, 100), True, truth[0].keypoints_px)], truth[:1])
    m = acc.summary()
    assert m.handedness_accuracy == pytest.approx(2 / 3)
    assert (m.handedness_accuracy_right, m.handedness_accuracy_left) == (1.0, 0.0)
    assert "handedness accuracy, left hands" in format_table(m)


def test_box_error_median_is_over_hands_and_differs_from_the_mean() -> None:
    acc = MetricAccumulator()
    truth = [_true((100, 100), 40, True), _true((200, 100), 40, True), _true((300, 100), 40, True)]
    offsets = [1.0, 2.0, 12.0]  # px everywhere: 2.5 %, 5 %, 30 % of the 40 px box
    preds = [
        _pred(tuple(t.centre_px()), True, t.keypoints_px + np.array([off, 0.0]))
        for t, off in zip(truth, offsets, strict=True)
    ]
    acc.add_image(preds, truth)
    m = acc.summary()
    assert m.keypoint_error_box_pct_median == pytest.approx(5.0)
    assert m.keypoint_error_box_pct == pytest.approx((2.5 + 5.0 + 30.0) / 3)
    assert "2D keypoint error (% box, median)" in format_table(m)
    assert MetricAccumulator().summary().keypoint_error_box_pct_median is None


def test_box_error_median_comes_with_an_interval_over_images() -> None:
    acc = MetricAccumulator()
    rng = np.random.default_rng(7)
    for image in range(30):
        truth = [_true((100 + 100 * i, 100), 40, True) for i in range(1 + image % 3)]
        offsets = rng.uniform(0.5, 6.0, size=len(truth))  # px: 1.25-15 % of the 40 px box
        acc.add_image(
            [
                _pred(tuple(t.centre_px()), True, t.keypoints_px + np.array([off, 0.0]))
                for t, off in zip(truth, offsets, strict=True)
            ],
            truth,
        )
    m = acc.summary()
    low, high = m.keypoint_error_box_pct_median_ci95
    assert 1.25 <= low < m.keypoint_error_box_pct_median < high <= 15.0
    assert f"{low:.4f} - {high:.4f}" in format_table(m)
    assert m.to_dict()["keypoint_error_box_pct_median_ci95"] == (low, high)
    assert MetricAccumulator().summary().keypoint_error_box_pct_median_ci95 is None


def test_accumulator_3d_metrics(cloud: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    verts = rng.normal(scale=0.05, size=(778, 3))
    rot = _rotation(np.array([1.0, 0.2, 0.0]), 0.7)
    truth = TrueHand(
        is_right=True,
        keypoints_px=np.full((21, 2), 50.0) + rng.normal(size=(21, 2)) * 10,
        keypoints_vis=np.ones(21),
        joints_m=cloud,
        vertices_m=verts,
    )
    pred = PredictedHand(
        centre_px=truth.centre_px(),
        score=1.0,
        is_right=True,
        keypoints_px=truth.keypoints_px,
        joints_m=0.9 * cloud @ rot.T + 0.1,
        vertices_m=0.9 * verts @ rot.T + 0.1,
    )
    acc = MetricAccumulator()
    acc.add_image([pred], [truth])
    m = acc.summary()
    assert m.hands_3d == 1
    assert m.pa_mpjpe_mm < 1e-6 and m.pa_mpvpe_mm < 1e-6
    assert m.auc_joints == pytest.approx(1 - 0.5 * (50 / 99) / 50)  # first step is from 0 mm
    assert m.f_score_5mm == 1.0 and m.f_score_15mm == 1.0
    assert m.to_dict()["pck_joints"][-1] == 1.0
