"""Evaluation metrics, written from the protocols' definitions.

FreiHAND protocol: Procrustes alignment (similarity transform by SVD, reflections excluded),
PA-MPJPE and PA-MPVPE in millimetres, the PCK curve over 0-50 mm at 100 thresholds and its
normalised area (AUC), and the F-score between aligned vertex sets at 5 mm and 15 mm. Joints and
vertices are aligned separately, as the protocol does.

Multi-hand images: predicted hands (from the decoded heatmap peaks, never the ground-truth
centres) are matched one-to-one to ground-truth hands; detection precision/recall, handedness
accuracy and the 2D keypoint error (pixels and percent of the hand's box size) follow from the
matches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from training.confidence import median_interval

PCK_MAX_MM = 50.0
PCK_STEPS = 100
PCK_THRESHOLDS_MM = np.linspace(0.0, PCK_MAX_MM, PCK_STEPS)
"""Thresholds of the PCK curve, millimetres (0 to 50 mm inclusive, 100 values)."""
F_SCORE_THRESHOLDS_MM = (5.0, 15.0)
MATCH_RADIUS_FRACTION = 0.5
"""A predicted centre matches a true hand within this fraction of the hand's box size."""


def procrustes_align(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Align `points` (N, 3) to `target` (N, 3) by the best scale, rotation and translation.

    Least-squares similarity transform (Umeyama): the rotation comes from the SVD of the
    cross-covariance, with the last singular direction flipped when that SVD would give a
    reflection (det < 0), so the result is always a proper rotation. Units are kept.
    """
    points = np.asarray(points, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if points.shape != target.shape or points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(
            f"procrustes_align: shapes {points.shape} and {target.shape} must both be (N, 3)"
        )
    mean_p = points.mean(axis=0)
    mean_t = target.mean(axis=0)
    p = points - mean_p
    t = target - mean_t
    var_p = float((p**2).sum())
    if var_p == 0.0:
        # All points coincide: only the translation is defined.
        return np.broadcast_to(mean_t, points.shape).copy()
    u, s, vt = np.linalg.svd(t.T @ p)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    rotation = (u * sign) @ vt
    scale = float((s * sign).sum()) / var_p
    return scale * p @ rotation.T + mean_t


def aligned_errors_mm(pred_m: np.ndarray, target_m: np.ndarray) -> np.ndarray:
    """Per-point error (N,) in millimetres after aligning `pred_m` to `target_m` (metres)."""
    aligned = procrustes_align(pred_m, target_m)
    return np.linalg.norm(aligned - np.asarray(target_m, dtype=np.float64), axis=1) * 1000.0


def pck_curve(errors_mm: np.ndarray, thresholds_mm: np.ndarray = PCK_THRESHOLDS_MM) -> np.ndarray:
    """Fraction of errors at or below each threshold (the PCK curve), one value per threshold."""
    errors = np.asarray(errors_mm, dtype=np.float64).reshape(-1)
    if errors.size == 0:
        raise ValueError("pck_curve: no errors given")
    return (errors[None, :] <= np.asarray(thresholds_mm)[:, None]).mean(axis=1)


def curve_auc(curve: np.ndarray, thresholds_mm: np.ndarray = PCK_THRESHOLDS_MM) -> float:
    """Area under a PCK curve by the trapezoid rule, normalised by the threshold range (0..1)."""
    th = np.asarray(thresholds_mm, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    area = float((0.5 * (curve[1:] + curve[:-1]) * np.diff(th)).sum())
    return area / float(th[-1] - th[0])


@dataclass(frozen=True)
class FScore:
    """F-score between two point sets at one distance threshold."""

    f: float
    precision: float
    """Fraction of predicted points closer than the threshold to some true point."""
    recall: float
    """Fraction of true points closer than the threshold to some predicted point."""


def f_score(pred_m: np.ndarray, target_m: np.ndarray, threshold_mm: float) -> FScore:
    """F-score between point sets (metres) with a strict distance threshold in millimetres."""
    pred = np.asarray(pred_m, dtype=np.float64)
    target = np.asarray(target_m, dtype=np.float64)
    threshold = threshold_mm / 1000.0
    to_target, _ = cKDTree(target).query(pred)
    to_pred, _ = cKDTree(pred).query(target)
    precision = float((to_target < threshold).mean())
    recall = float((to_pred < threshold).mean())
    f = 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)
    return FScore(f=f, precision=precision, recall=recall)


@dataclass(frozen=True, eq=False)
class PredictedHand:
    """One decoded hand, in network-input pixels and the virtual camera (metres)."""

    centre_px: np.ndarray
    """(2,) heatmap peak location (u, v)."""
    score: float
    is_right: bool
    keypoints_px: np.ndarray
    """(21, 2) FreiHAND order."""
    joints_m: np.ndarray
    """(21, 3)."""
    vertices_m: np.ndarray
    """(778, 3)."""


@dataclass(frozen=True, eq=False)
class TrueHand:
    """One labelled hand, in network-input pixels and the virtual camera (metres)."""

    is_right: bool
    keypoints_px: np.ndarray
    """(21, 2) FreiHAND order."""
    keypoints_vis: np.ndarray
    """(21,) 1 where the keypoint is labelled."""
    joints_m: np.ndarray | None = None
    """(21, 3), or None without 3D labels."""
    vertices_m: np.ndarray | None = None
    """(778, 3), or None without 3D labels."""

    def visible_keypoints(self) -> np.ndarray:
        return self.keypoints_px[np.asarray(self.keypoints_vis) > 0]

    def centre_px(self) -> np.ndarray:
        """Mean of the labelled keypoints (the multi-hand training centre)."""
        visible = self.visible_keypoints()
        if len(visible) == 0:
            raise ValueError("TrueHand: no labelled keypoints, the hand has no centre")
        return visible.mean(axis=0)

    def box_size_px(self) -> float:
        """Longest side of the labelled keypoints' bounding box, pixels (at least 1)."""
        visible = self.visible_keypoints()
        return max(1.0, float((visible.max(axis=0) - visible.min(axis=0)).max()))


def match_hands(
    predicted: list[PredictedHand],
    truth: list[TrueHand],
    radius_fraction: float = MATCH_RADIUS_FRACTION,
) -> list[tuple[int, int]]:
    """One-to-one matches (predicted index, true index) by predicted centre.

    Minimum total centre distance (Hungarian assignment); a pair counts only when the predicted
    centre lies within `radius_fraction` x the true hand's box size of the true centre.
    """
    if not predicted or not truth:
        return []
    pred_c = np.stack([np.asarray(p.centre_px, dtype=np.float64) for p in predicted])
    true_c = np.stack([t.centre_px() for t in truth])
    radius = np.array([radius_fraction * t.box_size_px() for t in truth])
    dist = np.linalg.norm(pred_c[:, None, :] - true_c[None, :, :], axis=2)
    # Out-of-radius pairs get a cost no in-radius assignment can beat, then are dropped.
    cost = np.where(dist <= radius[None, :], dist, dist + 1e9)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if dist[r, c] <= radius[c]]


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass(frozen=True)
class EvaluationMetrics:
    """Summary of one evaluation. Metrics that had no data to be computed on are None."""

    images: int
    true_hands: int
    predicted_hands: int
    matched_hands: int
    precision: float | None
    recall: float | None
    handedness_accuracy: float | None
    handedness_accuracy_right: float | None
    """Over the matched hands that are truly right."""
    handedness_accuracy_left: float | None
    """Over the matched hands that are truly left."""
    keypoint_error_px: float | None
    """Mean 2D error over labelled keypoints of matched hands, input pixels."""
    keypoint_error_box_pct: float | None
    """Same, each hand's error in percent of its box size, averaged over hands."""
    keypoint_error_box_pct_median: float | None
    """The median over hands of each hand's error in percent of its box size."""
    keypoint_error_box_pct_median_ci95: tuple[float, float] | None
    """95 % bootstrap interval (low, high) of that median, images resampled
    (`training.confidence`)."""
    hands_3d: int
    """Matched hands with 3D labels (the FreiHAND metrics are over these)."""
    pa_mpjpe_mm: float | None
    pa_mpvpe_mm: float | None
    auc_joints: float | None
    """AUC of the joints' PCK curve over 0-50 mm."""
    auc_vertices: float | None
    f_score_5mm: float | None
    f_score_15mm: float | None
    pck_joints: list[float] | None = field(default=None, repr=False)
    """The joints' PCK curve at `PCK_THRESHOLDS_MM`."""
    hand_keypoint_errors: list[tuple[int, int, float]] | None = field(default=None, repr=False)
    """(image, true hand, 2D error in % of its box) of every matched hand with labelled
    keypoints: images numbered from 1 in evaluation order, hands by their index in the image's
    labels. Two evaluations on the same scenes pair up by the first two (`training.compare`)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pck_thresholds_mm"] = PCK_THRESHOLDS_MM.tolist()
        return data


class MetricAccumulator:
    """Collects per-image matches and errors; `summary()` gives the dataset's metrics."""

    def __init__(self, radius_fraction: float = MATCH_RADIUS_FRACTION) -> None:
        self.radius_fraction = radius_fraction
        self._images = 0
        self._true = 0
        self._predicted = 0
        self._matched = 0
        self._handedness_correct = 0
        # Matched hands and correct sides per true side (right, left): a network that calls
        # every hand one side scores about 0.5 overall but 1 and 0 here.
        self._side_matched = {True: 0, False: 0}
        self._side_correct = {True: 0, False: 0}
        self._kp_errors_px: list[np.ndarray] = []
        self._kp_box_pct: list[float] = []
        self._kp_box_pct_image: list[int] = []
        self._kp_box_pct_hand: list[int] = []
        self._joint_errors: list[np.ndarray] = []
        self._vertex_errors: list[np.ndarray] = []
        self._vertex_errors_all: list[np.ndarray] = []
        self._f_scores: dict[float, list[float]] = {t: [] for t in F_SCORE_THRESHOLDS_MM}

    def add_image(self, predicted: list[PredictedHand], truth: list[TrueHand]) -> None:
        """Match one image's predicted hands to its true hands and record their errors."""
        self._images += 1
        self._true += len(truth)
        self._predicted += len(predicted)
        for p_idx, t_idx in match_hands(predicted, truth, self.radius_fraction):
            pred, true = predicted[p_idx], truth[t_idx]
            self._matched += 1
            self._handedness_correct += int(pred.is_right == true.is_right)
            self._side_matched[true.is_right] += 1
            self._side_correct[true.is_right] += int(pred.is_right == true.is_right)
            vis = np.asarray(true.keypoints_vis) > 0
            if vis.any():
                err = np.linalg.norm(pred.keypoints_px[vis] - true.keypoints_px[vis], axis=1)
                self._kp_errors_px.append(err)
                self._kp_box_pct.append(100.0 * float(err.mean()) / true.box_size_px())
                self._kp_box_pct_image.append(self._images)
                self._kp_box_pct_hand.append(int(t_idx))
            if true.joints_m is not None and true.vertices_m is not None:
                self._joint_errors.append(aligned_errors_mm(pred.joints_m, true.joints_m))
                self._vertex_errors.append(aligned_errors_mm(pred.vertices_m, true.vertices_m))
                aligned_v = procrustes_align(pred.vertices_m, true.vertices_m)
                for th in F_SCORE_THRESHOLDS_MM:
                    self._f_scores[th].append(f_score(aligned_v, true.vertices_m, th).f)

    def _side_accuracy(self, is_right: bool) -> float | None:
        matched = self._side_matched[is_right]
        return self._side_correct[is_right] / matched if matched else None

    def summary(self) -> EvaluationMetrics:
        """Metrics over every image added so far."""
        joints = np.concatenate(self._joint_errors) if self._joint_errors else None
        vertices = np.concatenate(self._vertex_errors) if self._vertex_errors else None
        kp = np.concatenate(self._kp_errors_px) if self._kp_errors_px else None
        pck_j = pck_curve(joints) if joints is not None else None
        return EvaluationMetrics(
            images=self._images,
            true_hands=self._true,
            predicted_hands=self._predicted,
            matched_hands=self._matched,
            precision=self._matched / self._predicted if self._predicted else None,
            recall=self._matched / self._true if self._true else None,
            handedness_accuracy=(
                self._handedness_correct / self._matched if self._matched else None
            ),
            handedness_accuracy_right=self._side_accuracy(True),
            handedness_accuracy_left=self._side_accuracy(False),
            keypoint_error_px=float(kp.mean()) if kp is not None and kp.size else None,
            keypoint_error_box_pct=_mean_or_none(self._kp_box_pct),
            keypoint_error_box_pct_median=(
                float(np.median(self._kp_box_pct)) if self._kp_box_pct else None
            ),
            keypoint_error_box_pct_median_ci95=median_interval(
                self._kp_box_pct, self._kp_box_pct_image
            ),
            hands_3d=len(self._joint_errors),
            pa_mpjpe_mm=float(joints.mean()) if joints is not None else None,
            pa_mpvpe_mm=float(vertices.mean()) if vertices is not None else None,
            auc_joints=curve_auc(pck_j) if pck_j is not None else None,
            auc_vertices=curve_auc(pck_curve(vertices)) if vertices is not None else None,
            f_score_5mm=_mean_or_none(self._f_scores[F_SCORE_THRESHOLDS_MM[0]]),
            f_score_15mm=_mean_or_none(self._f_scores[F_SCORE_THRESHOLDS_MM[1]]),
            pck_joints=pck_j.tolist() if pck_j is not None else None,
            hand_keypoint_errors=list(
                zip(self._kp_box_pct_image, self._kp_box_pct_hand, self._kp_box_pct, strict=True)
            ),
        )


