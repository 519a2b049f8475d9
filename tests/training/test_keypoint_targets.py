"""Targets, offset loss, centroid loss and stray loss of the `keypoints` head, and their place
in the training loss."""

from __future__ import annotations

import math

import pytest
import torch

from smhr_core.keypoint_heatmap import read_keypoints
from smhr_core.network import KEYPOINT_JOINTS
from training.keypoint_targets import (
    STRAY_TEMPERATURE,
    centroid_loss,
    keypoint_targets,
    offset_loss,
    stray_loss,
)
from training.losses import focal_loss

WIDTH = 16


def _keypoints() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two images of two slots; no two joints of one image share a cell."""
    g = torch.Generator().manual_seed(0)
    cells = torch.stack(
        [torch.randperm(WIDTH * WIDTH, generator=g)[: 2 * KEYPOINT_JOINTS] for _ in range(2)]
    )
    cells = cells.reshape(2, 2, KEYPOINT_JOINTS)
    whole = torch.stack([cells % WIDTH, cells // WIDTH], dim=-1).float()
    keypoints = (whole + torch.rand(2, 2, KEYPOINT_JOINTS, 2, generator=g) * 0.99) * 4
    visible = torch.ones(2, 2, KEYPOINT_JOINTS)
    valid = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # the second image has one hand
    return keypoints, visible, valid


def test_each_labelled_joint_peaks_at_its_cell_with_its_offset() -> None:
    keypoints, visible, valid = _keypoints()
    visible[0, 0, 3] = 0.0
    keypoints[0, 1, 5] = torch.tensor([-3.0, 10.0])  # outside the image
    t = keypoint_targets(keypoints, visible, valid, WIDTH)
    assert t.heatmap.shape == (2, KEYPOINT_JOINTS, WIDTH, WIDTH)
    cells = (keypoints / 4).floor().long()
    for b, m, j in [(0, 0, 0), (0, 1, 20), (1, 0, 7)]:
        x, y = cells[b, m, j].tolist()
        assert float(t.heatmap[b, j, y, x]) == 1.0
        assert int(t.cell[b, m, j]) == y * WIDTH + x
        torch.testing.assert_close(t.offset[b, m, j], keypoints[b, m, j] / 4 - cells[b, m, j])
    assert float(t.on[0, 0, 3]) == 0.0 and float(t.on[0, 1, 5]) == 0.0
    assert float(t.on[1, 1].sum()) == 0.0  # the empty slot
    assert float(t.heatmap.max()) == 1.0 and float(t.heatmap.min()) == 0.0
    # The empty slot puts nothing on the second image: only its one hand's 21 peaks.
    assert int((t.heatmap[1] == 1.0).sum()) == KEYPOINT_JOINTS


def test_subcell_targets_lean_towards_the_joint_within_its_cell() -> None:
    keypoints, visible, valid = _keypoints()
    plain = keypoint_targets(keypoints, visible, valid, WIDTH)
    t = keypoint_targets(keypoints, visible, valid, WIDTH, subcell=True)
    # Same peaks, cells and offsets: only the heat around the peaks changes.
    assert torch.equal(t.heatmap == 1.0, plain.heatmap == 1.0)
    assert torch.equal(t.cell, plain.cell) and torch.equal(t.offset, plain.offset)
    assert float(t.heatmap.max()) == 1.0
    leaning = 0
    for b, m, j in [(0, 0, 0), (0, 1, 20), (1, 0, 7), (1, 0, 13)]:
        x, y = (keypoints[b, m, j] / 4).floor().long().tolist()
        fx, fy = (keypoints[b, m, j] / 4 - torch.tensor([x, y])).tolist()
        window = t.heatmap[b, j, y - 1 : y + 2, x - 1 : x + 2]
        if window.shape != (3, 3):
            continue
        # A 3 x 3 heat-weighted mean of the cells' centres lands on the joint's side of its
        # cell centre, in both directions (the plain targets' mean is the centre itself).
        weights = window / window.sum()
        grid = torch.arange(-1.0, 2.0)
        mean_x, mean_y = float((weights.sum(0) * grid).sum()), float((weights.sum(1) * grid).sum())
        assert (mean_x > 0) == (fx > 0.5) and (mean_y > 0) == (fy > 0.5)
        expected = torch.exp(
            -(
                (grid[None, :] + 0.5 - fx) ** 2
                + (grid[:, None] + 0.5 - fy) ** 2
                - (0.5 - fx) ** 2
                - (0.5 - fy) ** 2
            )
            / (2 * (5 / 6) ** 2)
        )
        torch.testing.assert_close(window, expected.clamp(max=1.0))
        leaning += 1
    assert leaning >= 3


def test_offset_loss_is_zero_for_the_right_offsets_only() -> None:
    keypoints, visible, valid = _keypoints()
    t = keypoint_targets(keypoints, visible, valid, WIDTH)
    maps = torch.zeros(2, KEYPOINT_JOINTS + 2, WIDTH, WIDTH)
    flat = maps[:, KEYPOINT_JOINTS:].reshape(2, 2, -1)
    on = t.on > 0
    for b in range(2):
        cells, offsets = t.cell[b][on[b]], t.offset[b][on[b]]
        flat[b, 0, cells] = offsets[:, 0]
        flat[b, 1, cells] = offsets[:, 1]
    maps[:, KEYPOINT_JOINTS:] = flat.reshape(2, 2, WIDTH, WIDTH)
    torch.testing.assert_close(offset_loss(maps, t), torch.zeros(2))
    shifted = maps.clone()
    shifted[:, KEYPOINT_JOINTS:] += 0.3
    torch.testing.assert_close(offset_loss(shifted, t), torch.full((2,), 0.6))


def test_heatmap_focal_loss_rewards_the_targets() -> None:
    keypoints, visible, valid = _keypoints()
    t = keypoint_targets(keypoints, visible, valid, WIDTH)
    good = torch.logit(t.heatmap.clamp(1e-4, 1 - 1e-4))
    flat = torch.full_like(good, -4.59)
    assert bool((focal_loss(good, t.heatmap) < focal_loss(flat, t.heatmap) / 10).all())


def _one_hand(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image of one hand on a 32-cell map, its joints in 21 different cells."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(24 * 24, generator=g)[:KEYPOINT_JOINTS]
    whole = torch.stack([cells % 24 + 4, cells // 24 + 4], dim=-1).float()
    keypoints = ((whole + torch.rand(KEYPOINT_JOINTS, 2, generator=g) * 0.99) * 4)[None, None]
    return keypoints, torch.ones(1, 1, KEYPOINT_JOINTS), torch.ones(1, 1)


def _maps_around(centres: torch.Tensor, width: int) -> torch.Tensor:
    """(1, 23, W, W) maps whose channel j is a smooth bump of logits centred on `centres[j]`
    (cells, (x, y) of the cell grid), offsets zero."""
    grid = torch.arange(width, dtype=torch.float32)
    dx = grid.view(1, 1, -1) - centres[:, 0, None, None]
    dy = grid.view(1, -1, 1) - centres[:, 1, None, None]
    maps = torch.zeros(1, KEYPOINT_JOINTS + 2, width, width)
    maps[0, :KEYPOINT_JOINTS] = 3.0 - 1.5 * (dx**2 + dy**2)
    return maps


def test_centroid_loss_measures_the_reading_around_each_joint() -> None:
    width = 32
    keypoints, visible, valid = _one_hand(1)
    t = keypoint_targets(keypoints, visible, valid, width)
    true = keypoints[0, 0] / 4  # cells
    # Bumps a third of a cell off each joint's cell centre: the peak stays the joint's cell,
    # the reading leans a little towards the bump's centre, and the loss is exactly how far
    # inference reads each joint from where it is.
    cell_centres = (keypoints[0, 0] / 4).floor()
    maps = _maps_around(cell_centres + torch.tensor([0.33, -0.2]), width)
    reading = read_keypoints(maps, torch.zeros(1, dtype=torch.long), keypoints[0])
    expected = (reading.keypoints_px[0] / 4 - true).abs().sum(-1).mean()
    torch.testing.assert_close(centroid_loss(maps, t), expected[None])
    assert float(expected) > 0.2


def test_centroid_loss_pulls_a_shifted_peak_back_through_the_heat_only() -> None:
    width = 32
    keypoints, visible, valid = _one_hand(2)
    t = keypoint_targets(keypoints, visible, valid, width)
    true = keypoints[0, 0] / 4
    centred = _maps_around(true, width)
    shifted = _maps_around(true + torch.tensor([1.0, 0.0]), width).requires_grad_()
    near, far = centroid_loss(centred, t), centroid_loss(shifted, t)
    # The bump on the joint reads it to within the cell grid's own bias; one cell off, about 1.
    assert float(near) < 0.35 and float(far.detach()) > 0.7
    far.sum().backward()
    grad = shifted.grad
    assert float(grad[:, KEYPOINT_JOINTS:].abs().sum()) == 0.0  # offsets are offset_loss's
    lowered = shifted.detach() - 0.5 * grad / grad.abs().max()
    assert float(centroid_loss(lowered, t)) < float(far.detach())
    # Nothing to read: a sample without labelled joints scores 0.
    t_off = keypoint_targets(keypoints, torch.zeros_like(visible), valid, width)
    assert float(centroid_loss(shifted.detach(), t_off)) == 0.0


def _spikes(keypoints: torch.Tensor, width: int) -> torch.Tensor:
    """(1, 23, W, W) maps of logits -20 with 5 at the cell of each joint of the first hand."""
    maps = torch.full((1, KEYPOINT_JOINTS + 2, width, width), -20.0)
    cells = (keypoints[0, 0] / 4).floor().long()
    for j, (x, y) in enumerate(cells.tolist()):
        maps[0, j, y, x] = 5.0
    return maps


def _rival_cell(keypoints: torch.Tensor, joint: int, cells: int) -> tuple[int, int]:
    """(x, y) of the cell `cells` cells from the joint's, towards the 32-cell map's middle."""
    x, y = (keypoints[0, 0, joint] / 4).floor().long().tolist()
    return (x + cells, y) if x < 16 else (x - cells, y)


def test_stray_loss_scores_a_rival_peak_in_the_reading_window() -> None:
    width = 32
    keypoints, visible, valid = _one_hand(3)
    t = keypoint_targets(keypoints, visible, valid, width)
    alone = _spikes(keypoints, width)
    assert float(stray_loss(alone, t)) < 1e-6
    # A rival as hot as the joint, 5 cells off (within 0.4 of the hand's box, over 20 cells
    # to 24 here): half of joint 0's softmax lies on it, log 2 over the hand's 21 joints.
    rivalled = alone.clone()
    x, y = _rival_cell(keypoints, 0, 5)
    rivalled[0, 0, y, x] = 5.0
    assert float(stray_loss(rivalled, t)) == pytest.approx(math.log(2) / KEYPOINT_JOINTS, rel=1e-4)
    # A weaker rival weighs exp(-drop / temperature) as much.
    rivalled[0, 0, y, x] = 4.0
    share = math.exp(-1.0 / STRAY_TEMPERATURE)
    assert float(stray_loss(rivalled, t)) == pytest.approx(
        math.log(1 + share) / KEYPOINT_JOINTS, rel=1e-4
    )
    # Outside the window (14 cells off, at most 9.6 here) the reading would not look: no cost.
    far = alone.clone()
    x, y = _rival_cell(keypoints, 0, 14)
    far[0, 0, y, x] = 5.0
    assert float(stray_loss(far, t)) < 1e-6


def test_stray_loss_leaves_another_hands_joint_alone_and_lowers_the_rival() -> None:
    width = 32
    keypoints, visible, valid = _one_hand(4)
    x, y = _rival_cell(keypoints, 0, 5)
    maps = _spikes(keypoints, width)
    maps[0, 0, y, x] = 5.0
    # The same peak is joint 0 of a second hand: the first hand's window leaves it out, and the
    # second hand's own joint 0 sits on it.
    second = keypoints.clone()
    second[0, 0, 0] = torch.tensor([x + 0.5, y + 0.5]) * 4
    two = keypoint_targets(
        torch.cat([keypoints, second[:, :1]], dim=1),
        torch.cat([visible, torch.zeros_like(visible)], dim=1),
        torch.ones(1, 2),
        width,
    )
    two.on[0, 1, 0] = 1.0  # only that joint of the second hand is labelled
    assert float(stray_loss(maps, two)) < 1e-6
    # As a rival it is pushed down and the joint's own peak up; nothing else moves.
    t = keypoint_targets(keypoints, visible, valid, width)
    maps.requires_grad_()
    loss = stray_loss(maps, t)
    loss.sum().backward()
    grad = maps.grad
    cx, cy = (keypoints[0, 0, 0] / 4).floor().long().tolist()
    assert float(grad[0, 0, y, x]) > 0 and float(grad[0, 0, cy, cx]) < 0
    assert float(grad[0, 1:].abs().sum()) < 1e-6
    assert float(stray_loss(maps.detach() - 0.5 * grad.sign(), t)) < float(loss.detach())


def test_stray_loss_is_zero_with_a_finite_gradient_for_unlabelled_joints() -> None:
    width = 32
    keypoints, visible, valid = _one_hand(5)
    keypoints[0, 0, 4] = torch.tensor([-9.0, 40.0])  # outside the image
    visible[0, 0, 7] = 0.0
    t = keypoint_targets(keypoints, visible, valid, width)
    maps = _spikes(keypoints, width).requires_grad_()
    loss = stray_loss(maps, t)
    loss.sum().backward()
    assert torch.isfinite(maps.grad).all()
    assert float(maps.grad[0, [4, 7]].abs().sum()) == 0.0
    nothing = keypoint_targets(keypoints, torch.zeros_like(visible), valid, width)
    assert float(stray_loss(maps.detach(), nothing)) == 0.0
