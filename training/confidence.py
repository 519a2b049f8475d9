"""How far an evaluation's median can be trusted: a bootstrap interval over images.

The hands of one synthetic scene share its background, lighting and crowding, so their errors
are not independent; resampling hands would make the interval too narrow. Whole images are
resampled instead (a cluster bootstrap). Measured on v28's 400 held-out scenes at 256 px, the
medians of four blocks of 100 scenes ranged from 4.0 to 5.3 % of the box
(smhr_core/data/README.md, session 37): a single 100-scene median is a rough figure.

Two models read on the same scenes are compared hand by hand (`median_difference_interval`):
what a scene does to both cancels, so a difference far smaller than either median's interval
can still be told from noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


def _check_settings(level: float, resamples: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be within (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")


def _group_table(data: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(groups, largest group) table of `data`, one row per group in the order of their labels,
    padded with NaN, so that a resample is a row gather and a NaN-median."""
    _, member = np.unique(labels, return_inverse=True)
    count = int(member.max()) + 1
    sizes = np.bincount(member, minlength=count)
    table = np.full((count, int(sizes.max())), np.nan)
    order = np.argsort(member, kind="stable")
    slot = np.arange(data.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    table[member[order], slot] = data[order]
    return table


def median_interval(
    values: Sequence[float],
    groups: Sequence[int],
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval (low, high) at `level` of the median of `values`,
    resampling whole groups (`groups[i]` is the group, e.g. the image, of `values[i]`) with
    replacement. Seeded, so an evaluation reports the same interval every time. None without
    values."""
    _check_settings(level, resamples)
    data = np.asarray(values, dtype=np.float64)
    labels = np.asarray(groups)
    if data.shape != labels.shape or data.ndim != 1:
        raise ValueError(f"values {data.shape} and groups {labels.shape} must be equal 1-D shapes")
    if not data.size:
        return None
    table = _group_table(data, labels)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, table.shape[0], size=(resamples, table.shape[0]))
    medians = np.nanmedian(table[picks].reshape(resamples, -1), axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return float(low), float(high)


def median_difference_interval(
    before: Sequence[float],
    after: Sequence[float],
    groups: Sequence[int],
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval (low, high) at `level` of median(after) -
    median(before), where `before[i]` and `after[i]` are two measurements of the same item (one
    hand read by two models) and `groups[i]` its group (image). Whole groups are resampled, each
    resample taking the same items for both, so what the two share (the scene's difficulty)
    cancels and the interval is much narrower than the two medians' own intervals. Seeded.
    None without values."""
    _check_settings(level, resamples)
    first = np.asarray(before, dtype=np.float64)
    second = np.asarray(after, dtype=np.float64)
    labels = np.asarray(groups)
    if not (first.shape == second.shape == labels.shape) or first.ndim != 1:
        raise ValueError(
            f"before {first.shape}, after {second.shape} and groups {labels.shape} must be "
            "equal 1-D shapes"
        )
    if not first.size:
        return None
    first_table = _group_table(first, labels)
    second_table = _group_table(second, labels)
    rng = np.random.default_rng(seed)
    count = first_table.shape[0]
    picks = rng.integers(0, count, size=(resamples, count))
    differences = np.nanmedian(second_table[picks].reshape(resamples, -1), axis=1) - np.nanmedian(
        first_table[picks].reshape(resamples, -1), axis=1
    )
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(differences, [tail, 100.0 - tail])
    return float(low), float(high)
