"""smhr_core.keypoint_mirror: the maps of a mirrored input, mirrored back, read the same joints."""

from __future__ import annotations

import pytest
import torch

from smhr_core.decode import OUTPUT_STRIDE
from smhr_core.keypoint_mirror import average_with_mirror, unmirror_keypoint_maps
from smhr_core.network import KEYPOINT_JOINTS

WIDTH = 32  # cells: a 128-pixel input
INPUT_PX = WIDTH * OUTPUT_STRIDE


def _maps_of(joints_px: torch.Tensor) -> torch.Tensor:
    """(1, 23, W, W) maps that put joint j (pixels, continuous) at its cell with its offset, as
    the training targets do: a hot cell floor(x / 4) and offset x / 4 - cell."""
    maps = torch.full((1, KEYPOINT_JOINTS + 2, WIDTH, WIDTH), -8.0)
    maps[:, KEYPOINT_JOINTS:] = 0.5
    for j, (x, y) in enumerate(joints_px.tolist()):
        column, row = int(x // OUTPUT_STRIDE), int(y // OUTPUT_STRIDE)
        maps[0, j, row, column] = 6.0
        maps[0, KEYPOINT_JOINTS, row, column] = x / OUTPUT_STRIDE - column
        maps[0, KEYPOINT_JOINTS + 1, row, column] = y / OUTPUT_STRIDE - row
    return maps


def _places(maps: torch.Tensor) -> torch.Tensor:
    """(21, 2) pixels: each joint at its hottest cell plus that cell's offsets."""
    flat = maps[0, :KEYPOINT_JOINTS].reshape(KEYPOINT_JOINTS, -1).argmax(dim=1)
    row, column = flat // WIDTH, flat % WIDTH
    x = (column + maps[0, KEYPOINT_JOINTS, row, column]) * OUTPUT_STRIDE
    y = (row + maps[0, KEYPOINT_JOINTS + 1, row, column]) * OUTPUT_STRIDE
    return torch.stack([x, y], dim=1)


def test_the_mirrored_maps_mirrored_back_place_every_joint_where_it_is() -> None:
    generator = torch.Generator().manual_seed(3)
    joints = torch.rand(KEYPOINT_JOINTS, 2, generator=generator) * (INPUT_PX - 2) + 1
    mirrored_joints = torch.stack([INPUT_PX - joints[:, 0], joints[:, 1]], dim=1)
    back = unmirror_keypoint_maps(_maps_of(mirrored_joints))
    torch.testing.assert_close(_places(back), joints, atol=1e-4, rtol=0)
    # Mirroring twice is the identity.
    twice = unmirror_keypoint_maps(unmirror_keypoint_maps(_maps_of(joints)))
    torch.testing.assert_close(twice, _maps_of(joints))


def test_the_average_keeps_an_agreeing_reading_and_splits_a_disagreeing_one() -> None:
    generator = torch.Generator().manual_seed(4)
    joints = torch.rand(KEYPOINT_JOINTS, 2, generator=generator) * (INPUT_PX - 2) + 1
    mirrored_joints = torch.stack([INPUT_PX - joints[:, 0], joints[:, 1]], dim=1)
    agreed = average_with_mirror(_maps_of(joints), _maps_of(mirrored_joints))
    torch.testing.assert_close(_places(agreed), joints, atol=1e-4, rtol=0)
    # Joint 8 read at another place in the mirror image: both places keep half its heat.
    elsewhere = mirrored_joints.clone()
    elsewhere[8] = torch.tensor([INPUT_PX - 10.0, 20.0])
    split = average_with_mirror(_maps_of(joints), _maps_of(elsewhere))[0, 8]
    assert split.max() == pytest.approx(-1.0)
    assert int((split == split.max()).sum()) == 2


def test_maps_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expected \(B, 23, W, W\)"):
        unmirror_keypoint_maps(torch.zeros(1, 21, 8, 8))
    with pytest.raises(ValueError, match="differ"):
        average_with_mirror(torch.zeros(1, 23, 8, 8), torch.zeros(1, 23, 8, 16))
