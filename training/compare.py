"""Two evaluations of the same scenes compared hand by hand.

`python -m training evaluate --json` records each matched hand's 2D error (% of its box) under
its image and label index (`EvaluationMetrics.hand_keypoint_errors`). Here the hands both
evaluations matched are paired, and the change of the median comes with a bootstrap interval
over images (`training.confidence.median_difference_interval`). On the 200 validation scenes
(seeds 7000000-7000199) v28's median is 4.73 % with an interval of 4.41-5.37, about a point
wide; the reading's centroid power at 8 instead of 4 moved it by +0.01 with a paired interval of
-0.13 to +0.13 (session 38). Two models whose own intervals overlap can still differ for sure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.confidence import median_difference_interval

UNCHANGED_PCT = 0.01
"""A hand whose error moved by less than this (percentage points of its box) is unchanged."""


class ComparisonError(ValueError):
    """The two reports cannot be compared (not evaluation reports, or not the same scenes)."""


@dataclass(frozen=True)
class Comparison:
    """Median 2D errors (% of the box) of the hands two evaluations both matched."""

    hands: int
    """Hands matched in both evaluations."""
    only_before: int
    """Hands only the first evaluation matched."""
    only_after: int
    """Hands only the second evaluation matched."""
    median_before: float
    median_after: float
    mean_before: float
    mean_after: float
    difference_ci95: tuple[float, float]
    """95 % interval of median_after - median_before, images resampled."""
    better: float
    """Share of the paired hands whose error fell by at least `UNCHANGED_PCT`."""
    worse: float
    """Share of the paired hands whose error rose by at least `UNCHANGED_PCT`."""

    @property
    def difference(self) -> float:
        """median_after - median_before, percentage points of the box."""
        return self.median_after - self.median_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "hands": self.hands,
            "only_before": self.only_before,
            "only_after": self.only_after,
            "median_before": self.median_before,
            "median_after": self.median_after,
            "mean_before": self.mean_before,
            "mean_after": self.mean_after,
            "difference": self.difference,
            "difference_ci95": list(self.difference_ci95),
            "better": self.better,
            "worse": self.worse,
        }


def _hand_errors(report: dict[str, Any], name: str) -> tuple[dict[tuple[int, int], float], int]:
    """{(image, hand): error} of one report, and its image count."""
    metrics = report.get("metrics") if isinstance(report, dict) else None
    if not isinstance(metrics, dict) or "images" not in metrics:
        raise ComparisonError(f"{name}: not a report of `python -m training evaluate --json`")
    rows = metrics.get("hand_keypoint_errors")
    if rows is None:
        raise ComparisonError(
            f"{name}: has no per-hand errors (hand_keypoint_errors); evaluate again with this "
            "version of `python -m training evaluate --json`"
        )
    errors = {(int(image), int(hand)): float(error) for image, hand, error in rows}
    return errors, int(metrics["images"])


def compare_reports(
    before: dict[str, Any],
    after: dict[str, Any],
    names: tuple[str, str] = ("before", "after"),
) -> Comparison:
    """Pair the hands of two evaluation reports (as written by `evaluate --json`) of the same
    scenes and compare their 2D errors."""
    first, first_images = _hand_errors(before, names[0])
    second, second_images = _hand_errors(after, names[1])
    if first_images != second_images:
        raise ComparisonError(
            f"{names[0]} has {first_images} images and {names[1]} {second_images}: not the same "
            "scenes"
        )
    keys = sorted(first.keys() & second.keys())
    if not keys:
        raise ComparisonError(f"{names[0]} and {names[1]} have no matched hand in common")
    a = np.array([first[k] for k in keys])
    b = np.array([second[k] for k in keys])
    interval = median_difference_interval(a, b, [image for image, _ in keys])
    assert interval is not None  # keys is not empty
    return Comparison(
        hands=len(keys),
        only_before=len(first.keys() - second.keys()),
        only_after=len(second.keys() - first.keys()),
        median_before=float(np.median(a)),
        median_after=float(np.median(b)),
        mean_before=float(a.mean()),
        mean_after=float(b.mean()),
        difference_ci95=interval,
        better=float(np.mean(b <= a - UNCHANGED_PCT)),
        worse=float(np.mean(b >= a + UNCHANGED_PCT)),
    )


def load_report(path: str | Path) -> dict[str, Any]:
    """Read an evaluation report written by `evaluate --json`."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ComparisonError(f"{path}: not JSON ({error})") from None


def format_comparison(comparison: Comparison, names: tuple[str, str]) -> str:
    """A text table of the comparison (errors in % of the box); A is the first report, B the
    second."""
    c = comparison
    low, high = c.difference_ci95
    rows = [
        ("A", names[0]),
        ("B", names[1]),
        ("hands in both", f"{c.hands}"),
        ("hands only in A / only in B", f"{c.only_before} / {c.only_after}"),
        ("2D error median (% box), A / B", f"{c.median_before:.3f} / {c.median_after:.3f}"),
        ("  B - A", f"{c.difference:+.3f}"),
        ("  95 % interval (images resampled)", f"{low:+.3f} to {high:+.3f}"),
        ("2D error mean (% box), A / B", f"{c.mean_before:.3f} / {c.mean_after:.3f}"),
        ("hands better / worse in B", f"{c.better:.2f} / {c.worse:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