def format_table(metrics: EvaluationMetrics) -> str:
    """A two-column text table of the metrics (units in the names)."""
    rows = [
        ("images", metrics.images),
        ("true hands", metrics.true_hands),
        ("predicted hands", metrics.predicted_hands),
        ("matched hands", metrics.matched_hands),
        ("detection precision", metrics.precision),
        ("detection recall", metrics.recall),
        ("handedness accuracy", metrics.handedness_accuracy),
        ("handedness accuracy, right hands", metrics.handedness_accuracy_right),
        ("handedness accuracy, left hands", metrics.handedness_accuracy_left),
        ("2D keypoint error (px)", metrics.keypoint_error_px),
        ("2D keypoint error (% box)", metrics.keypoint_error_box_pct),
        ("2D keypoint error (% box, median)", metrics.keypoint_error_box_pct_median),
        ("  95 % interval (images resampled)", metrics.keypoint_error_box_pct_median_ci95),
        ("hands with 3D labels", metrics.hands_3d),
        ("PA-MPJPE (mm)", metrics.pa_mpjpe_mm),
        ("PA-MPVPE (mm)", metrics.pa_mpvpe_mm),
        ("AUC joints 0-50 mm", metrics.auc_joints),
        ("AUC vertices 0-50 mm", metrics.auc_vertices),
        ("F@5 mm", metrics.f_score_5mm),
        ("F@15 mm", metrics.f_score_15mm),
    ]
    width = max(len(name) for name, _ in rows)
    lines = []
    for name, value in rows:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            text = "-"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, tuple):
            text = " - ".join(f"{v:.4f}" for v in value)
        else:
            text = f"{value:.4f}"
        lines.append(f"{name:<{width}}  {text}")
    return "\n".join(lines)
