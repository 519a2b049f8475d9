"""Fit each hand's mesh to its heatmap joints: the network's MANO parameters move until the
projected joints meet the joints read from the `keypoints` head, held near where they started.

The network regresses the 61 parameters from one cell, and its 2D error is dominated by the
global rotation and the wrist position; the per-joint heatmaps locate joints in the image more
precisely. The fit keeps the regressed hand as a prior (orientation, finger pose and depth stay
close to it) and lets the 2D evidence correct it, so the 3D hand and its 2D keypoints remain one
consistent MANO hand.

A finger bends far more readily than it twists, so the finger-pose prior is per axis: each
finger joint's rotation is cheap about the axis across the finger in the palm plane (flexion),
dearer about the palm's normal (spreading) and dearest about the finger's own axis (twist). The
axes are the hand model's: MANO's template (and the open hand's) has the four fingers along x
and the palm normal along y, and a finger joint's rotation is expressed in those axes. The
thumb's axes are not these, so its three joints keep one weight for all three values.

The fit works in the camera of the network's input: the image's real intrinsics seen through
the letterbox or the second look's crop (`smhr_core.camera.input_intrinsics`), or the virtual
camera when they are unknown. The network reads every hand as if the input's centre were the
optical axis at f = 512 px, which a crop of a larger image is not (`start_in_camera` moves its hand
into the real camera first); fitted in the virtual camera, the hand would bend its fingers and tilt
to make up for the wrong perspective.

It is a damped Gauss-Newton (Levenberg) solve over 51 values per hand (global orientation,
15 finger rotations, translation; the shape stays), with Jacobians by forward differences: each
hand is shaped once (`HandModel.joint_rig`), then all hands and all 51 perturbations are posed
in one batched call, so an iteration costs about one small forward pass. Every hand keeps the
best parameters it visited.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smhr_core.decode import VIRTUAL_FOCAL_PX
from smhr_core.hand_model import HandModel
from smhr_core.rotations import compose_axis_angle

MIN_DEPTH_M = 0.05
FIT_DIM = 51
"""Values fitted per hand: orientation (3), finger pose (45), translation (3, metres)."""
_ROTATION_STEP = 1e-3
"""Forward-difference step of the rotation values, radians."""
_TRANSLATION_STEP_M = 1e-4


@dataclass(frozen=True)
class FitSettings:
    """How hard the 2D joints pull against the network's own hand, and for how long.

    The defaults were chosen on 60 validation scenes (seeds 3000000-3000059, not the held-out
    set): with v17, the first model with the `keypoints` head, more iterations changed nothing
    and a weaker orientation prior or a stricter confidence cut-off did worse. v21's sharper
    joint heatmaps pull the hand further: on those scenes priors of 0.01 and damping 0.05 took
    its median 2D error from 9.0 to 8.3 % of the box (pose prior 0.05, orientation 0.02,
    damping 0.1 before; v20: 9.0 to 8.5). With v24's heatmaps those priors held the hand back
    (fitted to the true joints it stayed 3.7 % of the box off, without priors 0.1 %): priors of
    0.003 and confidence squared took its median on those scenes from 7.2 to 6.5 %; six or
    eight iterations, a robust (Cauchy) weight per joint or a second reading of the heatmaps
    around the fitted hand gained nothing more. One finger-pose weight of 0.003 for every value
    gave way (session 33) to weights per axis (flexion 0.0005, spread 0.005, twist 0.03, thumb
    0.003), chosen with v27 on 200 validation scenes (seeds 7000000-7000199, 470 hands): median
    2D error 5.49 -> 5.21 % of the box, PA-MPJPE 11.54 -> 11.14 mm; on the 60 older ones 5.67 ->
    5.69 %, mean 7.16 -> 6.97 %, 12.26 -> 11.95 mm. With the fit in the image's own camera and
    the mirror reading (session 35, v28) five iterations instead of three took the median 2D
    error on the 200 validation scenes from 4.82 to 4.73 % (2: 4.88, 8: 4.74) and on the 60
    from 5.35 to 5.29 %, PA-MPJPE unchanged.
    """

    iterations: int = 5
    flexion_prior: float = 0.0005
    """Weight of the squared change of a finger joint's rotation about the model's z axis
    (radians^2: the finger bends towards the palm or back), against the mean over joints of the
    squared 2D distance in units of the hand's box side."""
    spread_prior: float = 0.005
    """Weight of the squared change of a finger joint's rotation about the model's y axis (the
    palm's normal: the finger moves sideways in the palm plane), radians^2."""
    twist_prior: float = 0.03
    """Weight of the squared change of a finger joint's rotation about the model's x axis (along
    the finger: it turns about itself), radians^2."""
    thumb_prior: float = 0.003
    """Weight of the squared change of each of the thumb joints' rotation values, radians^2."""
    orient_prior: float = 0.003
    """Weight of the squared change of the global orientation values (radians^2)."""
    depth_prior: float = 0.1
    """Weight of the squared relative depth change ((z - z0) / z0)^2."""
    damping: float = 0.05
    """Levenberg damping: multiplies the diagonal of the Gauss-Newton matrix."""
    min_confidence: float = 0.05
    """Joints whose heatmap score is below this do not pull."""
    confidence_power: float = 2.0
    """A joint pulls in proportion to its heatmap score to this power: a joint scored 0.5 or
    more is mostly right, one scored 0.2-0.4 is more than 15 % of the box off for a quarter of
    the joints (v24, held-out scenes)."""

    def __post_init__(self) -> None:
        if not isinstance(self.iterations, int) or not 0 <= self.iterations <= 100:
            raise ValueError(f"fit iterations: {self.iterations!r} must be an integer in [0, 100]")
        for name in (
            "flexion_prior",
            "spread_prior",
            "twist_prior",
            "thumb_prior",
            "orient_prior",
            "depth_prior",
            "damping",
            "min_confidence",
            "confidence_power",
        ):
            if not float(getattr(self, name)) >= 0.0:
                raise ValueError(f"fit {name}: {getattr(self, name)!r} must be >= 0")


