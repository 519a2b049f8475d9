"""The SMHR training objective (SPEC.md, "Training"), computed per sample.

Terms (weights from `training.config.LossWeights`):
- `hm`: CornerNet focal loss (alpha 2, beta 4) of the centre heatmap;
- `handmap`: the same on the 2-channel left/right map (models with the `handmap` head);
- `reprojection`: MSE in pixels between the projected joints and the labelled keypoints, x 0.01;
- `bone_direction`: squared difference of unit 2D bone vectors over the 20 bones;
- `prior`: hinge on the per-joint axis-angle limits + 0.1 * mean(beta^2);
- `photometric`: masked L2 between the rendered hands (albedo x SH shading) and the image, mask =
  rendered silhouette x skin mask; `mask`: L1 between the silhouette and the skin mask
  (both only in the photometric stage);
- `joints_3d` / `vertices_3d`: L1 on root-relative, bone-length-normalised joints / vertices
  (hands with `has_3d`); `mano`: MSE to the labelled pose and shape (hands with `has_mano`);
  `root_3d` (ours, weight 0 by default): L1 in metres on the wrist's absolute position;
- `orientation` (ours, weight 0 by default): squared Frobenius distance between the predicted and
  labelled global rotation matrices (hands with `has_mano`), 8 sin^2(angle / 2) for a rotation
  error of `angle`; unlike the axis-angle MSE of `mano` it has no jump where the axis-angle
  representation wraps at pi;
- `finger_rotation` (ours, weight 0 by default): the same distance for each of the 15 finger
  joints' rotations relative to their parents, summed over the joints (hands with `has_mano`);
- `side` (ours, weight 0 by default): binary cross-entropy of the handedness read where the
  decoder reads it, the `handmap` logits at each labelled centre (right minus left);
- `keypoint_heatmap` / `keypoint_offset` (ours, models with the `keypoints` head): the focal
  loss of the per-joint heatmaps and the L1 of the joints' sub-cell offsets;
  `keypoint_centroid` (ours, weight 0 by default): the L1 between each joint and the inference
  reading's heat-weighted mean around its cell (`training.keypoint_targets`);
  `keypoint_stray` (ours, weight 0 by default): minus the log of the share of each joint's
  softmax, over the cells the reading searches, that lies next to the joint;

The network's parameters are read at each labelled hand's centre cell `ind` (the ground-truth
centre, as in training), from the left or the right set by the labelled handedness, and decoded
exactly as at inference: MANO forward, virtual-camera translation, projection with K_v.

Every term is first computed per sample (hand terms averaged over the sample's labelled hands,
focal losses normalised by the sample's own number of centres), so a batch can average the worst
`hard_fraction` of samples when the photometric stage is on, and a batch split across processes
averages to the same value as the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from smhr_core.decode import (
    OUTPUT_STRIDE,
    PARAMS_PER_HAND,
    VIRTUAL_FOCAL_PX,
    HandParams,
    split_params,
    virtual_translation,
)
from smhr_core.hand_model import HandModel
from smhr_core.rotations import axis_angle_to_matrix
from training import sample as S
from training.config import LossWeights
from training.joint_limits import left_limits, right_limits
from training.keypoint_targets import centroid_loss, keypoint_targets, offset_loss, stray_loss
from training.render import HandRenderer, albedo_from_texture

FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0
HEATMAP_CLAMP = (1e-4, 1.0 - 1e-4)
REPROJECTION_SCALE = 0.01
BETA_PRIOR_WEIGHT = 0.1
MIN_DEPTH_M = 0.05

BONES = tuple(
    (parent, child)
    for finger in range(5)
    for parent, child in zip(
        (0, *range(4 * finger + 1, 4 * finger + 4)),
        range(4 * finger + 1, 4 * finger + 5),
        strict=True,
    )
)
"""The 20 bones (parent, child) of the FreiHAND joint order."""
ROOT_JOINT = 0
SCALE_BONE = (0, 9)
"""Wrist to middle-finger MCP: the bone whose length normalises the 3D losses."""
TERMS = (
    "hm",
    "handmap",
    "reprojection",
    "bone_direction",
    "prior",
    "photometric",
    "mask",
    "joints_3d",
    "vertices_3d",
    "mano",
    "root_3d",
    "side",
    "orientation",
    "finger_rotation",
    "keypoint_heatmap",
    "keypoint_offset",
    "keypoint_centroid",
    "keypoint_stray",
)


@dataclass(frozen=True)
class LossBreakdown:
    """One batch's loss: the unweighted terms (batch means, 0 when a term does not apply) and
    `total` = sum of weight x term, the value to minimise."""

    total: torch.Tensor
    hm: torch.Tensor
    handmap: torch.Tensor
    reprojection: torch.Tensor
    bone_direction: torch.Tensor
    prior: torch.Tensor
    photometric: torch.Tensor
    mask: torch.Tensor
    joints_3d: torch.Tensor
    vertices_3d: torch.Tensor
    mano: torch.Tensor
    root_3d: torch.Tensor
    side: torch.Tensor
    orientation: torch.Tensor
    finger_rotation: torch.Tensor
    keypoint_heatmap: torch.Tensor
    keypoint_offset: torch.Tensor
    keypoint_centroid: torch.Tensor
    keypoint_stray: torch.Tensor

    def scalars(self) -> dict[str, float]:
        """Every field as a Python float (for logs)."""
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self)}


@dataclass(frozen=True)
class HandPredictions:
    """The network's hands decoded at the labelled centres, every slot (B, M) of the batch.

    Slots with `valid = 0` hold values decoded at cell 0 and must be ignored.
    """

    vertices: torch.Tensor
    """(B, M, 778, 3) metres, virtual camera."""
    joints: torch.Tensor
    """(B, M, 21, 3) metres, virtual camera, FreiHAND order."""
    keypoints_px: torch.Tensor
    """(B, M, 21, 2) input pixels."""
    pose: torch.Tensor
    """(B, M, 48) global orientation + finger pose, axis-angle."""
    betas: torch.Tensor
    """(B, M, 10)."""
    is_right: torch.Tensor
    """(B, M) bool, the labelled handedness used to pick the parameter set."""
    valid: torch.Tensor
    """(B, M) bool."""


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CornerNet focal loss per sample (B,) of heatmap logits against Gaussian targets.

    p = clamp(sigmoid(logits), 1e-4, 1 - 1e-4); positives are cells where target == 1:
    -log(p) (1 - p)^2; the rest: -log(1 - p) p^2 (1 - target)^4. Each sample's sum is divided by
    its number of positives (the negative sum alone when it has none).
    """
    p = torch.sigmoid(logits.float()).clamp(*HEATMAP_CLAMP)
    target = target.float()
    pos = target.eq(1).float()
    pos_term = torch.log(p) * (1 - p) ** FOCAL_ALPHA * pos
    neg_term = torch.log(1 - p) * p**FOCAL_ALPHA * (1 - target) ** FOCAL_BETA * (1 - pos)
    dims = tuple(range(1, logits.dim()))
    num_pos = pos.sum(dim=dims)
    total = pos_term.sum(dim=dims) + neg_term.sum(dim=dims)
    return -total / num_pos.clamp(min=1.0)


