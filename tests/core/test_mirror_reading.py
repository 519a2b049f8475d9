"""smhr_core.mirror_reading: what the network reads from a mirrored input, mirrored back, is the
same hand (maps, parameters through the real open hand model, side), and the two readings average.
"""

from __future__ import annotations

import math

import pytest
import torch

from smhr_core.camera import virtual_intrinsics
from smhr_core.decode import OUTPUT_STRIDE, select_params, split_params, virtual_translation
from smhr_core.hand_model import HandModel
from smhr_core.mirror_reading import (
    average_hands,
    average_keypoint_maps,
    unmirror_keypoint_maps,
    unmirror_params,
)
from smhr_core.network import KEYPOINT_JOINTS
from smhr_core.open_hand import open_hand_directory
from smhr_core.rotations import average_axis_angle, axis_angle_to_matrix

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
    agreed = average_keypoint_maps(_maps_of(joints), _maps_of(mirrored_joints))
    torch.testing.assert_close(_places(agreed), joints, atol=1e-4, rtol=0)
    # Joint 8 read at another place in the mirror image: both places keep half its heat.
    elsewhere = mirrored_joints.clone()
    elsewhere[8] = torch.tensor([INPUT_PX - 10.0, 20.0])
    split = average_keypoint_maps(_maps_of(joints), _maps_of(elsewhere))[0, 8]
    assert split.max() == pytest.approx(-1.0)
    assert int((split == split.max()).sum()) == 2


def test_maps_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expected \(B, 23, W, W\)"):
        unmirror_keypoint_maps(torch.zeros(1, 21, 8, 8))
    with pytest.raises(ValueError, match="differ"):
        average_keypoint_maps(torch.zeros(1, 23, 8, 8), torch.zeros(1, 23, 8, 16))


def _hand_joints(model: HandModel, params: torch.Tensor, is_right: bool, xs, ys) -> torch.Tensor:
    """(N, 21, 3) joints (metres, virtual camera of a WIDTH-cell input) of one side's set."""
    right = torch.full((params.shape[0],), is_right)
    hand = split_params(select_params(params, right))
    translation = virtual_translation(hand.camera, xs, ys, INPUT_PX)
    return model.joints(hand.global_orient, hand.hand_pose, hand.betas, translation, right)


def test_the_mirrored_parameters_mirrored_back_are_the_mirror_hand() -> None:
    model = HandModel.from_directory(open_hand_directory())
    generator = torch.Generator().manual_seed(5)
    n = 6
    params = torch.randn(n, 122, generator=generator) * 0.4
    params[:, [60, 121]] = torch.rand(n, 2, generator=generator) * 0.3  # depth c, metres
    xs = torch.randint(0, WIDTH, (n,), generator=generator)
    ys = torch.randint(0, WIDTH, (n,), generator=generator)
    back = unmirror_params(params)
    for is_right in (True, False):
        # The mirrored input's hand of the other side at the mirrored cell, mirrored in x ...
        mirrored = _hand_joints(model, params, not is_right, WIDTH - 1 - xs, ys)
        mirrored = mirrored * torch.tensor([-1.0, 1.0, 1.0])
        # ... is the hand the mirrored-back parameters describe at the original cell.
        joints = _hand_joints(model, back, is_right, xs, ys)
        # The left middle fingertip is read at the vertex next to the right one's, as in the
        # release (smhr_core.open_hand): within 2 mm; every other joint exactly.
        others = [j for j in range(KEYPOINT_JOINTS) if j != 12]
        torch.testing.assert_close(joints[:, others], mirrored[:, others], atol=1e-5, rtol=0)
        torch.testing.assert_close(joints[:, 12], mirrored[:, 12], atol=2e-3, rtol=0)
    # In the image: u becomes R - u (principal point at R / 2).
    k = torch.as_tensor(virtual_intrinsics(INPUT_PX), dtype=torch.float32)
    projected = _hand_joints(model, back, True, xs, ys) @ k.T
    u = projected[..., 0] / projected[..., 2]
    m = _hand_joints(model, params, False, WIDTH - 1 - xs, ys) @ k.T
    mirrored_u = INPUT_PX - m[..., 0] / m[..., 2]
    torch.testing.assert_close(u[:, others], mirrored_u[:, others], atol=1e-3, rtol=0)
    torch.testing.assert_close(unmirror_params(back), params)


