"""2D joints read from the `keypoints` head (ours): per-joint heatmaps plus sub-cell offsets.

Every hand of an image shares the 21 heatmap channels, so each hand reads joint j near where its
own mesh puts joint j: the strongest cell of channel j within a window around that guess. The
window scales with the hand (a fraction of its keypoint box), so a hand does not take a
neighbouring hand's joints unless the two overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smhr_core.decode import OUTPUT_STRIDE, heatmap_scores
from smhr_core.network import KEYPOINT_JOINTS

SEARCH_FRACTION = 0.25
"""Search radius around the mesh's guess, as a fraction of the guess's keypoint box side."""
MIN_SEARCH_CELLS = 2.0
"""Smallest search radius, cells (8 input pixels)."""


@dataclass(frozen=True)
class HeatmapKeypoints:
    """Joints read from the heatmaps for N hands."""

    keypoints_px: torch.Tensor
    """(N, 21, 2) input pixels (u, v) of the network's square input."""
    confidence: torch.Tensor
    """(N, 21) heatmap score at the chosen cell, in [0, 1]."""


def read_keypoints(
    maps: torch.Tensor, batch_index: torch.Tensor, guess_px: torch.Tensor
) -> HeatmapKeypoints:
    """The joints of N hands from the `keypoints` head's maps.

    Args:
        maps: (B, 23, W, W) output of the `keypoints` head: 21 heatmap logits, then the x and y
            offsets (cells) of a joint within its cell.
        batch_index: (N,) image of each hand.
        guess_px: (N, 21, 2) each hand's joints projected from its mesh, input pixels.
    """
    if maps.dim() != 4 or maps.shape[1] != KEYPOINT_JOINTS + 2:
        raise ValueError(
            f"maps: expected (B, {KEYPOINT_JOINTS + 2}, W, W), got {tuple(maps.shape)}"
        )
    n = int(guess_px.shape[0])
    width = int(maps.shape[-1])
    if n == 0:
        empty = maps.new_zeros((0, KEYPOINT_JOINTS))
        return HeatmapKeypoints(maps.new_zeros((0, KEYPOINT_JOINTS, 2)), empty)
    maps = maps.float()
    heat = heatmap_scores(maps[batch_index.long(), :KEYPOINT_JOINTS])  # (N, 21, W, W)
    guess_cells = guess_px.float() / OUTPUT_STRIDE - 0.5  # cell centres sit at (i + 0.5) * 4
    side = (guess_px.amax(dim=1) - guess_px.amin(dim=1)).amax(dim=-1) / OUTPUT_STRIDE  # (N,)
    radius = (SEARCH_FRACTION * side).clamp(min=MIN_SEARCH_CELLS)
    grid = torch.arange(width, device=maps.device, dtype=torch.float32)
    dx = grid.view(1, 1, 1, -1) - guess_cells[..., 0, None, None]
    dy = grid.view(1, 1, -1, 1) - guess_cells[..., 1, None, None]
    inside = (dx**2 + dy**2) <= radius.view(-1, 1, 1, 1) ** 2
    masked = torch.where(inside, heat, torch.full_like(heat, -1.0)).reshape(n, KEYPOINT_JOINTS, -1)
    confidence, cell = masked.max(dim=-1)  # (N, 21)
    offsets = maps[batch_index.long(), KEYPOINT_JOINTS:].reshape(n, 2, -1)  # (N, 2, W*W)
    at = offsets.gather(2, cell[:, None, :].expand(-1, 2, -1)).permute(0, 2, 1)  # (N, 21, 2)
    column = (cell % width).float()
    row = torch.div(cell, width, rounding_mode="floor").float()
    keypoints = torch.stack([column, row], dim=-1) + at
    return HeatmapKeypoints(
        keypoints_px=keypoints * OUTPUT_STRIDE, confidence=confidence.clamp(min=0.0)
    )
