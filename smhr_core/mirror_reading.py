"""Each hand read from the network's input and from its mirror image, and the two readings averaged
(test-time mirroring).

A mirrored hand is a hand of the other side with the same joints in the same order, and the hand
model's left hand is its right hand mirrored in x. So what the network reads from the mirrored
input, mirrored back, is a second reading of the same hand, whose mistakes (a finger read at the
next finger, a wrong turn of the wrist) are partly its own; the mean of the two is better than
either. Averaged: the `keypoints` maps (logits and offsets), the hand's regressed parameters and
its side (`handmap` logits).

Pixel coordinates are continuous, as in the renderer: pixel i spans [i, i + 1), and a point at x
pixels of an input R pixels wide is at R - x in the mirrored input, in cell W - 1 - c of the
stride-4 maps for cell c. A joint in cell c with x offset o (cells) sits at (c + o) * 4; mirrored
back, in cell W - 1 - c with offset 1 - o. In the virtual camera (principal point at R / 2) the
mirror turns x into -x: a rotation's axis-angle (x, y, z) becomes (x, -y, -z), and the translation
regressed at cell W - 1 - c with horizontal term a is the mirror of the one at cell c with 4 - a
(`smhr_core.decode.virtual_translation`).
"""

from __future__ import annotations

import torch

from smhr_core.decode import OUTPUT_STRIDE, PARAMS_PER_HAND
from smhr_core.network import KEYPOINT_JOINTS
from smhr_core.rotations import average_axis_angle

_ROTATION_VALUES = 48
"""Global orientation (3) and the 15 finger joints (45) lead each side's 61 parameters."""
_CAMERA_A = 58
"""Index of the camera's horizontal term a in each side's 61 parameters."""
_MIRROR_SIGNS = torch.tensor([1.0, -1.0, -1.0])
"""An axis-angle (x, y, z) mirrored in x is (x, -y, -z)."""


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


def average_keypoint_maps(maps: torch.Tensor, mirrored_maps: torch.Tensor) -> torch.Tensor:
    """The mean of the (B, 23, W, W) `keypoints` maps of an input and those of the same input
    mirrored left to right (heatmap logits and offsets alike); where the mirrored value is not
    finite, the input's own."""
    if maps.shape != mirrored_maps.shape:
        raise ValueError(
            f"maps {tuple(maps.shape)} and mirrored maps {tuple(mirrored_maps.shape)} differ"
        )
    back = unmirror_keypoint_maps(mirrored_maps)
    return torch.where(torch.isfinite(back), (maps + back) / 2.0, maps)


def unmirror_params(mirrored_params: torch.Tensor) -> torch.Tensor:
    """(N, 122) left and right parameter sets regressed at the mirrored cells of a mirrored
    input, as the sets of the original hands: the mirrored left set is the right hand's and the
    other way round, rotations mirrored and the camera's a turned to 4 - a."""
    if mirrored_params.dim() != 2 or mirrored_params.shape[1] != 2 * PARAMS_PER_HAND:
        raise ValueError(
            f"params: expected (N, {2 * PARAMS_PER_HAND}), got {tuple(mirrored_params.shape)}"
        )
    left, right = mirrored_params.split(PARAMS_PER_HAND, dim=1)
    return torch.cat([_unmirror_side(right), _unmirror_side(left)], dim=1)


def _unmirror_side(params61: torch.Tensor) -> torch.Tensor:
    signs = _MIRROR_SIGNS.to(params61).repeat(_ROTATION_VALUES // 3)
    rotations = params61[:, :_ROTATION_VALUES] * signs
    a = OUTPUT_STRIDE - params61[:, _CAMERA_A : _CAMERA_A + 1]
    return torch.cat(
        [rotations, params61[:, _ROTATION_VALUES:_CAMERA_A], a, params61[:, _CAMERA_A + 1 :]],
        dim=1,
    )


def average_hands(
    params: torch.Tensor,
    handmap: torch.Tensor | None,
    mirrored_params: torch.Tensor,
    mirrored_handmap: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (N, 122) parameters and (N, 2) `handmap` logits (left, right) of N hands, averaged
    with those regressed at their mirrored cells of the mirrored input (its `handmap` channels
    swapped, its parameters by `unmirror_params`).

    Each side's global orientation is the rotation halfway between the two, every other value
    the mean. The network trains only the set of a hand's own side, so where the two readings
    disagree on the side (without `handmap`, never), the parameters stay the first reading's;
    so do a hand's parameters, or its side logits, where the mirror image's are not finite (a
    fault there does not cost a hand the first reading found).
    """
    if params.shape != mirrored_params.shape:
        raise ValueError(
            f"params {tuple(params.shape)} and mirrored params {tuple(mirrored_params.shape)} "
            "differ"
        )
    back = unmirror_params(mirrored_params)
    usable = torch.isfinite(back).all(dim=1)
    mean = (params + back) / 2.0
    for start in (0, PARAMS_PER_HAND):
        orient = slice(start, start + 3)
        mean[:, orient] = average_axis_angle(params[:, orient], back[:, orient])
    if handmap is None or mirrored_handmap is None:
        return torch.where(usable[:, None], mean, params), handmap
    swapped = mirrored_handmap.flip(-1)
    side_usable = torch.isfinite(swapped).all(dim=1)
    agree = (handmap[:, 1] >= handmap[:, 0]) == (swapped[:, 1] >= swapped[:, 0])
    params = torch.where((usable & side_usable & agree)[:, None], mean, params)
    return params, torch.where(side_usable[:, None], (handmap + swapped) / 2.0, handmap)
