"""The `keypoints` head's maps averaged with the maps of the mirrored input (test-time mirroring).

A mirrored hand is a hand of the other side with the same joints in the same order, so the maps
the network draws for the mirrored input, mirrored back, are a second reading of the same joints.
Its mistakes (a finger read at the next finger) are partly independent of the first reading's,
and the mean of the two logits lowers them.

Pixel coordinates are continuous, as in the renderer: pixel i spans [i, i + 1), and a joint at x
pixels of an input R pixels wide is at R - x in the mirrored input. A joint in cell c with x
offset o (cells) sits at (c + o) * 4; mirrored back, cell W - 1 - c with offset 1 - o.
"""

from __future__ import annotations

import torch

from smhr_core.network import KEYPOINT_JOINTS


def unmirror_keypoint_maps(mirrored_maps: torch.Tensor) -> torch.Tensor:
    """The (B, 23, W, W) `keypoints` maps of a mirrored input, mirrored back into the
    original input's frame: columns reversed and the x offset (channel 21) turned to 1 - x."""
    if mirrored_maps.dim() != 4 or mirrored_maps.shape[1] != KEYPOINT_JOINTS + 2:
        raise ValueError(
            f"maps: expected (B, {KEYPOINT_JOINTS + 2}, W, W), got {tuple(mirrored_maps.shape)}"
        )
    maps = mirrored_maps.flip(-1)
    x_offset = 1.0 - maps[:, KEYPOINT_JOINTS : KEYPOINT_JOINTS + 1]
    return torch.cat([maps[:, :KEYPOINT_JOINTS], x_offset, maps[:, KEYPOINT_JOINTS + 1 :]], dim=1)


def average_with_mirror(maps: torch.Tensor, mirrored_maps: torch.Tensor) -> torch.Tensor:
    """The mean of the (B, 23, W, W) `keypoints` maps of an input and those of the same input
    mirrored left to right (heatmap logits and offsets alike)."""
    if maps.shape != mirrored_maps.shape:
        raise ValueError(
            f"maps {tuple(maps.shape)} and mirrored maps {tuple(mirrored_maps.shape)} differ"
        )
    return (maps + unmirror_keypoint_maps(mirrored_maps)) / 2.0
