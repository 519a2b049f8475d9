"""Training losses against values worked out by hand, on the real hand model and renderer."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from pytorch3d.transforms import axis_angle_to_matrix, matrix_to_axis_angle

from smhr_core.hand_model import HandModel
from smhr_core.network import KEYPOINT_JOINTS
from training import sample as S
from training.config import LossWeights
from training.joint_limits import left_limits, right_limits
from training.keypoint_targets import keypoint_targets
from training.losses import (
    BONES,
    SMHRLoss,
    focal_loss,
    gather_cells,
    side_loss,
)
from training.render import HandRenderer

R = 64
"""The input side of the conftest's `exact_scene` maps."""
W = R // 4
M = 2
"""Hand slots per sample of the `exact_scene` batches."""
SceneBuilder = Callable[..., tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_focal_loss_by_hand() -> None:
    probs = torch.tensor([[0.8, 0.3], [0.1, 0.5]])
    target = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    logits = torch.log(probs / (1 - probs))[None, None]
    expected = -(
        math.log(0.8) * 0.2**2
        + math.log(0.7) * 0.3**2 * 0.5**4
        + math.log(0.9) * 0.1**2
        + math.log(0.5) * 0.5**2
    )
    assert focal_loss(logits, target[None, None]).item() == pytest.approx(expected, rel=1e-5)
    # Two positives halve the normalised sum; no positive: the negative sum alone.
    two = torch.tensor([[1.0, 1.0], [0.0, 0.0]])[None, None]
    expected_two = -(math.log(0.8) * 0.04 + math.log(0.3) * 0.49 + math.log(0.9) * 0.01) / 2 - (
        math.log(0.5) * 0.25 / 2
    )
    assert focal_loss(logits, two).item() == pytest.approx(expected_two, rel=1e-5)
    none = torch.zeros(1, 1, 2, 2)
    expected_none = -sum(math.log(1 - p) * p**2 for p in (0.8, 0.3, 0.1, 0.5))
    assert focal_loss(logits, none).item() == pytest.approx(expected_none, rel=1e-5)
    # Saturated logits are clamped to 1e-4, not log(0).
    saturated = torch.full((1, 1, 2, 2), -100.0)
    assert torch.isfinite(focal_loss(saturated, target[None, None])).all()
    # Per sample: a batch of two gives each sample's own value.
    batch = focal_loss(torch.cat([logits, logits]), torch.cat([target[None, None], none]))
    assert batch.tolist() == pytest.approx([expected, expected_none], rel=1e-5)


def test_gather_cells() -> None:
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    ind = torch.tensor([[5, 0], [15, 6]])
    got = gather_cells(maps, ind)
    assert got.shape == (2, 2, 3)
    assert got[1, 1].tolist() == maps[1, :, 1, 2].tolist()
    assert got[0, 0].tolist() == maps[0, :, 1, 1].tolist()


def test_bones_are_the_20_freihand_bones() -> None:
    assert len(BONES) == 20
    assert {c for _, c in BONES} == set(range(1, 21))
    assert (0, 1) in BONES and (0, 17) in BONES and (19, 20) in BONES and (4, 5) not in BONES


def test_joint_limits_mirror() -> None:
    right, left = right_limits(), left_limits()
    assert (right[:, 0] < right[:, 1]).all() and (left[:, 0] < left[:, 1]).all()
    # index1 flexion (z) of the right hand is [-0.4, 1.7]; mirrored on the left: [-1.7, 0.4].
    assert right[2].tolist() == pytest.approx([-0.4, 1.7])
    assert left[2].tolist() == pytest.approx([-1.7, 0.4])
    assert left[0].tolist() == right[0].tolist()  # twist (x) is kept


@pytest.fixture(scope="module")
def renderer(hand_model: HandModel) -> HandRenderer:
    return HandRenderer(
        R, torch.tensor(hand_model.faces(True)), torch.tensor(hand_model.faces(False))
    )


def test_exact_labels_give_zero_geometric_losses(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(5, 6), (10, 9)], [(8, 8)]], [[True, False], [False]])
    loss, pred = SMHRLoss(LossWeights(), hand_model, R)(outputs, batch)
    terms = ("reprojection", "bone_direction", "joints_3d", "vertices_3d", "mano", "root_3d")
    for term in (*terms, "orientation", "finger_rotation"):
        assert getattr(loss, term).item() == pytest.approx(0.0, abs=1e-6), term
    # Poses inside the limits: the prior is the beta term alone, averaged per sample.
    betas = batch[S.MANO_BETAS]
    per_sample = [
        0.1 * ((betas[0, 0] ** 2).mean() + (betas[0, 1] ** 2).mean()) / 2,
        0.1 * (betas[1, 0] ** 2).mean(),
    ]
    assert loss.prior.item() == pytest.approx(float(sum(per_sample) / 2), rel=1e-5)
    assert loss.photometric.item() == 0 and loss.mask.item() == 0
    assert pred.valid.tolist() == [[True, True], [True, False]]
    # Gradients reach the parameter maps only at labelled cells (and the 3D/2D terms are 0,
    # so it is the prior's beta term that pulls there).
    loss.total.backward()
    grad = outputs["params"].grad.abs().sum(1)
    assert set(map(tuple, torch.nonzero(grad).tolist())) <= {(0, 6, 5), (0, 9, 10), (1, 8, 8)}


