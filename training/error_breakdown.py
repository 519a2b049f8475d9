"""Which predicted part limits the 2D keypoint error: a diagnostic for trained networks.

Each labelled hand is read at its labelled centre with its labelled side, as in training (the
decoder's peak finding and side choice are left out, so every labelled hand counts). Its 61
values are decoded through the hand model as predicted, then again with labelled parts put in
their place:

- `true_orientation`: the labelled global orientation (axis-angle, radians);
- `true_finger_pose`: the labelled 45 finger-joint angles;
- `true_wrist`: the predicted hand moved so that its wrist is at the labelled wrist (metres);
- `fitted_to_true_joints`: the predicted hand fitted to the labelled 2D joints by the keypoint fit
  (`smhr_core.fit_2d`, default settings, every labelled joint with confidence 1): what the fit
  leaves when the heatmaps read every joint exactly, the floor its priors set.

The 2D error of each variant is the evaluation's (`training.metrics`): each hand's mean error over
its labelled keypoints in percent of its keypoint box, averaged over hands. A part whose label
removes most of the error is the part to work on.

Alongside: the handedness read at the labelled centres (the `handmap` logits, right minus left),
whether the predicted hand shows the camera the same side (palm or back) as the labelled one, the
in-plane direction error of the wrist -> middle-knuckle bone (degrees), the 3D orientation error
(the angle of the rotation between predicted and labelled global orientation, and the angle
between the predicted and labelled palm normals, degrees), the finger-pose error (the same
rotation angle for each of the 15 finger joints, averaged over the joints), and the wrist's 2D
error (percent of the box) and depth error (percent of the labelled depth).

Only hands with both 3D and MANO labels take part (synthetic scenes have both).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from smhr_core.fit_2d import fit_hands
from smhr_core.hand_model import HandModel
from smhr_core.rotations import axis_angle_to_matrix
from training import sample as S
from training.losses import gather_cells, params_at_centres, project_virtual

VARIANTS = (
    "predicted",
    "true_orientation",
    "true_finger_pose",
    "true_orientation_and_finger_pose",
    "true_wrist",
    "true_wrist_and_orientation",
    "fitted_to_true_joints",
)
"""The decodings compared, each a set of labelled parts put in place of predicted ones."""

_WRIST, _INDEX_MCP, _MIDDLE_MCP, _LITTLE_MCP = 0, 5, 9, 17
"""FreiHAND joint order."""


@dataclass(frozen=True)
class BoxError:
    """A 2D keypoint error over hands, each hand's mean error in percent of its box."""

    mean: float
    median: float


@dataclass(frozen=True)
class ErrorBreakdown:
    """The 2D keypoint error (percent of the hand's box) per decoding, and the part metrics."""

    hands: int
    """Labelled hands with 3D and MANO labels that were read."""
    predicted: BoxError
    true_orientation: BoxError
    true_finger_pose: BoxError
    true_orientation_and_finger_pose: BoxError
    true_wrist: BoxError
    true_wrist_and_orientation: BoxError
    fitted_to_true_joints: BoxError
    side_accuracy: float
    """Fraction of hands whose `handmap` at the labelled centre gives the labelled side."""
    facing_accuracy: float
    """Fraction of hands shown to the camera from the labelled side (palm or back)."""
    in_plane_error_deg: float
    """Median angle between the predicted and labelled wrist -> middle-knuckle bone in the
    image, degrees."""
    orientation_error_deg: float
    """Median angle of the rotation taking the predicted global orientation to the labelled one,
    degrees."""
    palm_normal_error_deg: float
    """Median angle between the predicted and labelled palm normals in 3D, degrees (the palm's
    tilt towards or away from the camera as well as its in-plane turn)."""
    finger_rotation_error_deg: float
    """Median over hands of the mean angle, over the 15 finger joints, of the rotation taking
    each joint's predicted rotation (relative to its parent) to the labelled one, degrees."""
    wrist_error_box_pct: float
    """Mean 2D error of the wrist, percent of the box."""
    wrist_depth_error_pct: float
    """Mean |predicted - labelled| wrist depth, percent of the labelled depth."""

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def table(self) -> str:
        """The breakdown as aligned text lines."""
        lines = [
            f"hands read at their labelled centres: {self.hands}",
            f"2D error (% box)                      {'mean':>7} {'median':>7}",
        ]
        for name in VARIANTS:
            error = getattr(self, name)
            lines.append(f"  {name:<35} {error.mean:7.1f} {error.median:7.1f}")
        lines += [
            f"side accuracy at the centres         {self.side_accuracy:7.3f}",
            f"palm/back facing accuracy            {self.facing_accuracy:7.3f}",
            f"in-plane direction error (deg, med.) {self.in_plane_error_deg:7.1f}",
            f"3D orientation error (deg, med.)     {self.orientation_error_deg:7.1f}",
            f"palm normal error (deg, med.)        {self.palm_normal_error_deg:7.1f}",
            f"finger joint rotation error (deg)    {self.finger_rotation_error_deg:7.1f}",
            f"wrist 2D error (% box)               {self.wrist_error_box_pct:7.1f}",
            f"wrist depth error (% depth)          {self.wrist_depth_error_pct:7.1f}",
        ]
        return "\n".join(lines)


