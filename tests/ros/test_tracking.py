"""Stable hand ids: Hungarian matching by position, size and side."""

from __future__ import annotations

import numpy as np
import pytest

from smhr_ros.tracking import HandTracker


def test_ids_follow_moving_hands_and_new_hands_get_new_ids(make_hand) -> None:
    tracker = HandTracker(max_missed_frames=2, max_cost=1.5)
    left = [make_hand((-0.15 + 0.01 * t, 0.0, 0.6), is_right=False) for t in range(5)]
    right = [make_hand((0.15 - 0.01 * t, 0.0, 0.6), is_right=True) for t in range(5)]
    first = tracker.update([left[0], right[0]])
    assert first == [1, 2]
    for t in range(1, 5):
        # Order in the frame must not matter.
        assert tracker.update([right[t], left[t]]) == [2, 1]
    third = make_hand((0.0, 0.1, 0.5), is_right=True)
    assert tracker.update([left[4], right[4], third]) == [1, 2, 3]
    assert [t.hits for t in tracker.tracks] == [6, 6, 1]


def test_sides_never_swap_ids_even_when_hands_cross(make_hand) -> None:
    tracker = HandTracker()
    tracker.update([make_hand((0.0, 0.0, 0.6), is_right=False)])
    ids = tracker.update([make_hand((0.0, 0.0, 0.6), is_right=True)])
    assert ids == [2]


def test_far_jump_starts_a_new_track_and_missed_tracks_retire(make_hand) -> None:
    tracker = HandTracker(max_missed_frames=1, max_cost=1.0)
    near = make_hand((0.0, 0.0, 0.6))
    assert tracker.update([near]) == [1]
    assert tracker.update([make_hand((0.3, 0.0, 0.6))]) == [2]
    assert [t.track_id for t in tracker.tracks] == [1, 2]
    tracker.update([])
    # Track 1 missed two frames in a row (> 1): retired; the hand coming back gets a new id.
    assert [t.track_id for t in tracker.tracks] == [2]
    assert tracker.update([near]) == [3]


def test_a_hand_missed_briefly_keeps_its_id(make_hand) -> None:
    tracker = HandTracker(max_missed_frames=3)
    hand = make_hand((0.05, 0.0, 0.6))
    assert tracker.update([hand]) == [1]
    for _ in range(3):
        tracker.update([])
    assert tracker.update([hand]) == [1]
    assert tracker.tracks[0].age_frames == 5


def test_cost_grows_with_distance_and_size_change(make_hand) -> None:
    tracker = HandTracker()
    tracker.update([make_hand((0.0, 0.0, 0.6))])
    costs = tracker.cost_matrix(
        [
            make_hand((0.0, 0.0, 0.6)),
            make_hand((0.05, 0.0, 0.6)),
            make_hand((0.0, 0.0, 0.3)),
            make_hand((0.0, 0.0, 0.6), is_right=False),
        ]
    )[0]
    assert costs[0] == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < costs[1] < 1.5
    assert costs[2] > np.log(1.9)
    assert costs[3] >= 1e9


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_missed_frames"):
        HandTracker(max_missed_frames=-1)
    with pytest.raises(ValueError, match="max_cost"):
        HandTracker(max_cost=float("nan"))