def test_values_read_at_the_centres_give_the_loss_and_gradients_of_full_maps(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(5, 6), (10, 9)], [(8, 8)]], [[True, False], [False]])
    torch.manual_seed(0)
    with torch.no_grad():
        outputs["params"] += 0.05 * torch.randn_like(outputs["params"])  # nonzero 2D/3D terms
    loss_fn = SMHRLoss(LossWeights(), hand_model, R)
    full, _ = loss_fn(outputs, batch)
    full.total.backward()
    at_centres = gather_cells(outputs["params"].detach(), batch[S.IND]).requires_grad_(True)
    sparse, _ = loss_fn({**outputs, "params": at_centres}, batch)
    assert sparse.reprojection.item() > 1e-3 and sparse.orientation.item() > 1e-3
    for term in ("total", "reprojection", "joints_3d", "orientation", "prior", "side"):
        assert getattr(sparse, term).item() == pytest.approx(getattr(full, term).item()), term
    sparse.total.backward()
    torch.testing.assert_close(at_centres.grad, gather_cells(outputs["params"].grad, batch[S.IND]))


def test_labelled_handedness_picks_the_parameter_set(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(7, 7)]], [[False]])
    weights = LossWeights()
    assert SMHRLoss(weights, hand_model, R)(outputs, batch)[0].reprojection.item() < 1e-8
    batch[S.IS_RIGHT][0, 0] = 1  # now the (garbage) right set is read
    assert SMHRLoss(weights, hand_model, R)(outputs, batch)[0].reprojection.item() > 1.0


def test_reprojection_and_bone_direction_by_hand(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(5, 6), (10, 9)]], [[True, True]])
    loss_fn = SMHRLoss(LossWeights(), hand_model, R)
    shifted = dict(batch)
    shifted[S.KEYPOINTS_PX] = batch[S.KEYPOINTS_PX] + torch.tensor([3.0, 4.0])
    loss = loss_fn(outputs, shifted)[0]
    # Mean over u, v of squared pixel errors: (9 + 16) / 2, times 0.01. Directions unchanged.
    assert loss.reprojection.item() == pytest.approx(0.125, rel=1e-4)
    assert loss.bone_direction.item() == pytest.approx(0.0, abs=1e-6)
    # Mirror one hand's labels in u about its wrist: every bone's unit vector (dx, dy) becomes
    # (-dx, dy), a squared difference of 4 dx^2 / |d|^2 per bone.
    mirrored = dict(batch)
    kp = batch[S.KEYPOINTS_PX].clone()
    kp[0, 0, :, 0] = 2 * kp[0, 0, 0, 0] - kp[0, 0, :, 0]
    mirrored[S.KEYPOINTS_PX] = kp
    true_b = kp[0, 0, [c for _, c in BONES]] - kp[0, 0, [p for p, _ in BONES]]
    per_bone = 4 * true_b[:, 0] ** 2 / (true_b**2).sum(-1)
    expected = float(per_bone.mean()) / 2  # the other hand is exact; mean over the two hands
    assert loss_fn(outputs, mirrored)[0].bone_direction.item() == pytest.approx(expected, 1e-4)
    # Unlabelled keypoints do not count, however wrong.
    hidden = dict(shifted)
    hidden[S.KEYPOINTS_PX] = batch[S.KEYPOINTS_PX].clone()
    hidden[S.KEYPOINTS_PX][0, 1, 5:] += 50.0
    hidden[S.KEYPOINTS_VIS] = batch[S.KEYPOINTS_VIS].clone()
    hidden[S.KEYPOINTS_VIS][0, 1, 5:] = 0
    assert loss_fn(outputs, hidden)[0].reprojection.item() == pytest.approx(0.0, abs=1e-6)


