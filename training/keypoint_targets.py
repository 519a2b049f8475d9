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
