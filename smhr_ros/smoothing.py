"""Temporal smoothing of tracked hands with the One Euro filter (Casiez, Roussel, Vogel, CHI 2012).

The filter is a first-order low pass whose cutoff rises with speed: `cutoff = min_cutoff +
beta * speed`, so a hand at rest is steady and a moving hand lags little.

Per tracked hand, `HandSmoother` filters
- the 3D geometry (joints, mesh vertices, translation) as one group with one cutoff from the mean
  point speed (m/s), so every point gets the same blend and the mesh keeps its shape;
- the 16 axis-angle rotations (global orientation + 15 finger joints), each with its own cutoff
  from its angular speed (rad/s), after picking the axis-angle equivalent closest to the last
  filtered value (r and r - 2*pi*r/|r| are the same rotation) so a wrap near pi never averages
  through the identity;
- the shape coefficients, per coefficient.
The 2D keypoints are re-projected from the filtered joints, and the box recomputed from them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from smhr_core.camera import project
from smhr_core.results import Hand


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """One Euro filter of a signal of P points in D dimensions ((P, D) arrays).

    The speed of a point is the norm of its (filtered) derivative. With `shared_cutoff` all
    points get one cutoff from their mean speed; otherwise each point has its own.
    """

    def __init__(
        self,
        min_cutoff_hz: float,
        beta: float,
        d_cutoff_hz: float,
        shared_cutoff: bool = False,
    ) -> None:
        if not min_cutoff_hz > 0 or not d_cutoff_hz > 0 or not beta >= 0:
            raise ValueError(
                f"One Euro filter: need min_cutoff_hz > 0, d_cutoff_hz > 0, beta >= 0; got "
                f"{min_cutoff_hz}, {d_cutoff_hz}, {beta}"
            )
        self.min_cutoff_hz = min_cutoff_hz
        self.beta = beta
        self.d_cutoff_hz = d_cutoff_hz
        self.shared_cutoff = shared_cutoff
        self._value: np.ndarray | None = None
        self._derivative: np.ndarray | None = None
        self._t_s = 0.0

    @property
    def value(self) -> np.ndarray | None:
        """The last filtered value, or None before the first sample."""
        return self._value

    def reset(self) -> None:
        """Forget the history: the next sample passes unchanged."""
        self._value = None
        self._derivative = None

    def __call__(self, value: np.ndarray, t_s: float) -> np.ndarray:
        """Filter one sample taken at time `t_s` (seconds); returns the filtered (P, D) array.

        A sample not later than the previous one (a replayed or repeated stamp) restarts the
        filter from it.
        """
        x = np.asarray(value, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"One Euro filter: expected a (P, D) array, got shape {x.shape}")
        previous = self._value
        dt_s = t_s - self._t_s
        if previous is None or previous.shape != x.shape or not dt_s > 0:
            self._value = x.copy()
            self._derivative = np.zeros_like(x)
            self._t_s = t_s
            return self._value.copy()
        derivative = (x - previous) / dt_s
        a_d = _alpha(self.d_cutoff_hz, dt_s)
        derivative = self._derivative + a_d * (derivative - self._derivative)
        speed = np.linalg.norm(derivative, axis=1, keepdims=True)
        if self.shared_cutoff:
            speed = np.full_like(speed, speed.mean())
        a = _alpha(self.min_cutoff_hz + self.beta * speed, dt_s)
        self._value = previous + a * (x - previous)
        self._derivative = derivative
        self._t_s = t_s
        return self._value.copy()


def _nearest_axis_angle(rotations: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Per row, r or its equivalent r - 2*pi*r/|r|, whichever is closer to `reference`."""
    if reference is None:
        return rotations
    angle = np.linalg.norm(rotations, axis=1, keepdims=True)
    safe = np.where(angle > 1e-12, angle, 1.0)
    alternative = rotations * (1.0 - 2.0 * math.pi / safe)
    use_alternative = np.linalg.norm(alternative - reference, axis=1) < np.linalg.norm(
        rotations - reference, axis=1
    )
    return np.where((use_alternative & (angle[:, 0] > 1e-12))[:, None], alternative, rotations)


class _HandFilters:
    def __init__(
        self, min_cutoff_hz: float, beta_position: float, beta_rotation: float, d_cutoff_hz: float
    ) -> None:
        self.geometry = OneEuroFilter(min_cutoff_hz, beta_position, d_cutoff_hz, True)
        self.rotations = OneEuroFilter(min_cutoff_hz, beta_rotation, d_cutoff_hz)
        self.shape = OneEuroFilter(min_cutoff_hz, beta_rotation, d_cutoff_hz)


class HandSmoother:
    """One Euro smoothing of tracked hands, one filter set per track id.

    Args:
        min_cutoff_hz: cutoff at rest, Hz (lower: steadier, more lag).
        beta_position: cutoff increase per m/s of mean point speed, Hz / (m/s).
        beta_rotation: cutoff increase per rad/s of joint rotation speed, Hz / (rad/s).
        d_cutoff_hz: cutoff of the speed estimate, Hz.
    """

    def __init__(
        self,
        min_cutoff_hz: float = 1.0,
        beta_position: float = 20.0,
        beta_rotation: float = 1.0,
        d_cutoff_hz: float = 1.0,
    ) -> None:
        self._settings = (min_cutoff_hz, beta_position, beta_rotation, d_cutoff_hz)
        _HandFilters(*self._settings)  # validates the settings now rather than at first use
        self._filters: dict[int, _HandFilters] = {}

    @property
    def track_ids(self) -> tuple[int, ...]:
        """Tracks that currently have filter state."""
        return tuple(self._filters)

    def retain(self, live_track_ids: Iterable[int]) -> None:
        """Drop the state of every track not in `live_track_ids`."""
        live = set(live_track_ids)
        for track_id in [t for t in self._filters if t not in live]:
            del self._filters[track_id]

    def smooth(self, track_id: int, hand: Hand, t_s: float, camera_matrix: np.ndarray) -> Hand:
        """The filtered version of `hand` (track `track_id`, image time `t_s` seconds).

        `camera_matrix` (3x3, pixels) re-projects the filtered joints to keypoints.
        """
        filters = self._filters.get(track_id)
        if filters is None:
            filters = self._filters[track_id] = _HandFilters(*self._settings)
        parts = [hand.joints_m.reshape(-1, 3), hand.translation_m.reshape(1, 3)]
        if hand.vertices_m is not None:
            parts.append(hand.vertices_m.reshape(-1, 3))
        geometry = filters.geometry(np.concatenate(parts), t_s)
        joints = geometry[:21]
        translation = geometry[21]
        vertices = geometry[22:] if hand.vertices_m is not None else None

        rotations = np.concatenate([hand.global_orient, hand.hand_pose]).reshape(16, 3)
        rotations = filters.rotations(
            _nearest_axis_angle(rotations.astype(np.float64), filters.rotations.value), t_s
        )
        shape = filters.shape(hand.betas.reshape(-1, 1), t_s)

        keypoints = project(joints, camera_matrix)
        box = np.concatenate([keypoints.min(axis=0), keypoints.max(axis=0)])
        return dataclasses.replace(
            hand,
            joints_m=joints.astype(np.float32),
            keypoints_px=keypoints.astype(np.float32),
            global_orient=rotations[0].astype(np.float32),
            hand_pose=rotations[1:].reshape(45).astype(np.float32),
            betas=shape.reshape(-1).astype(np.float32),
            translation_m=translation.astype(np.float32),
            box_px=box.astype(np.float32),
            vertices_m=None if vertices is None else vertices.astype(np.float32),
        )
