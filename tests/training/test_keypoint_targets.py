"""Targets, offset loss and centroid loss of the `keypoints` head, and their place in the
training loss."""

from __future__ import annotations

import torch

from smhr_core.keypoint_heatmap import read_keypoints
from smhr_core.network import KEYPOINT_JOINTS
from training.keypoint_targets import centroid_loss, keypoint_targets, offset_loss
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