def test_the_halfway_rotation_holds_across_a_half_turn() -> None:
    z = torch.tensor([[0.0, 0.0, 0.4], [0.0, 0.0, 3.0]])
    other = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0 - 2 * math.pi]])
    halfway = average_axis_angle(z, other)
    torch.testing.assert_close(halfway[0], torch.tensor([0.0, 0.0, 0.7]))
    # 3.0 and -3.28 rad about z are the same turn; the mean of the vectors would be 0.14 rad.
    torch.testing.assert_close(
        axis_angle_to_matrix(halfway[1:]), axis_angle_to_matrix(z[1:]), atol=1e-5, rtol=0
    )
    generator = torch.Generator().manual_seed(6)
    a, b = torch.randn(50, 3, generator=generator), torch.randn(50, 3, generator=generator)
    # Halfway: half the turn from a to b, from a to it and from it to b.
    ra, rb = axis_angle_to_matrix(a), axis_angle_to_matrix(b)
    rh = axis_angle_to_matrix(average_axis_angle(a, b))
    whole = _turn(ra.transpose(1, 2) @ rb)
    torch.testing.assert_close(_turn(ra.transpose(1, 2) @ rh), whole / 2, atol=1e-4, rtol=0)
    torch.testing.assert_close(_turn(rh.transpose(1, 2) @ rb), whole / 2, atol=1e-4, rtol=0)


def _turn(rotation: torch.Tensor) -> torch.Tensor:
    """(N,) angle of (N, 3, 3) rotations, radians."""
    cosine = (rotation.diagonal(dim1=1, dim2=2).sum(-1) - 1.0) / 2.0
    return torch.arccos(cosine.clamp(-1.0, 1.0))


def test_two_readings_average_where_they_agree_on_the_side() -> None:
    generator = torch.Generator().manual_seed(7)
    params = torch.randn(2, 122, generator=generator) * 0.3
    mirrored_params = torch.randn(2, 122, generator=generator) * 0.3
    handmap = torch.tensor([[-2.0, 1.0], [-2.0, 1.0]])  # both right
    mirrored_handmap = torch.tensor([[3.0, -1.0], [-3.0, 1.0]])  # left (agrees), right
    mean, side = average_hands(params, handmap, mirrored_params, mirrored_handmap)
    back = unmirror_params(mirrored_params)
    torch.testing.assert_close(mean[0, 3:61], (params[0, 3:61] + back[0, 3:61]) / 2)
    torch.testing.assert_close(mean[1], params[1])  # the mirror image saw the wrong side
    torch.testing.assert_close(side, torch.tensor([[-1.5, 2.0], [-0.5, -1.0]]))


def test_a_fault_in_the_mirror_image_leaves_the_first_reading() -> None:
    generator = torch.Generator().manual_seed(8)
    params = torch.randn(2, 122, generator=generator) * 0.3
    mirrored_params = torch.randn(2, 122, generator=generator) * 0.3
    mirrored_params[1, 70] = float("nan")
    handmap = torch.tensor([[-2.0, 1.0], [-2.0, 1.0]])
    mirrored_handmap = torch.tensor([[3.0, -1.0], [float("nan"), -1.0]])
    mean, side = average_hands(params, handmap, mirrored_params, mirrored_handmap)
    assert torch.isfinite(mean).all() and torch.isfinite(side).all()
    torch.testing.assert_close(mean[1], params[1])
    torch.testing.assert_close(side[1], handmap[1])
    assert not torch.equal(mean[0], params[0])  # the sound hand is still averaged
    alone, none = average_hands(params, None, mirrored_params, None)
    assert none is None
    torch.testing.assert_close(alone[1], params[1])
    maps = torch.randn(1, KEYPOINT_JOINTS + 2, 8, 8, generator=generator)
    broken = maps.clone()
    broken[0, 3, 2, 5] = float("inf")
    averaged = average_keypoint_maps(maps, broken)
    assert torch.isfinite(averaged).all()
    assert averaged[0, 3, 2, 8 - 1 - 5] == maps[0, 3, 2, 8 - 1 - 5]
