"""The bootstrap interval of an evaluation's median: it covers the median, narrows with more
images, and widens when the hands of one image err together (so images, not hands, are
resampled). The paired interval of two evaluations' difference: what a scene does to both
cancels."""

from __future__ import annotations

import numpy as np
import pytest

from training.confidence import median_difference_interval, median_interval


def _scenes(images: int, seed: int, shared: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-hand errors (% of the box) of `images` scenes of 1-4 hands each: a per-scene offset
    of spread `shared` plus the hand's own spread 1."""
    rng = np.random.default_rng(seed)
    hands = rng.integers(1, 5, size=images)
    groups = np.repeat(np.arange(images), hands)
    offsets = rng.normal(0.0, shared, size=images)[groups]
    return 4.5 + offsets + rng.normal(0.0, 1.0, size=groups.size), groups


def _width(interval: tuple[float, float] | None) -> float:
    assert interval is not None
    return interval[1] - interval[0]


def test_interval_covers_the_median_and_is_reproducible() -> None:
    values, groups = _scenes(200, seed=1, shared=0.5)
    interval = median_interval(values, groups)
    assert interval is not None
    low, high = interval
    assert values.min() <= low < float(np.median(values)) < high <= values.max()
    assert median_interval(values, groups) == interval
    assert median_interval(values, groups, seed=1) != interval


def test_interval_narrows_with_more_images() -> None:
    few = _width(median_interval(*_scenes(100, seed=2, shared=0.5)))
    many = _width(median_interval(*_scenes(400, seed=3, shared=0.5)))
    # The spread of a median falls as one over the square root of the sample: about half.
    assert 0.3 * few < many < 0.75 * few


def test_hands_of_one_image_erring_together_widen_the_interval() -> None:
    values, groups = _scenes(200, seed=4, shared=1.5)
    by_image = _width(median_interval(values, groups))
    by_hand = _width(median_interval(values, np.arange(values.size)))
    assert by_image > 1.3 * by_hand


def test_a_higher_level_gives_a_wider_interval() -> None:
    values, groups = _scenes(150, seed=5, shared=0.5)
    assert _width(median_interval(values, groups, level=0.99)) > _width(
        median_interval(values, groups, level=0.8)
    )


def test_edge_cases_and_bad_arguments() -> None:
    assert median_interval([], []) is None
    assert median_interval([3.0], [7]) == (3.0, 3.0)
    with pytest.raises(ValueError, match="level"):
        median_interval([1.0, 2.0], [0, 1], level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        median_interval([1.0, 2.0], [0, 1], resamples=0)
    with pytest.raises(ValueError, match="groups"):
        median_interval([1.0, 2.0], [0])


def test_paired_difference_of_identical_or_shifted_readings_is_exact() -> None:
    values, groups = _scenes(120, seed=6, shared=1.0)
    assert median_difference_interval(values, values, groups) == (0.0, 0.0)
    low, high = median_difference_interval(values, values - 0.3, groups)
    assert low == pytest.approx(-0.3) and high == pytest.approx(-0.3)


def test_pairing_cancels_what_a_scene_does_to_both() -> None:
    # Scenes vary a lot (shared spread 1.5); the second model is 0.2 better on every hand, with
    # its own noise of 0.1 per hand. Apart, the two medians' intervals overlap widely; paired,
    # the difference is told from zero.
    values, groups = _scenes(200, seed=7, shared=1.5)
    rng = np.random.default_rng(8)
    after = values - 0.2 + rng.normal(0.0, 0.1, size=values.size)
    low, high = median_difference_interval(values, after, groups)
    assert -0.4 < low < -0.2 < high < 0.0
    apart = max(_width(median_interval(values, groups)), _width(median_interval(after, groups)))
    assert high - low < 0.4 * apart
    assert median_difference_interval(values, after, groups) == (low, high)
    assert median_difference_interval(values, after, groups, seed=1) != (low, high)


def test_paired_edge_cases_and_bad_arguments() -> None:
    assert median_difference_interval([], [], []) is None
    with pytest.raises(ValueError, match="level"):
        median_difference_interval([1.0], [2.0], [0], level=0.0)
    with pytest.raises(ValueError, match="resamples"):
        median_difference_interval([1.0], [2.0], [0], resamples=0)
    with pytest.raises(ValueError, match="equal 1-D shapes"):
        median_difference_interval([1.0, 2.0], [2.0], [0, 1])
