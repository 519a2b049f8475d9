"""Stable hand ids across the frames of one camera.

Hands are matched to tracks by a cost built from image position and size, with the Hungarian
algorithm (`scipy.optimize.linear_sum_assignment`); a hand and a track of different sides never
match. Cost of a pair = distance between box centres in units of the mean box diagonal
+ |log(ratio of box diagonals)|. Pairs above `max_cost` are not matched: the hand starts a new
track. A track unseen for more than `max_missed_frames` frames is retired. Ids start at 1 and
are never reused by one tracker (0 is reserved for "tracking off").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from smhr_core.results import Hand, Handedness

_NO_MATCH = 1e9


@dataclass
class Track:
    """One tracked hand."""

    track_id: int
    handedness: Handedness
    centre_px: np.ndarray
    """(2,) box centre, pixels."""
    diagonal_px: float
    """Box diagonal, pixels."""
    age_frames: int = 1
    """Frames since the track started (including frames it was missed)."""
    hits: int = 1
    """Frames in which the track was matched to a hand."""
    missed_frames: int = 0
    """Consecutive frames without a match."""


def _box_geometry(hand: Hand) -> tuple[np.ndarray, float]:
    box = np.asarray(hand.box_px, dtype=np.float64)
    centre = (box[:2] + box[2:]) / 2.0
    # A degenerate box (all keypoints on one pixel) still needs a usable size.
    diagonal = max(float(np.hypot(box[2] - box[0], box[3] - box[1])), 1.0)
    return centre, diagonal


class HandTracker:
    """Assigns track ids to the hands of successive frames of one camera."""

    def __init__(self, max_missed_frames: int = 5, max_cost: float = 1.5) -> None:
        if max_missed_frames < 0:
            raise ValueError(f"max_missed_frames: must be >= 0, got {max_missed_frames}")
        if not max_cost >= 0:
            raise ValueError(f"max_cost: must be >= 0, got {max_cost}")
        self.max_missed_frames = max_missed_frames
        self.max_cost = max_cost
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> tuple[Track, ...]:
        """The live tracks (matched this frame or missed for at most `max_missed_frames`)."""
        return tuple(self._tracks)

    def reset(self) -> None:
        """Forget every track (ids keep increasing)."""
        self._tracks = []

    def cost_matrix(self, hands: Sequence[Hand]) -> np.ndarray:
        """(tracks, hands) match costs; `1e9` where the sides differ."""
        cost = np.full((len(self._tracks), len(hands)), _NO_MATCH)
        geometry = [_box_geometry(hand) for hand in hands]
        for i, track in enumerate(self._tracks):
            for j, (hand, (centre, diagonal)) in enumerate(zip(hands, geometry, strict=True)):
                if hand.handedness != track.handedness:
                    continue
                scale = (diagonal + track.diagonal_px) / 2.0
                distance = float(np.linalg.norm(centre - track.centre_px)) / scale
                cost[i, j] = distance + abs(np.log(diagonal / track.diagonal_px))
        return cost

    def update(self, hands: Sequence[Hand]) -> list[int]:
        """Match this frame's hands to the tracks; returns one track id per hand, in order."""
        ids = [0] * len(hands)
        matched_tracks: set[int] = set()
        if self._tracks and hands:
            cost = self.cost_matrix(hands)
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols, strict=True):
                if cost[i, j] <= self.max_cost:
                    track = self._tracks[i]
                    track.centre_px, track.diagonal_px = _box_geometry(hands[j])
                    track.hits += 1
                    track.missed_frames = 0
                    ids[j] = track.track_id
                    matched_tracks.add(i)
        survivors = []
        for i, track in enumerate(self._tracks):
            if i not in matched_tracks:
                track.missed_frames += 1
            track.age_frames += 1
            if track.missed_frames <= self.max_missed_frames:
                survivors.append(track)
        self._tracks = survivors
        for j, hand in enumerate(hands):
            if ids[j] == 0:
                centre, diagonal = _box_geometry(hand)
                track = Track(self._next_id, Handedness(hand.handedness), centre, diagonal)
                self._next_id += 1
                self._tracks.append(track)
                ids[j] = track.track_id
        return ids