def _palm_normal(joints: torch.Tensor, is_right: torch.Tensor) -> torch.Tensor:
    """(N, 3) unit normal of the palm plane, the same anatomical side for left and right."""
    normal = torch.linalg.cross(
        joints[:, _INDEX_MCP] - joints[:, _WRIST], joints[:, _LITTLE_MCP] - joints[:, _WRIST]
    )
    normal = torch.where(is_right[:, None], normal, -normal)
    return normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def _image_direction(keypoints_px: torch.Tensor) -> torch.Tensor:
    bone = keypoints_px[:, _MIDDLE_MCP] - keypoints_px[:, _WRIST]
    return bone / bone.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def _angle_deg(cosine: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))


def _rotation_error_deg(predicted: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle pairs -> (...) angle of the rotation between them, degrees."""
    relative = axis_angle_to_matrix(predicted).transpose(-1, -2) @ axis_angle_to_matrix(labelled)
    trace = relative.diagonal(dim1=-2, dim2=-1).sum(-1)
    return _angle_deg((trace - 1.0) / 2.0)


def hand_errors(
    outputs: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    hand_model: HandModel,
    resolution: int,
) -> dict[str, torch.Tensor]:
    """Per-hand values (1-D, one entry per read hand) of one batch of network maps.

    Keys: every name of `VARIANTS` (2D error, percent of the box), `side_correct`,
    `facing_correct` (0/1), `in_plane_error_deg`, `orientation_error_deg`,
    `palm_normal_error_deg`, `finger_rotation_error_deg`, `wrist_error_box_pct`,
    `wrist_depth_error_pct`.
    """
    hand, translation = params_at_centres(outputs, batch, resolution)
    read = ((batch[S.VALID] * batch[S.HAS_3D] * batch[S.HAS_MANO]) > 0.5).reshape(-1)
    is_right = (batch[S.IS_RIGHT] > 0.5).reshape(-1)[read]
    pose = batch[S.MANO_POSE].reshape(-1, 48)[read].float()
    true_joints = batch[S.JOINTS_3D].reshape(-1, 21, 3)[read].float()
    true_px = batch[S.KEYPOINTS_PX].reshape(-1, 21, 2)[read].float()
    vis = batch[S.KEYPOINTS_VIS].reshape(-1, 21)[read].float()
    orient, fingers = hand.global_orient[read], hand.hand_pose[read]
    betas, translation = hand.betas[read], translation[read]

    # The box of the labelled keypoints, as in `training.metrics.TrueHand.box_size_px`.
    visible = (vis > 0)[..., None]
    top_left = torch.where(visible, true_px, torch.inf).amin(1)
    bottom_right = torch.where(visible, true_px, -torch.inf).amax(1)
    box = (bottom_right - top_left).amax(-1).nan_to_num(1.0, 1.0, 1.0).clamp(min=1.0)

    def decode(use_orient: torch.Tensor, use_fingers: torch.Tensor, at_true_wrist: bool):
        joints = hand_model(use_orient, use_fingers, betas, translation, is_right).joints
        if at_true_wrist:
            joints = joints - joints[:, _WRIST : _WRIST + 1] + true_joints[:, _WRIST : _WRIST + 1]
        return joints

    def error_pct(joints: torch.Tensor) -> torch.Tensor:
        err = (project_virtual(joints, resolution) - true_px).norm(dim=-1)
        return 100.0 * (err * vis).sum(-1) / vis.sum(-1).clamp(min=1.0) / box

    predicted = decode(orient, fingers, False)
    values = {
        "predicted": error_pct(predicted),
        "true_orientation": error_pct(decode(pose[:, :3], fingers, False)),
        "true_finger_pose": error_pct(decode(orient, pose[:, 3:], False)),
        "true_orientation_and_finger_pose": error_pct(decode(pose[:, :3], pose[:, 3:], False)),
        "true_wrist": error_pct(decode(orient, fingers, True)),
        "true_wrist_and_orientation": error_pct(decode(pose[:, :3], fingers, True)),
    }
    fitted = fit_hands(
        hand_model, orient, fingers, betas, translation, is_right, true_px, vis, resolution
    )
    fitted_hand = hand_model(
        fitted.global_orient, fitted.hand_pose, betas, fitted.translation, is_right
    )
    values["fitted_to_true_joints"] = error_pct(fitted_hand.joints)
    handmap = gather_cells(outputs["handmap"].float(), batch[S.IND]).reshape(-1, 2)[read]
    values["side_correct"] = ((handmap[:, 1] > handmap[:, 0]) == is_right).float()
    normal_pred = _palm_normal(predicted, is_right)
    normal_true = _palm_normal(true_joints, is_right)
    facing_pred = normal_pred[:, 2] > 0
    facing_true = normal_true[:, 2] > 0
    values["palm_normal_error_deg"] = _angle_deg((normal_pred * normal_true).sum(-1))
    values["orientation_error_deg"] = _rotation_error_deg(orient, pose[:, :3])
    values["finger_rotation_error_deg"] = _rotation_error_deg(
        fingers.reshape(-1, 15, 3), pose[:, 3:].reshape(-1, 15, 3)
    ).mean(-1)
    values["facing_correct"] = (facing_pred == facing_true).float()
    cosine = (
        _image_direction(project_virtual(predicted, resolution)) * _image_direction(true_px)
    ).sum(-1)
    values["in_plane_error_deg"] = _angle_deg(cosine)
    wrist_px = project_virtual(predicted[:, _WRIST], resolution)
    values["wrist_error_box_pct"] = 100.0 * (wrist_px - true_px[:, _WRIST]).norm(dim=-1) / box
    true_depth = true_joints[:, _WRIST, 2]
    values["wrist_depth_error_pct"] = (
        100.0 * (predicted[:, _WRIST, 2] - true_depth).abs() / true_depth.clamp(min=1e-6)
    )
    return values


@torch.no_grad()
def error_breakdown(
    model: nn.Module,
    hand_model: HandModel,
    dataset: Dataset,
    resolution: int,
    batch_size: int = 8,
    max_images: int = 0,
    device: str | torch.device = "cpu",
) -> ErrorBreakdown:
    """Run `model` (its `forward` gives the head maps) over `dataset` and summarise every hand.

    Raises:
        ValueError: no sample of the dataset has a hand with 3D and MANO labels.
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    collected: dict[str, list[torch.Tensor]] = {}
    images = 0
    for batch in loader:
        if max_images and images >= max_images:
            break
        if max_images:
            batch = {k: v[: max_images - images] for k, v in batch.items()}
        images += int(batch[S.IMAGE].shape[0])
        outputs = model(batch[S.IMAGE].to(device))
        moved = {k: v.to(device) for k, v in batch.items()}
        for key, value in hand_errors(outputs, moved, hand_model, resolution).items():
            collected.setdefault(key, []).append(value.cpu())
    merged = {k: torch.cat(v) for k, v in collected.items()}
    hands = int(merged["predicted"].numel()) if merged else 0
    if hands == 0:
        raise ValueError("error breakdown: no hand with both 3D and MANO labels in the data")
    errors = {
        name: BoxError(mean=float(merged[name].mean()), median=float(merged[name].median()))
        for name in VARIANTS
    }
    return ErrorBreakdown(
        hands=hands,
        side_accuracy=float(merged["side_correct"].mean()),
        facing_accuracy=float(merged["facing_correct"].mean()),
        in_plane_error_deg=float(merged["in_plane_error_deg"].median()),
        orientation_error_deg=float(merged["orientation_error_deg"].median()),
        palm_normal_error_deg=float(merged["palm_normal_error_deg"].median()),
        finger_rotation_error_deg=float(merged["finger_rotation_error_deg"].median()),
        wrist_error_box_pct=float(merged["wrist_error_box_pct"].mean()),
        wrist_depth_error_pct=float(merged["wrist_depth_error_pct"].mean()),
        **errors,
    )
