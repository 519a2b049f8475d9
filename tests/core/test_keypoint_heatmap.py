"""Joints read from `keypoints` head maps: each hand takes its own joints near its guess."""

from __future__ import annotations

import pytest
import torch

from smhr_core import keypoint_heatmap
from smhr_core.keypoint_heatmap import read_keypoints
from smhr_core.network import KEYPOINT_JOINTS

WIDTH = 64


def _maps_with_joints(joints_px: torch.Tensor) -> torch.Tensor:
    """(1, 23, W, W) maps with a peak (logit 3) at each joint's cell and its sub-cell offset."""
    maps = torch.full((1, KEYPOINT_JOINTS + 2, WIDTH, WIDTH), -6.0)
    maps[:, KEYPOINT_JOINTS:] = 0.0
    for hand in joints_px:
        for j, (u, v) in enumerate(hand.tolist()):
            x, y = int(u // 4), int(v // 4)
            maps[0, j, y, x] = 3.0
            maps[0, KEYPOINT_JOINTS, y, x] = u / 4 - x
            maps[0, KEYPOINT_JOINTS + 1, y, x] = v / 4 - y
    return maps


def _hand(u0: float, v0: float, seed: int) -> torch.Tensor:
    """21 joints on a 5 x 5 grid of cells 12 px apart, each at a random place within its cell
    (joints of one hand share the offset channels, so they must not share a cell)."""
    g = torch.Generator().manual_seed(seed)
    index = torch.arange(KEYPOINT_JOINTS)
    grid = torch.stack([index % 5, index // 5], dim=1).float() * 12.0
    return torch.tensor([u0, v0]) + grid + torch.rand(KEYPOINT_JOINTS, 2, generator=g) * 3.9


def test_two_hands_sharing_the_channels_each_read_their_own_joints() -> None:
    left, right = _hand(20.0, 30.0, 0), _hand(150.0, 120.0, 1)
    maps = _maps_with_joints(torch.stack([left, right]))
    # Guesses 6 px off, in opposite directions: each must still snap to its own hand.
    guess = torch.stack([left + 6.0, right - 6.0])
    found = read_keypoints(maps, torch.tensor([0, 0]), guess)
    torch.testing.assert_close(found.keypoints_px[0], left, atol=1e-4, rtol=0)
    torch.testing.assert_close(found.keypoints_px[1], right, atol=1e-4, rtol=0)
    expected = torch.sigmoid(torch.tensor(3.0))
    torch.testing.assert_close(found.confidence, torch.full((2, 21), float(expected)))


def test_a_joint_outside_the_search_window_is_not_taken() -> None:
    hand = _hand(40.0, 40.0, 2)
    maps = _maps_with_joints(hand[None])
    guess = hand.clone()[None]
    guess[0, 0] += torch.tensor([45.0, 0.0])  # wrist guess 45 px off; window 0.4 x ~97 px
    found = read_keypoints(maps, torch.tensor([0]), guess)
    assert float(found.confidence[0, 0]) < 0.01  # only background cells were in reach
    assert float(found.confidence[0, 1:].min()) > 0.9


def test_images_of_a_batch_are_kept_apart() -> None:
    first, second = _hand(30.0, 30.0, 3), _hand(30.0, 30.0, 4)
    maps = torch.cat([_maps_with_joints(first[None]), _maps_with_joints(second[None])])
    found = read_keypoints(maps, torch.tensor([1, 0]), torch.stack([second, first]))
    torch.testing.assert_close(found.keypoints_px[0], second, atol=1e-4, rtol=0)
    torch.testing.assert_close(found.keypoints_px[1], first, atol=1e-4, rtol=0)


def test_no_hands_and_bad_maps() -> None:
    maps = _maps_with_joints(_hand(30.0, 30.0, 5)[None])
    empty = read_keypoints(maps, torch.zeros(0, dtype=torch.long), torch.zeros(0, 21, 2))
    assert empty.keypoints_px.shape == (0, 21, 2) and empty.confidence.shape == (0, 21)
    with pytest.raises(ValueError, match="maps: expected"):
        read_keypoints(maps[:, :21], torch.tensor([0]), torch.zeros(1, 21, 2))


def test_of_two_peaks_the_one_that_fits_the_hand_wins() -> None:
    hand = _hand(40.0, 40.0, 6)
    maps = _maps_with_joints(hand[None])
    # Joint 8 (index tip) also lights up, more strongly, at joint 9's place 12 px away: the
    # strongest cell alone would take it, but its bone from joint 7 would then be 12 px off the
    # mesh's, against 0 for the weaker true peak.
    decoy = (hand[9] / 4).floor().long()
    maps[0, 8, decoy[1], decoy[0]] = 3.5
    assert float((hand[9] - hand[8]).norm()) < 0.4 * 52.0  # within joint 8's window
    found = read_keypoints(maps, torch.tensor([0]), hand[None])
    torch.testing.assert_close(found.keypoints_px[0], hand, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        found.confidence[0, 8], torch.sigmoid(torch.tensor(3.0)), atol=1e-6, rtol=0
    )
    # With the decoy much stronger than the true peak the heat wins over the bone.
    maps[0, 8, decoy[1], decoy[0]] = 9.0
    maps[0, 8, int(hand[8, 1] // 4), int(hand[8, 0] // 4)] = -3.0
    found = read_keypoints(maps, torch.tensor([0]), hand[None])
    torch.testing.assert_close(found.keypoints_px[0, 8], hand[9], atol=1e-4, rtol=0)


def test_a_joint_between_two_hot_cells_is_placed_between_them() -> None:
    hand = _hand(40.0, 40.0, 7)
    maps = _maps_with_joints(hand[None])
    maps[0, KEYPOINT_JOINTS:] = 0.5  # every cell's joint place is its centre
    x, y = int(hand[4, 0] // 4), int(hand[4, 1] // 4)
    maps[0, 4, y, x + 1] = 3.0  # the tip's right neighbour is as hot as its own cell
    maps[0, 4, y + 1, x] = 1.0  # the cell below it much cooler: sigmoid 0.73 against 0.95
    found = read_keypoints(maps, torch.tensor([0]), hand[None])
    hot, warm = (
        float(torch.sigmoid(torch.tensor(3.0))) ** 4,
        float(torch.sigmoid(torch.tensor(1.0))) ** 4,
    )
    total = 2 * hot + warm
    expected_u = (x + 0.5 + hot / total) * 4.0
    expected_v = (y + 0.5 + warm / total) * 4.0
    tip = found.keypoints_px[0, 4]
    assert abs(float(tip[0]) - expected_u) < 1e-3 and abs(float(tip[1]) - expected_v) < 1e-3
    # The other joints' peaks stand alone: each keeps its own cell and offset.
    torch.testing.assert_close(found.keypoints_px[0, 5:], (hand[5:] / 4).floor() * 4 + 2.0)


def test_two_fingertips_do_not_share_one_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    # Joints 24 px apart (a 104 px hand: search window 42 px), the middle tip (12) moved to
    # 16 px from the index tip (8), three cells below it: out of reach of its centroid window.
    hand = 40.0 + _hand(0.0, 0.0, 8) * 2.0
    hand[12] = hand[8] + torch.tensor([-10.0, 12.0])
    maps = _maps_with_joints(hand[None])
    # The middle tip's channel is hot at the index tip's place and only warm at its own.
    tip8 = (hand[8] / 4).floor().long()
    tip12 = (hand[12] / 4).floor().long()
    maps[0, 12, tip8[1], tip8[0]] = 6.0
    maps[0, 12, tip12[1], tip12[0]] = -1.0
    monkeypatch.setattr(keypoint_heatmap, "TIP_SEPARATION_CELLS", 0.0)
    shared = read_keypoints(maps, torch.tensor([0]), hand[None])
    # Along the tree alone both tips take the index tip's peak: its heat beats the bone.
    torch.testing.assert_close(shared.keypoints_px[0, 12], hand[8], atol=1e-4, rtol=0)
    torch.testing.assert_close(shared.keypoints_px[0, 8], hand[8], atol=1e-4, rtol=0)
    monkeypatch.undo()
    found = read_keypoints(maps, torch.tensor([0]), hand[None])
    # Barring the middle tip from that peak costs less than barring the index tip (whose
    # channel has no other peak), so the middle tip goes back to its own.
    torch.testing.assert_close(found.keypoints_px[0], hand, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        found.confidence[0, 12], torch.sigmoid(torch.tensor(-1.0)), atol=1e-6, rtol=0
    )
