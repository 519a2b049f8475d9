"""Targets and offset loss of the `keypoints` head, and their place in the training loss."""

from __future__ import annotations

import torch

from smhr_core.network import KEYPOINT_JOINTS
from training.keypoint_targets import (
    CONFUSION_MARGIN,
    GAUSSIAN_RADIUS_CELLS,
    confusion_loss,
    keypoint_targets,
    offset_loss,
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


def test_confusion_loss_is_zero_when_every_margin_holds_and_counts_only_distant_pairs() -> None:
    # 21 joints of one hand on distinct cells; joint 1 right next to joint 0 (inside its Gaussian).
    cells = [(2, 2), (3, 2)] + [(1 + 3 * (i % 5), 5 + 3 * (i // 5)) for i in range(19)]
    keypoints = (torch.tensor(cells, dtype=torch.float32) + 0.5).reshape(1, 1, -1, 2) * 4
    t = keypoint_targets(keypoints, torch.ones(1, 1, KEYPOINT_JOINTS), torch.ones(1, 1), 32)
    maps = torch.full((1, KEYPOINT_JOINTS + 2, 32, 32), -6.0)
    for j, (x, y) in enumerate(cells):
        maps[0, j, y, x] = 0.0
    torch.testing.assert_close(confusion_loss(maps, t), torch.zeros(1))
    # Channel 0 as high at its neighbour joint 1 as at joint 0: within the Gaussian, not counted.
    maps[0, 0, 2, 3] = 0.0
    torch.testing.assert_close(confusion_loss(maps, t), torch.zeros(1))
    # Channel 0 as high at joint 5's cell: one distant pair breaks the margin by the margin.
    x5, y5 = cells[5]
    maps[0, 0, y5, x5] = 0.0
    xy = torch.tensor(cells)
    apart = (xy[:, None] - xy[None, :]).abs().amax(-1) > GAUSSIAN_RADIUS_CELLS
    expected = CONFUSION_MARGIN / float(apart.sum())
    torch.testing.assert_close(confusion_loss(maps, t), torch.tensor([expected]))


def test_confusion_loss_pulls_a_joint_channel_up_at_its_joint_and_down_at_the_others() -> None:
    keypoints, visible, valid = _keypoints()
    t = keypoint_targets(keypoints, visible, valid, WIDTH)
    maps = torch.zeros(2, KEYPOINT_JOINTS + 2, WIDTH, WIDTH, requires_grad=True)
    loss = confusion_loss(maps, t)
    assert bool((loss > 0).all())  # all logits equal: every distant pair breaks the margin
    loss.sum().backward()
    grad = maps.grad[0, 0].reshape(-1)
    own, other = int(t.cell[0, 0, 0]), int(t.cell[0, 0, 5])
    assert float(grad[own]) < 0.0 < float(grad[other])  # descent raises own, lowers other
    # Only the cells of labelled joints are touched.
    touched = torch.zeros(2, WIDTH * WIDTH, dtype=torch.bool)
    for b in range(2):
        touched[b, t.cell[b][t.on[b] > 0]] = True
    untouched = maps.grad[:, :KEYPOINT_JOINTS].reshape(2, KEYPOINT_JOINTS, -1).abs().sum(1)
    assert float(untouched[~touched].sum()) == 0.0 and float(untouched[touched].min()) > 0.0
    assert float(maps.grad[:, KEYPOINT_JOINTS:].abs().sum()) == 0.0  # offsets untouched
