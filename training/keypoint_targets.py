"""Targets and loss of the `keypoints` head (ours, not the release's): a heatmap per joint and
the sub-cell offset of each joint at its cell, CenterNet's keypoint scheme on the stride-4 map.

Targets are built on the fly from the batch's labelled 2D keypoints, so the sample contract
(`training.sample`) is unchanged: joint j of every hand puts a Gaussian peak of exactly 1 on
channel j at the cell floor(keypoint / 4), and that cell's offset target is keypoint / 4 - cell
(in cells, in [0, 1)). Hands in one image share the channels, as CenterNet's people do.

By default the Gaussian is centred on the peak cell (CenterNet), so the heat around a peak says
nothing about where in its cell the joint lies. With `subcell` it is centred on the joint's exact
place and scaled so that the peak cell is still exactly 1 (the focal loss's positive): a joint
near a cell's edge makes the neighbour across that edge nearly as hot, which the reading's
heat-weighted mean (`smhr_core.keypoint_heatmap`) turns into a place within the cell.

The centroid loss reads each labelled joint as inference does (the heat-weighted mean of the
places around a cell), around the joint's own cell, and measures how far that lands from the
joint: the focal loss pulls the heat towards the Gaussian everywhere, with little pull from a
peak shifted by under a cell, which is where most of the reading's error lies.

The stray loss asks that a joint's channel be hottest near the joint within the window the
reading searches: a softmax (at `STRAY_TEMPERATURE`) of the channel's logits over the cells
within `STRAY_WINDOW_FRACTION` of the hand's box around the joint, and minus the log of its mass
within `STRAY_NEAR_CELLS`. The focal loss scores each cell alone, so a second peak on the next
finger's tip costs it little, while the reading then picks the wrong one of the two; this term
grows with the rival's share and fades once the joint's own peak dominates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smhr_core.decode import OUTPUT_STRIDE, heatmap_scores
from smhr_core.keypoint_heatmap import centroid_px
from smhr_core.network import KEYPOINT_JOINTS

GAUSSIAN_RADIUS_CELLS = 2
"""Radius of each joint's Gaussian on the map (cells; 8 input pixels). Joints of one finger lie
about 2-4 cells apart on a hand of 60-115 pixels, so one channel per joint keeps them apart."""
GAUSSIAN_SIGMA_CELLS = (2 * GAUSSIAN_RADIUS_CELLS + 1) / 6.0
"""CenterNet's sigma for a given radius."""
STRAY_NEAR_CELLS = 2.0
"""Cells whose centre lies within this distance (cells) of the joint count as the joint's own:
about the focal target's Gaussian, so the term does not fight its shape."""
STRAY_TEMPERATURE = 0.5
"""The softmax's temperature on the heatmap logits. Below 1 the term looks at the strongest
cells, as the reading's choice of peak does: with v32 on training scenes half its joints score
under 0.39 and a tenth over 1.7."""
STRAY_WINDOW_FRACTION = 0.40
"""The stray loss's window around each joint, as a fraction of its hand's keypoint box side: the
reading's search radius (`smhr_core.keypoint_heatmap.SEARCH_FRACTION`)."""


@dataclass(frozen=True)
class KeypointTargets:
    """Targets of one batch for the `keypoints` head."""

    heatmap: torch.Tensor
    """(B, 21, W, W) Gaussian targets, 1 exactly at each labelled joint's cell."""
    cell: torch.Tensor
    """(B, M, 21) int64 flat cell index (row * W + column) of each joint."""
    offset: torch.Tensor
    """(B, M, 21, 2) float32 (x, y) offset of the joint within its cell, cells."""
    on: torch.Tensor
    """(B, M, 21) float32: 1 for a labelled joint of a real hand inside the image."""


def keypoint_targets(
    keypoints_px: torch.Tensor,
    visible: torch.Tensor,
    valid: torch.Tensor,
    map_size: int,
    subcell: bool = False,
) -> KeypointTargets:
    """Targets from labelled keypoints.

    Args:
        keypoints_px: (B, M, 21, 2) input pixels (u, v).
        visible: (B, M, 21) 1 if the joint is labelled.
        valid: (B, M) 1 for a real hand slot.
        map_size: W, the side of the stride-4 maps.
        subcell: centre each Gaussian on the joint's exact place instead of its cell's centre
            (its peak cell stays exactly 1).
    """
    cells = keypoints_px.float() / OUTPUT_STRIDE
    whole = cells.floor()
    inside = ((whole >= 0) & (whole < map_size)).all(-1)
    on = visible.float() * valid.float()[..., None] * inside.float()
    whole = whole.clamp(0, map_size - 1)
    grid = torch.arange(map_size, device=keypoints_px.device, dtype=torch.float32)
    dx = grid.view(1, 1, 1, 1, -1) - whole[..., 0, None, None]  # (B, M, 21, 1, W)
    dy = grid.view(1, 1, 1, -1, 1) - whole[..., 1, None, None]  # (B, M, 21, W, 1)
    near = (dx.abs() <= GAUSSIAN_RADIUS_CELLS) & (dy.abs() <= GAUSSIAN_RADIUS_CELLS)
    if subcell:
        # Distances from each cell's centre to the joint, less the peak cell's own, so the
        # peak cell comes out at exactly 1: exp(-(|c - k|^2 - |c0 - k|^2) / 2 sigma^2).
        centre = cells - whole - 0.5  # (B, M, 21, 2): the joint from its cell's centre
        ex, ey = dx - centre[..., 0, None, None], dy - centre[..., 1, None, None]
        spread = ex**2 + ey**2 - (centre**2).sum(-1)[..., None, None]
    else:
        spread = dx**2 + dy**2
    gauss = torch.exp(-spread / (2 * GAUSSIAN_SIGMA_CELLS**2)).clamp(max=1.0) * near
    gauss = gauss * on[..., None, None]
    heatmap = gauss.amax(dim=1)  # (B, 21, W, W): the hands of one image share each channel
    whole_long = whole.long()
    return KeypointTargets(
        heatmap=heatmap,
        cell=whole_long[..., 1] * map_size + whole_long[..., 0],
        offset=cells - whole,
        on=on,
    )