def test_3d_losses_are_root_relative_and_scale_free(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(6, 6)]], [[True]])
    loss_fn = SMHRLoss(LossWeights(), hand_model, R)
    moved = dict(batch)
    root = batch[S.JOINTS_3D][:, :, :1]
    moved[S.JOINTS_3D] = (batch[S.JOINTS_3D] - root) * 1.3 + root + 0.2
    moved[S.VERTICES_3D] = (batch[S.VERTICES_3D] - root) * 1.3 + root + 0.2
    loss = loss_fn(outputs, moved)[0]
    assert loss.joints_3d.item() == pytest.approx(0.0, abs=1e-5)
    assert loss.vertices_3d.item() == pytest.approx(0.0, abs=1e-5)
    # Not rotation-free: a flipped copy gives a real error. Without 3D labels: no term.
    moved[S.JOINTS_3D] = (batch[S.JOINTS_3D] - root) * -1 + root
    assert loss_fn(outputs, moved)[0].joints_3d.item() > 0.1
    moved[S.HAS_3D] = torch.zeros_like(batch[S.HAS_3D])
    assert loss_fn(outputs, moved)[0].joints_3d.item() == 0.0


def test_root_3d_is_the_absolute_wrist_error_in_metres(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(6, 6)]], [[True]])
    moved = dict(batch)
    moved[S.JOINTS_3D] = batch[S.JOINTS_3D] + torch.tensor([0.03, 0.0, 0.3])
    loss = SMHRLoss(LossWeights(root_3d=10.0), hand_model, R)(outputs, moved)[0]
    assert loss.root_3d.item() == pytest.approx(0.11, abs=1e-5)  # mean of |0.03|, 0, |0.3|
    assert loss.joints_3d.item() == pytest.approx(0.0, abs=1e-5)
    unweighted = SMHRLoss(LossWeights(), hand_model, R)(outputs, moved)[0]
    assert unweighted.total.item() < loss.total.item() - 1.0


def test_orientation_is_the_rotation_distance_and_ignores_the_axis_angle_wrap(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(6, 6)]], [[True]])
    labelled = batch[S.MANO_POSE][0, 0, :3].clone()
    angle = float(labelled.norm())
    moved = dict(batch)
    pose = batch[S.MANO_POSE].clone()
    # The same rotation written the other way round the axis: mano sees a large error, orientation
    # none.
    pose[0, 0, :3] = labelled / angle * (angle - 2.0 * math.pi)
    moved[S.MANO_POSE] = pose
    loss_fn = SMHRLoss(LossWeights(orientation=10.0), hand_model, R)
    wrapped = loss_fn(outputs, moved)[0]
    assert wrapped.orientation.item() == pytest.approx(0.0, abs=1e-5)
    assert wrapped.mano.item() > 0.1
    # A label turned by 0.5 rad about the camera's z axis: 8 sin^2(0.25) = 0.4898.
    turn = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.5]))
    pose[0, 0, :3] = matrix_to_axis_angle(turn @ axis_angle_to_matrix(labelled))
    turned = loss_fn(outputs, moved)[0]
    assert turned.orientation.item() == pytest.approx(8 * math.sin(0.25) ** 2, rel=1e-4)
    plain = SMHRLoss(LossWeights(), hand_model, R)(outputs, moved)[0]
    expected_total = plain.total.item() + 10.0 * turned.orientation.item()
    assert turned.total.item() == pytest.approx(expected_total, rel=1e-5)
    moved[S.HAS_MANO] = torch.zeros_like(batch[S.HAS_MANO])
    assert loss_fn(outputs, moved)[0].orientation.item() == 0.0


