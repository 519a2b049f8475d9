"""The 21 joints of N shaped hands, posed many times over: the inner loop of the 2D fit.

`HandModel.joint_rig` shapes each hand once (rest joints, fingertip vertices, their pose blend
shapes and skinning weights, whichever side the hand is); `JointRig.pose` then poses K variants
of every hand in one batch. The kinematic chain is walked one tree level at a time (the hand's
16 joints form 4 levels), so a call costs a handful of batched operations whatever N and K are.
The result equals smplx's `lbs` at the joints and the five fingertip vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from smplx.lbs import batch_rodrigues


def chain_levels(parents: list[int]) -> list[tuple[list[int], list[int]]]:
    """Joints grouped by depth below the root: [(children, their parents), ...] from depth 1.

    Args:
        parents: parent index of each joint, -1 for the root (joint 0); parents precede children.
    """
    depth = [0] * len(parents)
    for joint, parent in enumerate(parents):
        if joint == 0:
            if parent != -1:
                raise ValueError(f"joint 0 must be the root (parent -1), got parent {parent}")
            continue
        if not 0 <= parent < joint:
            raise ValueError(f"joint {joint}: parent {parent} must precede it")
        depth[joint] = depth[parent] + 1
    levels = []
    for level in range(1, max(depth) + 1):
        children = [j for j, d in enumerate(depth) if d == level]
        levels.append((children, [parents[j] for j in children]))
    return levels


@dataclass(frozen=True)
class JointRig:
    """N shaped hands ready to be posed; build it with `HandModel.joint_rig`."""

    rest_joints: torch.Tensor
    """(N, 16, 3) shaped rest-pose chain joints, metres."""
    rest_tips: torch.Tensor
    """(N, 5, 3) shaped rest-pose fingertip vertices, metres."""
    tip_posedirs: torch.Tensor
    """(N, 135, 15) pose blend shapes of the fingertip vertices."""
    tip_weights: torch.Tensor
    """(N, 5, 16) skinning weights of the fingertip vertices."""
    levels: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    """`chain_levels` of the kinematic tree."""
    order: torch.Tensor
    """(21,) FreiHAND joint j is joint order[j] of chain joints + tips."""

    def pose(
        self, global_orient: torch.Tensor, hand_pose: torch.Tensor, translation: torch.Tensor
    ) -> torch.Tensor:
        """(N, K, 21, 3) joints (metres, FreiHAND order) of K poses of each of the N hands.

        Args:
            global_orient: (N, K, 3) axis-angle about the wrist, radians.
            hand_pose: (N, K, 45) axis-angle of the 15 finger joints, radians.
            translation: (N, K, 3) metres, added after the rotation.
        """
        n, k = global_orient.shape[:2]
        dtype = self.rest_joints.dtype
        axis_angle = torch.cat([global_orient, hand_pose], dim=-1).to(dtype)
        local = batch_rodrigues(axis_angle.reshape(-1, 3)).reshape(n, k, 16, 3, 3)
        rest = self.rest_joints[:, None]  # (N, 1, 16, 3)
        rotation = [local[:, :, 0]] + [None] * 15
        position = [rest[:, :, 0].expand(n, k, 3)] + [None] * 15
        for children, parents in self.levels:
            parent_rotation = torch.stack([rotation[p] for p in parents], dim=2)
            parent_position = torch.stack([position[p] for p in parents], dim=2)
            bone = rest[:, :, children] - rest[:, :, parents]  # (N, 1, C, 3)
            child_rotation = parent_rotation @ local[:, :, children]
            child_position = (parent_rotation @ bone[..., None])[..., 0] + parent_position
            for i, child in enumerate(children):
                rotation[child] = child_rotation[:, :, i]
                position[child] = child_position[:, :, i]
        rotations = torch.stack(rotation, dim=2)  # (N, K, 16, 3, 3)
        joints = torch.stack(position, dim=2)  # (N, K, 16, 3)
        eye = torch.eye(3, dtype=dtype, device=local.device)
        pose_feature = (local[:, :, 1:] - eye).reshape(n, k, 135)
        blend = pose_feature[:, :, None, :] @ self.tip_posedirs[:, None]  # (N, K, 1, 15)
        tips = self.rest_tips[:, None] + blend.reshape(n, k, 5, 3)
        # Linear blend skinning of the tips: each bone moves a point p to R p + (x - R j), with
        # j its rest joint and R, x its posed rotation and joint.
        offset = joints - (rotations @ rest[..., None])[..., 0]
        weights = self.tip_weights[:, None]  # (N, 1, 5, 16)
        blended_rotation = torch.einsum("nktj,nkjab->nktab", weights.expand(n, k, 5, 16), rotations)
        blended_offset = weights @ offset
        tips = (blended_rotation @ tips[..., None])[..., 0] + blended_offset
        every = torch.cat([joints, tips], dim=2)[:, :, self.order]
        return every + translation.to(dtype)[:, :, None, :]