def gather_cells(maps: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """Values of (B, C, W, W) maps at flat cell indices (B, M) -> (B, M, C).

    (B, M, C) values, a head the network evaluated at these cells only (`SMHRNet.forward` with
    `centres`), are already that and are returned as they are.
    """
    if maps.dim() == 3:
        return maps
    batch, channels = maps.shape[:2]
    flat = maps.reshape(batch, channels, -1)
    index = ind.long().clamp(0, flat.shape[2] - 1)[:, None, :].expand(-1, channels, -1)
    return flat.gather(2, index).permute(0, 2, 1)


def side_loss(handmap: torch.Tensor, ind: torch.Tensor, is_right: torch.Tensor) -> torch.Tensor:
    """Per-hand (B, M) binary cross-entropy of the handedness at the labelled centres.

    The decoder calls a hand right when its right `handmap` logit beats its left one (channel 0
    left, 1 right), so the margin right - left is the logit of "right". Unlike the focal loss of
    the whole map, this term is zero only when the two channels are told apart at the centre.
    """
    logits = gather_cells(handmap.float(), ind)  # (B, M, 2)
    margin = logits[..., 1] - logits[..., 0]
    return nn.functional.binary_cross_entropy_with_logits(
        margin, is_right.float(), reduction="none"
    )


def params_at_centres(
    outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], resolution: int
) -> tuple[HandParams, torch.Tensor]:
    """The labelled side's 61 values at each slot's labelled centre, as in training.

    Returns the split parameters and the virtual-camera translation (metres), both with B x M
    rows in slot order (invalid slots read cell 0).
    """
    params = gather_cells(outputs["params"].float(), batch[S.IND])  # (B, M, 122)
    b, m = params.shape[:2]
    is_right = batch[S.IS_RIGHT] > 0.5
    chosen = torch.where(
        is_right[..., None], params[..., PARAMS_PER_HAND:], params[..., :PARAMS_PER_HAND]
    ).reshape(b * m, PARAMS_PER_HAND)
    hand = split_params(chosen)
    ind = batch[S.IND].reshape(-1).long()
    map_size = resolution // OUTPUT_STRIDE
    translation = virtual_translation(hand.camera, ind % map_size, ind // map_size, resolution)
    return hand, translation


def project_virtual(points_m: torch.Tensor, resolution: int) -> torch.Tensor:
    """Differentiable projection of (..., 3) points (metres) with K_v -> (..., 2) input pixels.

    Points nearer than `MIN_DEPTH_M` are projected as if at that depth, so a hand an untrained
    network puts behind the camera gives a large but finite error.
    """
    half = resolution / 2.0
    z = points_m[..., 2:3].clamp(min=MIN_DEPTH_M)
    return points_m[..., :2] / z * VIRTUAL_FOCAL_PX + half


def bone_vectors(keypoints: torch.Tensor) -> torch.Tensor:
    """(..., 21, D) joints -> (..., 20, D) child - parent over `BONES`."""
    parents = [p for p, _ in BONES]
    children = [c for _, c in BONES]
    return keypoints[..., children, :] - keypoints[..., parents, :]


def _normalised_3d(points: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
    root = joints[..., ROOT_JOINT : ROOT_JOINT + 1, :]
    scale = (joints[..., SCALE_BONE[1], :] - joints[..., SCALE_BONE[0], :]).norm(dim=-1)
    return (points - root) / scale.clamp(min=1e-6)[..., None, None]


class SMHRLoss(nn.Module):
    """Computes `LossBreakdown` from the network's maps and one batch (training.sample keys).

    Args:
        weights: term weights and the hard-sample fraction.
        hand_model: MANO-format model the parameters are decoded through.
        resolution: input side R, pixels.
        renderer: needed only for the photometric stage.
    """

    def __init__(
        self,
        weights: LossWeights,
        hand_model: HandModel,
        resolution: int,
        renderer: HandRenderer | None = None,
    ) -> None:
        super().__init__()
        self.weights = weights
        self.hand_model = hand_model
        self.resolution = int(resolution)
        self.renderer = renderer
        self.register_buffer("limits_right", torch.from_numpy(right_limits()), persistent=False)
        self.register_buffer("limits_left", torch.from_numpy(left_limits()), persistent=False)

    def decode(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        """The hands of every slot, decoded at the labelled centres (see `HandPredictions`)."""
        hand, translation = params_at_centres(outputs, batch, self.resolution)
        is_right = batch[S.IS_RIGHT] > 0.5
        valid = batch[S.VALID] > 0.5
        b, m = is_right.shape
        out = self.hand_model(
            hand.global_orient, hand.hand_pose, hand.betas, translation, is_right.reshape(-1)
        )
        vertices = out.vertices.reshape(b, m, -1, 3)
        joints = out.joints.reshape(b, m, -1, 3)
        return HandPredictions(
            vertices=vertices,
            joints=joints,
            keypoints_px=project_virtual(joints, self.resolution),
            pose=torch.cat([hand.global_orient, hand.hand_pose], dim=1).reshape(b, m, 48),
            betas=hand.betas.reshape(b, m, 10),
            is_right=is_right,
            valid=valid,
        )

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        batch: dict[str, torch.Tensor],
        photometric: bool = False,
    ) -> tuple[LossBreakdown, HandPredictions]:
        """The batch loss and the decoded hands it was computed from."""
        w = self.weights
        pred = self.decode(outputs, batch)
        valid = pred.valid.float()
        per_sample: dict[str, torch.Tensor] = {}
        zeros = valid.new_zeros(valid.shape[0])

        per_sample["hm"] = focal_loss(outputs["hm"], batch[S.HM])
        per_sample["handmap"] = (
            focal_loss(outputs["handmap"], batch[S.HANDMAP]) if "handmap" in outputs else zeros
        )

        vis = batch[S.KEYPOINTS_VIS].float() * valid[..., None]  # (B, M, 21)
        target_kp = batch[S.KEYPOINTS_PX].float()
        sq = ((pred.keypoints_px - target_kp) ** 2).mean(dim=-1)  # per joint, mean over u, v
        per_hand_reproj = (sq * vis).sum(-1) / vis.sum(-1).clamp(min=1.0)
        per_sample["reprojection"] = REPROJECTION_SCALE * _hand_mean(per_hand_reproj, vis.sum(-1))
        per_hand_bone, bone_vis = _bone_direction(pred.keypoints_px, target_kp, vis)
        per_sample["bone_direction"] = _hand_mean(per_hand_bone, bone_vis.sum(-1))
        per_sample["prior"] = _hand_mean(self._prior(pred), valid)

        has_3d = batch[S.HAS_3D].float() * valid
        j_pred = _normalised_3d(pred.joints, pred.joints)
        j_true = _normalised_3d(batch[S.JOINTS_3D].float(), batch[S.JOINTS_3D].float())
        per_sample["joints_3d"] = _hand_mean((j_pred - j_true).abs().mean((-1, -2)), has_3d)
        v_pred = _normalised_3d(pred.vertices, pred.joints)
        v_true = _normalised_3d(batch[S.VERTICES_3D].float(), batch[S.JOINTS_3D].float())
        per_sample["vertices_3d"] = _hand_mean((v_pred - v_true).abs().mean((-1, -2)), has_3d)
        root_true = batch[S.JOINTS_3D][..., ROOT_JOINT, :].float()
        root_error = (pred.joints[..., ROOT_JOINT, :] - root_true).abs().mean(-1)
        per_sample["root_3d"] = _hand_mean(root_error, has_3d)
        per_sample["side"] = (
            _hand_mean(side_loss(outputs["handmap"], batch[S.IND], pred.is_right), valid)
            if "handmap" in outputs
            else zeros
        )

        has_mano = batch[S.HAS_MANO].float() * valid
        mano_err = torch.cat(
            [
                (pred.pose - batch[S.MANO_POSE].float()) ** 2,
                (pred.betas - batch[S.MANO_BETAS].float()) ** 2,
            ],
            dim=-1,
        ).mean(-1)
        per_sample["mano"] = _hand_mean(mano_err, has_mano)
        b, m = valid.shape
        rotation_err = (
            (
                axis_angle_to_matrix(pred.pose.reshape(b, m, 16, 3))
                - axis_angle_to_matrix(batch[S.MANO_POSE].float().reshape(b, m, 16, 3))
            )
            ** 2
        ).sum((-1, -2))  # (B, M, 16): the global orientation, then the 15 finger joints
        per_sample["orientation"] = _hand_mean(rotation_err[..., 0], has_mano)
        per_sample["finger_rotation"] = _hand_mean(rotation_err[..., 1:].sum(-1), has_mano)

        if "keypoints" in outputs:
            maps = outputs["keypoints"]
            targets = keypoint_targets(
                batch[S.KEYPOINTS_PX],
                batch[S.KEYPOINTS_VIS],
                valid,
                maps.shape[-1],
                subcell=w.keypoint_subcell,
            )
            per_sample["keypoint_heatmap"] = focal_loss(
                maps[:, : targets.heatmap.shape[1]], targets.heatmap
            )
            per_sample["keypoint_offset"] = offset_loss(maps, targets)
            per_sample["keypoint_centroid"] = (
                centroid_loss(maps, targets) if w.keypoint_centroid > 0 else zeros
            )
            per_sample["keypoint_stray"] = (
                stray_loss(maps, targets) if w.keypoint_stray > 0 else zeros
            )
        else:
            per_sample["keypoint_heatmap"] = zeros
            per_sample["keypoint_offset"] = zeros
            per_sample["keypoint_centroid"] = zeros
            per_sample["keypoint_stray"] = zeros

        if photometric:
            per_sample["photometric"], per_sample["mask"] = self._photometric(outputs, batch, pred)
        else:
            per_sample["photometric"] = zeros
            per_sample["mask"] = zeros

        totals = sum(getattr(w, name) * per_sample[name] for name in TERMS)
        if photometric and w.hard_fraction < 1.0:
            keep = max(1, math.ceil(w.hard_fraction * totals.shape[0]))
            chosen = torch.topk(totals.detach(), keep).indices
        else:
            chosen = torch.arange(totals.shape[0], device=totals.device)
        terms = {name: per_sample[name][chosen].mean() for name in TERMS}
        return LossBreakdown(total=totals[chosen].mean(), **terms), pred

    def _prior(self, pred: HandPredictions) -> torch.Tensor:
        finger_pose = pred.pose[..., 3:]  # (B, M, 45)
        limits = torch.where(
            pred.is_right[..., None, None], self.limits_right, self.limits_left
        )  # (B, M, 45, 2)
        hinge = torch.relu(finger_pose - limits[..., 1]) + torch.relu(limits[..., 0] - finger_pose)
        return hinge.mean(-1) + BETA_PRIOR_WEIGHT * (pred.betas**2).mean(-1)

    def _photometric(
        self,
        outputs: dict[str, torch.Tensor],
        batch: dict[str, torch.Tensor],
        pred: HandPredictions,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.renderer is None:
            raise RuntimeError("the photometric stage needs a HandRenderer")
        missing = [h for h in ("texture", "light") if h not in outputs]
        if missing:
            raise RuntimeError(f"the photometric stage needs the heads {missing}")
        b, m = pred.valid.shape
        texture = gather_cells(outputs["texture"].float(), batch[S.IND])
        light = gather_cells(outputs["light"].float(), batch[S.IND])
        vertices = pred.vertices.reshape(b * m, -1, 3)
        colours = self.renderer.shade(
            vertices, albedo_from_texture(texture.reshape(b * m, -1)), light.reshape(b * m, -1)
        )
        render = self.renderer(
            pred.vertices,
            pred.is_right,
            valid=pred.valid,
            colours=colours.reshape(pred.vertices.shape),
            silhouette=True,
        )
        silhouette = render.silhouette
        has_mask = batch[S.HAS_MASK].float().reshape(b, 1, 1, 1)
        skin = batch[S.MASK].float()
        # Without a labelled mask the silhouette alone selects the pixels compared.
        weight = silhouette.detach() * (has_mask * skin + (1 - has_mask))
        diff = ((render.image - batch[S.IMAGE_RGB].float()) ** 2).sum(1, keepdim=True)
        photo = (weight * diff).sum((1, 2, 3)) / (3.0 * weight.sum((1, 2, 3))).clamp(min=1.0)
        mask = (silhouette - skin).abs().mean((1, 2, 3)) * has_mask.reshape(b)
        return photo, mask


def _hand_mean(per_hand: torch.Tensor, hand_on: torch.Tensor) -> torch.Tensor:
    """(B, M) per-hand values -> (B,) mean over the hands where `hand_on` > 0 (0 if none)."""
    on = (hand_on > 0).float()
    return (per_hand * on).sum(-1) / on.sum(-1).clamp(min=1.0)


def _bone_direction(
    pred_px: torch.Tensor, true_px: torch.Tensor, vis: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    parents = [p for p, _ in BONES]
    children = [c for _, c in BONES]
    bone_vis = vis[..., parents] * vis[..., children]  # (B, M, 20)
    pred_b = bone_vectors(pred_px)
    true_b = bone_vectors(true_px)
    pred_u = pred_b / (pred_b.norm(dim=-1, keepdim=True) + 1e-8)
    true_u = true_b / (true_b.norm(dim=-1, keepdim=True) + 1e-8)
    per_bone = ((pred_u - true_u) ** 2).sum(-1)
    per_hand = (per_bone * bone_vis).sum(-1) / bone_vis.sum(-1).clamp(min=1.0)
    return per_hand, bone_vis