def test_finger_rotation_sums_the_joint_rotation_distances(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(6, 6)]], [[True]])
    moved = dict(batch)
    pose = batch[S.MANO_POSE].clone()
    # Two finger joints turned against their labels: 0.3 rad about one joint's own axis and
    # 2 pi about another's (the same rotation, a large axis-angle difference). The global
    # orientation is untouched.
    first = pose[0, 0, 3:6].clone()
    pose[0, 0, 3:6] = matrix_to_axis_angle(
        axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.3])) @ axis_angle_to_matrix(first)
    )
    second = pose[0, 0, 12:15].clone()
    assert float(second.norm()) > 0.01  # the scene's finger angles are drawn in (0, 0.1)
    pose[0, 0, 12:15] = second / second.norm() * (second.norm() + 2.0 * math.pi)
    moved[S.MANO_POSE] = pose
    loss_fn = SMHRLoss(LossWeights(finger_rotation=5.0), hand_model, R)
    loss = loss_fn(outputs, moved)[0]
    expected = 8 * math.sin(0.15) ** 2  # the 0.3 rad turn; the 2 pi one costs nothing
    assert loss.finger_rotation.item() == pytest.approx(expected, rel=1e-3)
    assert loss.orientation.item() == pytest.approx(0.0, abs=1e-6)
    plain = SMHRLoss(LossWeights(), hand_model, R)(outputs, moved)[0]
    assert loss.total.item() == pytest.approx(plain.total.item() + 5.0 * expected, rel=1e-5)
    moved[S.HAS_MANO] = torch.zeros_like(batch[S.HAS_MANO])
    assert loss_fn(outputs, moved)[0].finger_rotation.item() == 0.0


def test_prior_hinge_by_hand(hand_model: HandModel, exact_scene: SceneBuilder) -> None:
    outputs, batch = exact_scene([[(6, 6)], [(9, 9)]], [[True], [False]])
    params = outputs["params"].detach().clone()
    # Right hand: index1 twist (x) 0.5 against +0.3; left hand: index1 flexion (z) +1.0 against
    # the mirrored upper bound +0.4. Betas zeroed, other pose values inside the limits.
    params[0, 61 + 3 : 61 + 48, 6, 6] = 0.0
    params[0, 61 + 3, 6, 6] = 0.5
    params[0, 61 + 48 : 61 + 58, 6, 6] = 0.0
    params[1, 3:48, 9, 9] = 0.0
    params[1, 3 + 2, 9, 9] = 1.0
    params[1, 48:58, 9, 9] = 0.0
    outputs["params"] = params
    loss = SMHRLoss(LossWeights(), hand_model, R)(outputs, batch)[0]
    assert loss.prior.item() == pytest.approx((0.2 / 45 + 0.6 / 45) / 2, rel=1e-5)


def test_focal_terms_in_the_breakdown(hand_model: HandModel, exact_scene: SceneBuilder) -> None:
    outputs, batch = exact_scene([[(6, 6)]], [[True]])
    loss = SMHRLoss(LossWeights(), hand_model, R)(outputs, batch)[0]
    assert loss.hm.item() == pytest.approx(focal_loss(outputs["hm"], batch[S.HM]).item())
    expected = focal_loss(outputs["handmap"], batch[S.HANDMAP]).item()
    assert loss.handmap.item() == pytest.approx(expected)
    w = LossWeights()
    weighted = sum(
        getattr(w, name) * getattr(loss, name).item()
        for name in ("hm", "handmap", "reprojection", "bone_direction", "prior", "mano")
    )
    assert loss.total.item() == pytest.approx(weighted, rel=1e-5)