@dataclass(frozen=True)
class FittedHands:
    """The fitted parameters of N hands (same meaning as the network's)."""

    global_orient: torch.Tensor
    """(N, 3) axis-angle, radians."""
    hand_pose: torch.Tensor
    """(N, 45) axis-angle, radians."""
    translation: torch.Tensor
    """(N, 3) metres, virtual camera of the network input."""
    cost_before: torch.Tensor
    """(N,) fit cost of the network's hand."""
    cost_after: torch.Tensor
    """(N,) fit cost of the returned hand (never above `cost_before`)."""


FINGER_JOINTS = 12
"""MANO's finger joints before the thumb's (index, middle, little and ring, three each)."""


def finger_pose_prior(settings: FitSettings) -> torch.Tensor:
    """(45,) weight of each `hand_pose` value's squared change, radians^2: the four fingers'
    joints (x twist, y spread, z flexion each), then the thumb's three joints."""
    finger = torch.tensor(
        [float(settings.twist_prior), float(settings.spread_prior), float(settings.flexion_prior)]
    )
    thumb = torch.full((3 * (15 - FINGER_JOINTS),), float(settings.thumb_prior))
    return torch.cat([finger.repeat(FINGER_JOINTS), thumb])


def project(
    points_m: torch.Tensor, resolution: int, camera_px: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, ..., 3) metres -> (N, ..., 2) input pixels of the R x R input: with its virtual camera,
    or with `camera_px` (N, 3, 3), each hand's intrinsics in input pixels (skew ignored)."""
    z = points_m[..., 2:3].clamp(min=MIN_DEPTH_M)
    if camera_px is None:
        return points_m[..., :2] / z * VIRTUAL_FOCAL_PX + resolution / 2.0
    k = camera_px.to(points_m.dtype).reshape(-1, *([1] * (points_m.dim() - 2)), 3, 3)
    focal = torch.stack([k[..., 0, 0], k[..., 1, 1]], dim=-1)
    centre = torch.stack([k[..., 0, 2], k[..., 1, 2]], dim=-1)
    return points_m[..., :2] / z * focal + centre


