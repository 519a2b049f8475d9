"""Decoding on constructed head outputs: NMS, top-K, threshold, ties, handedness, camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smhr_core.camera import project, virtual_intrinsics
from smhr_core.decode import (
    choose_side,
    find_peaks,
    heatmap_scores,
    select_params,
    split_params,
    virtual_translation,
)

BACKGROUND = -10.0


def heatmap(peaks: dict[tuple[int, int, int], float], batch: int = 1, size: int = 16):
    hm = torch.full((batch, 1, size, size), BACKGROUND)
    for (b, y, x), logit in peaks.items():
        hm[b, 0, y, x] = logit
    return hm


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_nms_suppresses_within_two_cells_only() -> None:
    hm = heatmap({(0, 5, 5): 3.0, (0, 7, 7): 2.0, (0, 5, 10): 1.0, (0, 12, 5): 0.5})
    peaks = find_peaks(hm, k=10, threshold=0.05)
    # (7,7) is 2 cells from (5,5): suppressed. (5,10) and (12,5) are 5+ cells away: kept.
    assert list(zip(peaks.ys.tolist(), peaks.xs.tolist(), strict=True)) == [
        (5, 5),
        (5, 10),
        (12, 5),
    ]
    assert peaks.scores.tolist() == pytest.approx([sig(3.0), sig(1.0), sig(0.5)], rel=1e-6)
    assert peaks.index.tolist() == [5 * 16 + 5, 5 * 16 + 10, 12 * 16 + 5]
    assert peaks.batch_index.tolist() == [0, 0, 0]


def test_top_k_per_image_sorted_by_score() -> None:
    hm = heatmap(
        {
            (0, 1, 1): 0.0,
            (0, 1, 8): 2.0,
            (0, 8, 1): 1.0,
            (0, 8, 8): 3.0,
            (0, 14, 14): 4.0,
            (1, 3, 3): 1.5,
            (1, 12, 12): 2.5,
        },
        batch=2,
    )
    peaks = find_peaks(hm, k=3, threshold=0.2)
    assert peaks.batch_index.tolist() == [0, 0, 0, 1, 1]
    assert list(zip(peaks.ys.tolist(), peaks.xs.tolist(), strict=True)) == [
        (14, 14),
        (8, 8),
        (1, 8),
        (12, 12),
        (3, 3),
    ]
    assert len(peaks) == 5


def test_threshold_is_inclusive() -> None:
    hm = heatmap({(0, 2, 2): 1.0, (0, 10, 10): 0.9})
    threshold = float(heatmap_scores(torch.tensor(1.0)))
    peaks = find_peaks(hm, k=4, threshold=threshold)
    assert list(zip(peaks.ys.tolist(), peaks.xs.tolist(), strict=True)) == [(2, 2)]


def test_ties_are_kept_and_ordered_by_index() -> None:
    # Two equal distant peaks, plus an equal-valued adjacent pair (a plateau: both are maxima).
    hm = heatmap({(0, 12, 3): 2.0, (0, 2, 9): 2.0, (0, 7, 14): 1.0, (0, 7, 15): 1.0})
    peaks = find_peaks(hm, k=8, threshold=0.5)
    assert peaks.index.tolist() == [2 * 16 + 9, 12 * 16 + 3, 7 * 16 + 14, 7 * 16 + 15]


def test_reference_mode_returns_k_cells_even_on_background() -> None:
    # The release uses K = 4 without a threshold: flat background cells are local maxima too.
    hm = heatmap({(0, 8, 8): 2.0})
    peaks = find_peaks(hm, k=4, threshold=0.0)
    assert len(peaks) == 4
    assert peaks.index[0].item() == 8 * 16 + 8
    assert torch.all(peaks.scores[1:] == 1e-4)  # clamped sigmoid(-10)


def test_scores_are_clamped() -> None:
    scores = heatmap_scores(torch.tensor([-50.0, 0.0, 50.0]))
    assert scores.tolist() == pytest.approx([1e-4, 0.5, 1 - 1e-4])


def test_find_peaks_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        find_peaks(torch.zeros(1, 2, 4, 4), k=1, threshold=0.0)
    with pytest.raises(ValueError, match="k"):
        find_peaks(torch.zeros(1, 1, 4, 4), k=0, threshold=0.0)


def test_choose_side_tie_goes_right_and_probabilities() -> None:
    logits = torch.tensor([[2.0, 1.0], [1.0, 2.0], [0.5, 0.5], [30.0, 20.0]])
    is_right, probability = choose_side(logits)
    assert is_right.tolist() == [False, True, True, False]
    p2, p1 = sig(2.0), sig(1.0)
    assert probability[:3].tolist() == pytest.approx([p2 / (p1 + p2), p2 / (p1 + p2), 0.5])
    # Saturated sigmoids tie in float32; the logits still decide.
    assert probability[3].item() == pytest.approx(0.5)


def test_select_and_split_params() -> None:
    left = torch.arange(61, dtype=torch.float32)
    params = torch.stack([torch.cat([left, left + 100]), torch.cat([left, left + 100])])
    chosen = select_params(params, torch.tensor([True, False]))
    assert torch.equal(chosen[0], left + 100)
    assert torch.equal(chosen[1], left)
    hand = split_params(chosen)
    assert torch.equal(hand.global_orient[1], left[0:3])
    assert torch.equal(hand.hand_pose[1], left[3:48])
    assert torch.equal(hand.betas[0], left[48:58] + 100)
    assert torch.equal(hand.camera[1], torch.tensor([58.0, 59.0, 60.0]))
    with pytest.raises(ValueError, match="122"):
        select_params(torch.zeros(1, 61), torch.tensor([True]))


def test_virtual_translation_formula_and_projection() -> None:
    resolution = 384
    camera = torch.tensor([[3.0, -2.0, 0.2], [0.0, 0.0, -0.3]], dtype=torch.float64)
    xs, ys = torch.tensor([10, 0]), torch.tensor([20, 95])
    t = virtual_translation(camera, xs, ys, resolution)
    assert t[0].tolist() == pytest.approx(
        [1.0 * (3 + 40 - 192) / 512, 1.0 * (-2 + 80 - 192) / 512, 1.0]
    )
    assert t[1].tolist() == pytest.approx([0.5 * (0 - 192) / 512, 0.5 * (380 - 192) / 512, 0.5])
    # Meaning: the translation projects to the cell corner (4x, 4y) plus (a, b) input pixels.
    uv = project(t.numpy(), virtual_intrinsics(resolution))
    np.testing.assert_allclose(uv, [[43.0, 78.0], [0.0, 380.0]], atol=1e-9)
