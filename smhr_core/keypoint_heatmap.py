"""2D joints read from the `keypoints` head (ours): per-joint heatmaps plus sub-cell offsets.

Every hand of an image shares the 21 heatmap channels, so each hand reads joint j near where its
own mesh puts joint j, within a window around that guess. The window scales with the hand (a
fraction of its keypoint box), so a hand does not take a neighbouring hand's joints unless the two
overlap.

Within the window a joint's channel often has two or more peaks of similar height: the joint and
another joint of the same hand (the next finger's tip, say), and the strongest peak alone then
often picks the wrong one. So each joint keeps its few strongest peaks, and the
hand's 21 choices are made together along the kinematic tree: each choice scores the log of its
heat, minus a penalty for each bone whose 2D vector departs from the mesh's bone (capped, so that
one badly guessed bone cannot drag confident joints away). The tree makes this exact by dynamic
programming. On held-out synthetic scenes this took the median 2D error of the default model
from 6.9 to 6.6 % of the box (settings chosen on other scenes).

The tree does not link one finger to another, so two fingertips can both take the same peak:
the most common gross error of the reading is a tip read at the next finger's tip (held-out
scenes: two thirds of the tips read at another tip sat on a tip read there too). Where
two chosen tips share a place, the reading is made again with one of them barred from that
peak, whichever of the two leaves the better total.

A joint's peak cell is the true joint's cell for only about a third of the joints (v25,
validation scenes): the heat of a joint spreads over neighbouring cells, and the offsets learned
within a cell are little better than its centre. So the chosen joint is placed at the mean of
the places around its peak, weighted by their heat: a cell next to the peak that is nearly as
hot moves the joint towards it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from smhr_core.decode import OUTPUT_STRIDE, heatmap_scores
from smhr_core.network import KEYPOINT_JOINTS

SEARCH_FRACTION = 0.40
"""Search radius around the mesh's guess, as a fraction of the guess's keypoint box side.
Half the fingertips read more than 15 % of the box off had their true place outside a radius
of 0.25 (held-out scenes). With fingertips kept apart, 200 validation scenes (seeds
7000000-7000199) measured v27 at 0.25, 0.35, 0.40 and 0.45 at a median 2D error of 5.71, 5.61,
5.49 and 5.62 % of the box (the reading before, 0.25 without keeping tips apart: 5.84)."""
MIN_SEARCH_CELLS = 2.0
"""Smallest search radius, cells (8 input pixels)."""
PEAK_CANDIDATES = 3
"""Local maxima of a joint's channel kept as candidates (the strongest first)."""
BONE_WEIGHT = 20.0
"""Weight of a bone's squared 2D departure from the mesh's bone, in (fraction of the box)^2,
against the log heat of the joints. Chosen on 60 validation scenes (seeds 3000000-3000059)."""
BONE_COST_CAP = 0.05
"""Cap of a bone's squared departure (fraction of the box squared; about 22 % of the box)."""
CENTROID_RADIUS_CELLS = 2
"""Each chosen joint is placed at the heat-weighted mean of the joint places (cell plus offset)
of the cells within this many cells of its peak (a 5 x 5 window, 20 input pixels)."""
CENTROID_POWER = 4.0
"""The cells' heat is raised to this power as their weight, so the peak's own cell dominates.
Radius and power chosen on 60 validation scenes (seeds 3000000-3000059) with v25."""
TIP_SEPARATION_CELLS = 1.0
"""Two fingertips chosen closer than this (cells, 4 input pixels) are one peak read twice.
Chosen on 200 validation scenes (seeds 7000000-7000199) with v27 and a search radius of 0.40:
0.5, 1.0 and 1.5 cells gave a median 2D error of 5.59, 5.49 and 5.54 % of the box (5.82 with
tips allowed to share a peak)."""
FINGERTIPS = (4, 8, 12, 16, 20)
"""The thumb, index, middle, ring and little fingertips in the FreiHAND order."""
_BARRED = -1e9
"""Log heat of a candidate that may not be chosen (no peak, or a barred tip's)."""
JOINT_PARENTS = (0, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
"""Parent of each joint in the FreiHAND order (the wrist is its own); parents come first."""


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
    masked = torch.where(inside, heat, torch.full_like(heat, -1.0))
    # Local maxima in the window; the window's strongest cell is always one of them.
    peaks = inside & (masked == _neighbourhood_max(masked))
    candidates = torch.where(peaks, masked, torch.full_like(masked, -1.0)).reshape(
        n, KEYPOINT_JOINTS, -1
    )
    scores, cells = candidates.topk(min(PEAK_CANDIDATES, width * width), dim=-1)  # (N, 21, K)
    offsets = maps[batch_index.long(), KEYPOINT_JOINTS:].reshape(n, 2, -1)  # (N, 2, W*W)
    flat = cells.reshape(n, 1, -1).expand(-1, 2, -1)
    at = offsets.gather(2, flat).reshape(n, 2, KEYPOINT_JOINTS, -1).permute(0, 2, 3, 1)
    column = (cells % width).float()
    row = torch.div(cells, width, rounding_mode="floor").float()
    places = (torch.stack([column, row], dim=-1) + at) * OUTPUT_STRIDE  # (N, 21, K, 2) pixels
    # A window has fewer peaks than K only where a candidate is no peak (score -1): never chosen.
    unary = torch.where(scores >= 0, scores.clamp(min=1e-4).log(), torch.full_like(scores, _BARRED))
    choice = _separate_fingertips(unary, places, guess_px.float())
    confidence = scores.gather(2, choice[..., None])[..., 0]
    chosen = cells.gather(2, choice[..., None])[..., 0]  # (N, 21) flat cell index
    keypoints = centroid_px(heat, offsets, chosen)
    return HeatmapKeypoints(keypoints_px=keypoints, confidence=confidence.clamp(min=0.0))


def centroid_px(heat: torch.Tensor, offsets: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """(N, 21, 2) input pixels: for each joint, the mean of the joint places (cell plus offset)
    of the cells within CENTROID_RADIUS_CELLS of its `chosen` cell, weighted by heat to
    CENTROID_POWER. Differentiable in `heat` and `offsets` (training's centroid loss reads the
    heat through it, `training.keypoint_targets`).

    Args:
        heat: (N, 21, W, W) heatmap scores in [0, 1].
        offsets: (N, 2, W*W) x and y offsets of a joint within each cell, cells.
        chosen: (N, 21) flat cell index (row * W + column) around which each joint is read.
    """
    width = int(heat.shape[-1])
    n = int(chosen.shape[0])
    r = CENTROID_RADIUS_CELLS
    step = torch.arange(-r, r + 1, device=heat.device)
    dy, dx = torch.meshgrid(step, step, indexing="ij")
    column = (chosen % width)[..., None] + dx.reshape(1, 1, -1)  # (N, 21, S)
    row = torch.div(chosen, width, rounding_mode="floor")[..., None] + dy.reshape(1, 1, -1)
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < width)
    flat = (row.clamp(0, width - 1) * width + column.clamp(0, width - 1)).reshape(n, -1)
    weight = heat.reshape(n, KEYPOINT_JOINTS, -1).gather(2, flat.reshape(n, KEYPOINT_JOINTS, -1))
    weight = weight.clamp(min=0.0).pow(CENTROID_POWER) * inside
    at = offsets.gather(2, flat[:, None, :].expand(-1, 2, -1)).reshape(n, 2, KEYPOINT_JOINTS, -1)
    xs = (column.float() + at[:, 0]) * OUTPUT_STRIDE
    ys = (row.float() + at[:, 1]) * OUTPUT_STRIDE
    total = weight.sum(-1).clamp(min=1e-12)
    return torch.stack([(weight * xs).sum(-1) / total, (weight * ys).sum(-1) / total], dim=-1)


def _separate_fingertips(
    unary: torch.Tensor, places: torch.Tensor, guess_px: torch.Tensor
) -> torch.Tensor:
    """(N, 21) chosen candidates as `_choose_along_tree`; then, while two fingertips of a hand
    sit within TIP_SEPARATION_CELLS, the better of the two choices made with one of those tips
    barred from its candidate (a hand keeps its conflict when neither tip has another
    candidate). All hands in conflict are chosen again together."""
    choice, _ = _choose_along_tree(unary, places, guess_px)
    unary = unary.clone()
    open_ = torch.ones(unary.shape[0], dtype=torch.bool, device=unary.device)
    # Each round bars one candidate of one tip, so a hand has at most this many rounds.
    for _ in range(len(FINGERTIPS) * int(unary.shape[-1])):
        pairs = _close_tips(places, choice)
        hands = (open_ & (pairs[:, 0] >= 0)).nonzero()[:, 0]
        if len(hands) == 0:
            break
        m = len(hands)
        rows = torch.arange(2 * m, device=unary.device)
        tips = torch.cat([pairs[hands, 0], pairs[hands, 1]])  # option 0 bars the first tip
        barred = unary[hands].repeat(2, 1, 1)
        barred[rows, tips, choice[hands].repeat(2, 1)[rows, tips]] = _BARRED
        again, total = _choose_along_tree(
            barred, places[hands].repeat(2, 1, 1, 1), guess_px[hands].repeat(2, 1, 1)
        )
        total = total.view(2, m)
        valid = total > _BARRED / 2
        second = valid[1] & (~valid[0] | (total[1] > total[0]))
        pick = second.long() * m + torch.arange(m, device=unary.device)
        possible = valid.any(dim=0)
        unary[hands[possible]] = barred[pick[possible]]
        choice[hands[possible]] = again[pick[possible]]
        open_[hands[~possible]] = False
    return choice


def _close_tips(places: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """(N, 2) joint indices of each hand's first pair of fingertips whose chosen `places`
    (N, 21, K, 2) are within TIP_SEPARATION_CELLS of each other, or (-1, -1)."""
    tips = torch.tensor(FINGERTIPS, device=places.device)
    at = places[:, tips].gather(2, choice[:, tips, None, None].expand(-1, -1, 1, 2))[
        :, :, 0
    ]  # (N, 5, 2)
    close = torch.cdist(at, at) < TIP_SEPARATION_CELLS * OUTPUT_STRIDE
    close = torch.triu(close, diagonal=1).reshape(close.shape[0], -1)
    first = close.float().argmax(dim=1)  # the first pair in row order
    a, b = tips[first // len(FINGERTIPS)], tips[first % len(FINGERTIPS)]
    found = close.any(dim=1)
    return torch.stack([torch.where(found, a, -1), torch.where(found, b, -1)], dim=1)


def _choose_along_tree(
    unary: torch.Tensor, places: torch.Tensor, guess_px: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 21) index of each joint's chosen candidate and (N,) its total: the best total of
    `unary` (N, 21, K) minus the capped bone penalties between candidate `places`
    (N, 21, K, 2) and the guess's bones, by max-sum over the tree (leaves first)."""
    n = int(unary.shape[0])
    box = (guess_px.amax(dim=1) - guess_px.amin(dim=1)).amax(dim=-1).clamp(min=1.0)  # (N,)
    total = unary.clone()
    best_child: dict[int, torch.Tensor] = {}
    for joint in range(KEYPOINT_JOINTS - 1, 0, -1):
        parent = JOINT_PARENTS[joint]
        bones = places[:, joint, None, :, :] - places[:, parent, :, None, :]  # (N, Kp, Kj, 2)
        guessed = (guess_px[:, joint] - guess_px[:, parent])[:, None, None, :]
        departure = ((bones - guessed) ** 2).sum(dim=-1) / box[:, None, None] ** 2
        score = total[:, joint, None, :] - BONE_WEIGHT * departure.clamp(max=BONE_COST_CAP)
        value, best_child[joint] = score.max(dim=-1)  # (N, Kp)
        total[:, parent] += value
    choice = torch.zeros((n, KEYPOINT_JOINTS), dtype=torch.long, device=unary.device)
    best_total, choice[:, 0] = total[:, 0].max(dim=-1)
    for joint in range(1, KEYPOINT_JOINTS):
        parent_choice = choice[:, JOINT_PARENTS[joint], None]
        choice[:, joint] = best_child[joint].gather(1, parent_choice)[:, 0]
    return choice, best_total


def _neighbourhood_max(maps: torch.Tensor) -> torch.Tensor:
    """The max over each cell's 3x3 neighbourhood of (..., W, W) `maps` (at least -1), as
    shifted maxima: on a CPU several times faster than `max_pool2d` on these shapes."""
    padded = F.pad(maps, (1, 1, 1, 1), value=-1.0)
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])