def test_photometric_mask_and_worst_fraction(
    hand_model: HandModel, renderer: HandRenderer, exact_scene: SceneBuilder
) -> None:
    # Zero betas: the prior is 0, so the photometric and mask terms order the samples.
    outputs, batch = exact_scene(
        [[(8, 8)], [(7, 8)], [(8, 7)], [(9, 9)]],
        [[True], [False], [True], [True]],
        beta_scale=0.0,
    )
    loss_fn = SMHRLoss(LossWeights(hard_fraction=1.0), hand_model, R, renderer)
    pred = loss_fn.decode(outputs, batch)
    colours = renderer.shade(
        pred.vertices.reshape(4 * M, -1, 3),
        torch.full((4 * M, 778, 3), 0.5),
        torch.zeros(4 * M, 27),
    )
    target = renderer(pred.vertices, pred.is_right, pred.valid, colours.reshape(4, M, 778, 3))
    assert target.mask[:, 0].sum((1, 2)).min() > 20  # every hand is in view
    batch[S.IMAGE_RGB] = target.image.detach().clone()
    batch[S.MASK] = torch.zeros(4, 1, R, R)
    batch[S.HAS_MASK] = torch.ones(4)
    outputs["texture"] = (
        torch.full((4, 2334, W, W), 0.5)
        - torch.tensor([0.45, 0.35, 0.30]).repeat(778)[None, :, None, None]
    )
    # Sample 0's image is the rendered hand itself: no photometric error; samples 1 and 2 see
    # an inverted image. Samples 0-2 have the rendered mask as skin; sample 3 an empty mask,
    # which leaves nothing to compare photometrically and a mask loss of mean(silhouette).
    batch[S.IMAGE_RGB][1:] = 1.0 - batch[S.IMAGE_RGB][1:]
    batch[S.MASK][:3] = target.mask[:3]
    loss = loss_fn(outputs, batch, photometric=True)[0]
    silhouette = target.silhouette
    expected_mask = [(silhouette[i] - batch[S.MASK][i]).abs().mean().item() for i in range(4)]
    assert loss.mask.item() == pytest.approx(sum(expected_mask) / 4, rel=1e-4)
    assert expected_mask[3] == pytest.approx(silhouette[3].mean().item(), rel=1e-6)
    first = loss_fn(
        {k: v[:1] for k, v in outputs.items()},
        {k: v[:1] for k, v in batch.items()},
        photometric=True,
    )[0]
    assert first.photometric.item() == pytest.approx(0.0, abs=1e-7)
    assert loss.photometric.item() > 0.01
    # Worst 70 % of 4 samples = the 3 largest per-sample totals; sample 0 is the smallest.
    hard = SMHRLoss(LossWeights(), hand_model, R, renderer)(outputs, batch, photometric=True)[0]
    assert hard.total.item() == pytest.approx(
        (4 * loss.total.item() - first.total.item()) / 3, rel=1e-4
    )
    # Stage 1 ignores the fraction.
    stage1 = SMHRLoss(LossWeights(), hand_model, R, renderer)(outputs, batch)[0]
    assert stage1.photometric.item() == 0.0
    assert stage1.total.item() < loss.total.item()


def test_side_loss_is_the_cross_entropy_of_right_minus_left_at_the_centres() -> None:
    handmap = torch.zeros(1, 2, W, W)
    handmap[0, :, 3, 4] = torch.tensor([0.5, 2.0])  # right ahead by 1.5
    handmap[0, :, 7, 2] = torch.tensor([1.0, -1.0])  # left ahead by 2
    ind = torch.tensor([[3 * W + 4, 7 * W + 2]])
    right_then_left = side_loss(handmap, ind, torch.tensor([[True, False]]))
    expected = [math.log1p(math.exp(-1.5)), math.log1p(math.exp(-2.0))]
    assert right_then_left[0].tolist() == pytest.approx(expected, rel=1e-5)
    # The same logits with the labels swapped: the wrong side costs more.
    swapped = side_loss(handmap, ind, torch.tensor([[False, True]]))
    assert swapped[0].tolist() == pytest.approx(
        [math.log1p(math.exp(1.5)), math.log1p(math.exp(2.0))], rel=1e-5
    )