def offset_loss(maps: torch.Tensor, targets: KeypointTargets) -> torch.Tensor:
    """Per-sample (B,) L1 (cells) of the predicted sub-cell offsets at the labelled joints' cells,
    averaged over the sample's labelled joints (0 when it has none).

    Args:
        maps: (B, 23, W, W) `keypoints` head output; channels 21 and 22 are the x and y offsets.
    """
    batch = maps.shape[0]
    offsets = maps[:, KEYPOINT_JOINTS:].float().reshape(batch, 2, -1)  # (B, 2, W*W)
    index = targets.cell.reshape(batch, 1, -1).expand(-1, 2, -1)
    predicted = offsets.gather(2, index).permute(0, 2, 1)  # (B, M*21, 2)
    error = (predicted - targets.offset.reshape(batch, -1, 2)).abs().sum(-1)
    on = targets.on.reshape(batch, -1)
    return (error * on).sum(-1) / on.sum(-1).clamp(min=1.0)


def centroid_loss(maps: torch.Tensor, targets: KeypointTargets) -> torch.Tensor:
    """Per-sample (B,) L1 (cells) between each labelled joint and the inference reading's
    heat-weighted mean around the joint's cell (`smhr_core.keypoint_heatmap.centroid_px`),
    averaged over the sample's labelled joints (0 when it has none). Only the heat learns from
    it: the offsets enter detached, as `offset_loss` trains them at the joints' own cells.

    Args:
        maps: (B, 23, W, W) `keypoints` head output (21 heatmap logits, x and y offsets).
    """
    batch, _, width, _ = maps.shape
    hands = targets.cell.shape[1]
    heat = heatmap_scores(maps[:, :KEYPOINT_JOINTS].float()).repeat_interleave(hands, dim=0)
    offsets = maps[:, KEYPOINT_JOINTS:].detach().float().reshape(batch, 2, -1)
    read = centroid_px(
        heat,
        offsets.repeat_interleave(hands, dim=0),
        targets.cell.reshape(batch * hands, KEYPOINT_JOINTS),
    ).reshape(batch, hands, KEYPOINT_JOINTS, 2)
    cell = torch.stack(
        [targets.cell % width, torch.div(targets.cell, width, rounding_mode="floor")], -1
    )
    true = cell.float() + targets.offset
    error = (read / OUTPUT_STRIDE - true).abs().sum(-1).reshape(batch, -1)
    on = targets.on.reshape(batch, -1)
    return (error * on).sum(-1) / on.sum(-1).clamp(min=1.0)


def stray_loss(maps: torch.Tensor, targets: KeypointTargets) -> torch.Tensor:
    """Per-sample (B,) minus the log of the share of each labelled joint's softmax (its channel's
    logits over the cells within `STRAY_WINDOW_FRACTION` of its hand's box around it) that lies
    within `STRAY_NEAR_CELLS` of the joint, averaged over the sample's labelled joints (0 when it
    has none). Cells near the same joint of another hand of the image are left out of the
    window, as the reading keeps hands apart by their own windows.

    Args:
        maps: (B, 23, W, W) `keypoints` head output (21 heatmap logits, x and y offsets).
    """
    batch, _, width, _ = maps.shape
    logits = maps[:, :KEYPOINT_JOINTS].float().reshape(batch, 1, KEYPOINT_JOINTS, -1)
    cell = torch.stack(
        [targets.cell % width, torch.div(targets.cell, width, rounding_mode="floor")], -1
    )
    joint = cell.float() + targets.offset  # (B, M, 21, 2) cells
    grid = torch.arange(width, device=maps.device, dtype=torch.float32) + 0.5
    centres = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
    distance = (centres.view(1, 1, 1, -1, 2) - joint[..., None, :]).norm(dim=-1)  # (B, M, 21, W*W)
    on = targets.on > 0
    far = torch.finfo(joint.dtype).max
    low = torch.where(on[..., None], joint, torch.full_like(joint, far)).amin(2)
    high = torch.where(on[..., None], joint, torch.full_like(joint, -far)).amax(2)
    side = (high - low).amax(-1).clamp(min=1.0)  # (B, M) cells
    window = distance <= (STRAY_WINDOW_FRACTION * side)[..., None, None].clamp(
        min=2 * STRAY_NEAR_CELLS
    )
    near = (distance <= STRAY_NEAR_CELLS) & on[..., None]
    hands = near.shape[1]
    others = near.unsqueeze(1) & ~torch.eye(hands, dtype=torch.bool, device=maps.device).view(
        1, hands, hands, 1, 1
    )
    # An unlabelled joint counts every cell as its own: its term is exactly 0, with no gradient.
    near = near | ~on[..., None]
    window = (window & ~others.any(2)) | near  # (B, M, 21, W*W)
    masked = (logits / STRAY_TEMPERATURE).masked_fill(~window, float("-inf"))
    whole = torch.logsumexp(masked, dim=-1)
    own = torch.logsumexp(masked.masked_fill(~near, float("-inf")), dim=-1)
    error = torch.where(on, whole - own, torch.zeros_like(whole)).reshape(batch, -1)
    weight = on.float().reshape(batch, -1)
    return error.sum(-1) / weight.sum(-1).clamp(min=1.0)