def start_in_camera(
    global_orient: torch.Tensor,
    translation: torch.Tensor,
    wrist_m: torch.Tensor,
    camera_px: torch.Tensor,
    resolution: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's N hands, read in the virtual camera of the R x R input, placed in the
    cameras `camera_px` (N, 3, 3, input pixels): each wrist keeps its pixel and moves along its
    real ray to the depth that keeps the hand's size in the image (scaled by f / 512), and the
    hand turns with the ray (the rotation taking the virtual ray to the real one), so it shows
    the camera the side it showed the virtual one.

    The network sees every hand as if the input's centre were the optical axis at f = 512 px; in
    a crop of a larger image neither holds, and a hand fitted in the virtual camera would bend
    its fingers to make up for the wrong perspective.

    Args:
        global_orient: (N, 3) axis-angle, radians, virtual camera.
        translation: (N, 3) metres, virtual camera.
        wrist_m: (N, 3) the hands' wrists posed with those values, metres.
        camera_px: (N, 3, 3) intrinsics in input pixels.

    Returns:
        The (N, 3) orientation (radians) and translation (metres) in the real cameras.
    """
    k = camera_px.to(wrist_m.dtype)
    uv = project(wrist_m, resolution)
    focal = torch.sqrt(k[:, 0, 0] * k[:, 1, 1])
    depth = wrist_m[:, 2].clamp(min=MIN_DEPTH_M) * focal / VIRTUAL_FOCAL_PX
    real_ray = torch.stack(
        [
            (uv[:, 0] - k[:, 0, 2]) / k[:, 0, 0],
            (uv[:, 1] - k[:, 1, 2]) / k[:, 1, 1],
            torch.ones_like(depth),
        ],
        dim=-1,
    )
    wrist = real_ray * depth[:, None]
    virtual_ray = torch.cat(
        [(uv - resolution / 2.0) / VIRTUAL_FOCAL_PX, torch.ones_like(depth)[:, None]], dim=-1
    )
    a = virtual_ray / virtual_ray.norm(dim=-1, keepdim=True)
    b = real_ray / real_ray.norm(dim=-1, keepdim=True)
    axis = torch.cross(a, b, dim=-1)
    sine = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(sine, (a * b).sum(-1, keepdim=True))
    turn = torch.where(sine > 1e-9, axis / sine.clamp(min=1e-12) * angle, torch.zeros_like(axis))
    orient = compose_axis_angle(turn, global_orient.to(wrist_m.dtype))
    return orient, translation + wrist - wrist_m


def fit_hands(
    hand_model: HandModel,
    global_orient: torch.Tensor,
    hand_pose: torch.Tensor,
    betas: torch.Tensor,
    translation: torch.Tensor,
    is_right: torch.Tensor,
    target_px: torch.Tensor,
    confidence: torch.Tensor,
    resolution: int,
    settings: FitSettings | None = None,
    camera_px: torch.Tensor | None = None,
) -> FittedHands:
    """Fit N hands' orientation, finger pose and translation to 2D joints (input pixels), seen
    by the virtual camera of the R x R input or by `camera_px` (N, 3, 3, input pixels; the
    values given are then in that camera, see `start_in_camera`).

    Cost per hand: the mean over joints, weighted by confidence to `confidence_power`, of the
    squared 2D distance divided by the square of the hand's box side (hands of every size pull
    alike), plus the priors of `FitSettings` on the change from the network's values.
    """
    s = settings or FitSettings()
    n = int(global_orient.shape[0])
    with torch.no_grad():
        start = torch.cat([global_orient, hand_pose, translation], dim=1).float().clone()
        betas = betas.float().clone()
        is_right = is_right.to(torch.bool).clone()
        target = target_px.float().clone()
        confidence = confidence.float().clone()
        # A joint the heatmaps gave no finite answer for does not pull.
        finite = torch.isfinite(target).all(-1) & torch.isfinite(confidence)
        target = torch.where(finite[..., None], target, torch.zeros_like(target))
        confidence = torch.where(finite, confidence, torch.zeros_like(confidence))
        weight = confidence.pow(s.confidence_power) * (confidence >= s.min_confidence).float()
        weight = weight / weight.sum(-1, keepdim=True).clamp(min=1e-6)
        side = (target.amax(1) - target.amin(1)).amax(-1).clamp(min=8.0)
        depth0 = start[:, 50].abs().clamp(min=MIN_DEPTH_M)
        prior = torch.cat(
            [
                torch.full((3,), float(s.orient_prior)),
                finger_pose_prior(s),
                torch.zeros(3),
            ]
        ).to(start.device)
        prior = prior.expand(n, -1).clone()
        prior[:, 50] = float(s.depth_prior) / depth0**2
        steps = torch.full((FIT_DIM,), _ROTATION_STEP, device=start.device)
        steps[48:] = _TRANSLATION_STEP_M
        perturb = torch.cat([torch.zeros(1, FIT_DIM, device=start.device), torch.diag(steps)])

        rig = hand_model.joint_rig(betas, is_right)

        def data_residuals(values: torch.Tensor) -> torch.Tensor:
            """(N, K, 51) values -> (N, K, 42) weighted 2D residuals."""
            k = values.shape[1]
            joints = rig.pose(values[..., :3], values[..., 3:48], values[..., 48:])
            error = (project(joints, resolution, camera_px) - target[:, None]) / side[
                :, None, None, None
            ]
            return (error * weight[:, None, :, None].sqrt()).reshape(n, k, 42)

        def total_cost(values: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
            change = values - start
            return (residual**2).sum(-1) + (prior * change**2).sum(-1)

        current = start.clone()
        best = start.clone()
        best_cost = cost_before = None
        for iteration in range(s.iterations + 1):
            last = iteration == s.iterations
            # The last pass only scores the last step: no perturbations needed.
            offsets = perturb[:1] if last else perturb
            rows = data_residuals(current[:, None, :] + offsets[None])  # (N, 52 or 1, 42)
            residual = rows[:, 0]
            cost = total_cost(current, residual)
            if iteration == 0:
                cost_before = best_cost = cost
            else:
                better = torch.isfinite(cost) & (cost < best_cost)
                best = torch.where(better[:, None], current, best)
                best_cost = torch.where(better, cost, best_cost)
            if last:
                break
            jacobian = ((rows[:, 1:] - residual[:, None]) / steps[None, :, None]).transpose(1, 2)
            jt = jacobian.double().transpose(1, 2)
            hessian = jt @ jacobian.double() + torch.diag_embed(prior.double())
            gradient = (
                jt @ residual.double()[..., None] + (prior * (current - start)).double()[..., None]
            )
            damped = hessian + torch.diag_embed(
                s.damping * torch.diagonal(hessian, dim1=1, dim2=2) + 1e-9
            )
            step = torch.linalg.solve(damped, -gradient)[..., 0].float()
            current = current + step
    return FittedHands(
        global_orient=best[:, :3],
        hand_pose=best[:, 3:48],
        translation=best[:, 48:],
        cost_before=cost_before,
        cost_after=best_cost,
    )