def test_side_term_is_off_by_default_and_averages_the_valid_hands(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(5, 6), (10, 9)], [(8, 8)]], [[True, False], [False]])
    # The scene's handmap puts p = 0.9 on the labelled side and 0.01 on the other at each centre.
    per_hand = math.log1p(math.exp(-(_logit(0.9) - _logit(0.01))))
    loss = SMHRLoss(LossWeights(side=50.0), hand_model, R)(outputs, batch)[0]
    assert loss.side.item() == pytest.approx(per_hand, rel=1e-3)
    off = SMHRLoss(LossWeights(), hand_model, R)(outputs, batch)[0]
    assert off.side.item() == pytest.approx(per_hand, rel=1e-3)  # reported, not weighted
    assert loss.total.item() == pytest.approx(off.total.item() + 50.0 * per_hand, rel=1e-5)
    # The handedness flipped everywhere: the term grows, and only through the handmap.
    flipped = dict(outputs)
    flipped["handmap"] = outputs["handmap"].flip(1).requires_grad_()
    worse = SMHRLoss(LossWeights(side=50.0), hand_model, R)(flipped, batch)[0]
    assert worse.side.item() > 5.0
    worse.side.backward()
    assert flipped["handmap"].grad.abs().sum() > 0


def test_keypoint_subcell_sets_the_keypoint_heatmap_targets(
    hand_model: HandModel, exact_scene: SceneBuilder
) -> None:
    outputs, batch = exact_scene([[(6, 6)]], [[True]])
    args = (batch[S.KEYPOINTS_PX], batch[S.KEYPOINTS_VIS], batch[S.VALID], W)
    losses = {}
    for subcell in (False, True):
        target = keypoint_targets(*args, subcell=subcell).heatmap
        maps = torch.zeros(target.shape[0], KEYPOINT_JOINTS + 2, W, W)
        maps[:, :KEYPOINT_JOINTS] = torch.logit(target.clamp(1e-4, 1 - 1e-4))
        for weights_subcell in (False, True):
            loss_fn = SMHRLoss(LossWeights(keypoint_subcell=weights_subcell), hand_model, R)
            loss = loss_fn({**outputs, "keypoints": maps}, batch)[0]
            losses[subcell, weights_subcell] = loss.keypoint_heatmap.item()
    # Each kind of map scores best against the targets it was made from.
    assert losses[True, True] < losses[True, False]
    assert losses[False, False] < losses[False, True]


@pytest.mark.parametrize(
    ("term", "shift", "least"),
    [
        # Heat one cell right of every joint: the reading misses each by about a cell.
        ("keypoint_centroid", 1, 0.5),
        # Heat three cells right of every joint as well as on it: each joint has a rival.
        ("keypoint_stray", 3, 0.05),
    ],
)
def test_keypoint_reading_terms_count_only_with_a_weight(
    hand_model: HandModel, exact_scene: SceneBuilder, term: str, shift: int, least: float
) -> None:
    outputs, batch = exact_scene([[(6, 6)]], [[True]])
    target = keypoint_targets(batch[S.KEYPOINTS_PX], batch[S.KEYPOINTS_VIS], batch[S.VALID], W)
    heat = target.heatmap.roll(shift, dims=-1)
    if term == "keypoint_stray":
        heat = torch.maximum(target.heatmap, heat)
    maps = torch.zeros(target.heatmap.shape[0], KEYPOINT_JOINTS + 2, W, W)
    maps[:, :KEYPOINT_JOINTS] = torch.logit(heat.clamp(1e-4, 1 - 1e-4))
    scene = {**outputs, "keypoints": maps}
    off = SMHRLoss(LossWeights(), hand_model, R)(scene, batch)[0]
    on = SMHRLoss(LossWeights(**{term: 20.0}), hand_model, R)(scene, batch)[0]
    assert getattr(off, term).item() == 0.0
    assert getattr(on, term).item() > least
    assert on.total.item() == pytest.approx(
        off.total.item() + 20.0 * getattr(on, term).item(), rel=1e-5
    )
