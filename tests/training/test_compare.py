"""`training.compare` and `python -m training compare`: two evaluations of the same scenes paired
hand by hand through the per-hand errors that `evaluate --json` records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from training.compare import ComparisonError, compare_reports, format_comparison
from training.metrics import MetricAccumulator, PredictedHand, TrueHand


def _true(u: float, size: float = 40.0) -> TrueHand:
    kp = np.full((21, 2), 100.0)
    kp[:, 0] = u
    kp[1] += size / 2
    kp[2] -= size / 2
    return TrueHand(is_right=True, keypoints_px=kp, keypoints_vis=np.ones(21))


def _report(offsets_px: list[list[float | None]]) -> dict:
    """A report of images whose true hands (40 px boxes) are read `offset` px off, or missed
    where the offset is None."""
    acc = MetricAccumulator()
    for image in offsets_px:
        truth = [_true(100.0 + 100.0 * i) for i in range(len(image))]
        found = [
            PredictedHand(
                centre_px=t.centre_px(),
                score=0.9,
                is_right=True,
                keypoints_px=t.keypoints_px + np.array([off, 0.0]),
                joints_m=np.zeros((21, 3)),
                vertices_m=np.zeros((778, 3)),
            )
            for t, off in zip(truth, image, strict=True)
            if off is not None
        ]
        acc.add_image(found, truth)
    return {"model": "test", "metrics": json.loads(json.dumps(acc.summary().to_dict()))}


def test_hands_are_paired_by_image_and_label() -> None:
    before = _report([[2.0, 4.0], [1.0], [6.0, None, 3.0]])
    after = _report([[1.0, 4.0], [None], [6.0, 2.0, 3.2]])
    rows = before["metrics"]["hand_keypoint_errors"]
    assert rows == [[1, 0, 5.0], [1, 1, 10.0], [2, 0, 2.5], [3, 0, 15.0], [3, 2, 7.5]]
    c = compare_reports(before, after)
    # Paired: (1,0) 5 -> 2.5, (1,1) 10 -> 10, (3,0) 15 -> 15, (3,2) 7.5 -> 8.
    assert (c.hands, c.only_before, c.only_after) == (4, 1, 1)
    assert c.median_before == pytest.approx(8.75) and c.median_after == pytest.approx(9.0)
    assert c.difference == pytest.approx(0.25)
    assert (c.better, c.worse) == (0.25, 0.25)
    low, high = c.difference_ci95
    assert low <= high
    table = format_comparison(c, ("a.json", "b.json"))
    assert "B - A" in table and "+0.250" in table and "a.json" in table


def test_reports_of_other_scenes_or_without_hands_are_refused() -> None:
    report = _report([[2.0], [3.0]])
    with pytest.raises(ComparisonError, match="2 images and b 3"):
        compare_reports(report, _report([[2.0], [3.0], [1.0]]), ("a", "b"))
    old = {"metrics": {k: v for k, v in report["metrics"].items() if k != "hand_keypoint_errors"}}
    with pytest.raises(ComparisonError, match="no per-hand errors"):
        compare_reports(report, old)
    with pytest.raises(ComparisonError, match="not a report"):
        compare_reports(report, {"hands": []})
    with pytest.raises(ComparisonError, match="no matched hand in common"):
        compare_reports(_report([[2.0, None]]), _report([[None, 2.0]]))


def test_cli_prints_and_writes_the_comparison(tmp_path: Path, capsys) -> None:
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "cmp.json"
    a.write_text(json.dumps(_report([[2.0, 4.0], [1.0, 3.0]])))
    b.write_text(json.dumps(_report([[1.0, 3.0], [1.0, 2.0]])))
    assert main(["compare", str(a), str(b), f"--json={out}"]) == 0
    assert "2D error median (% box), A / B" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["hands"] == 4 and written["worse"] == 0.0 and written["better"] == 0.75
    assert written["difference"] == pytest.approx(-2.5)
    (tmp_path / "bad.json").write_text("{")
    assert main(["compare", str(a), str(tmp_path / "bad.json")]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "missing.json")]) == 2
