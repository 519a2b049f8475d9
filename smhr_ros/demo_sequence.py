"""The bundled demo sequence: frames of synthetic hands with their ground truth.

The files live in `smhr_ros/data/demo/` (`frames/*.jpg` and `labels.json`); they are generated
by `python -m training.demo_sequence --out smhr_ros/data/demo` and committed, so nothing here
renders anything. `labels.json` holds the intrinsics the frames were rendered with and, per
frame, every hand's side, 2D keypoints (pixels) and 3D joints (metres, camera optical frame,
FreiHAND joint order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smhr_core.results import Handedness

DEMO_DIRECTORY = Path(__file__).resolve().parent / "data" / "demo"
"""Where the bundled sequence is installed (beside this module)."""

LABELS_FILE = "labels.json"
LABELS_FORMAT = "smhr-demo-sequence/1"
"""Value of `format` in labels.json for this layout."""

_SIDES = {"left": Handedness.LEFT, "right": Handedness.RIGHT}


class DemoSequenceError(ValueError):
    """The demo sequence's files are missing or malformed (the message names file and field)."""


@dataclass(frozen=True, eq=False)
class DemoHand:
    """Ground truth of one hand in one frame."""

    track: int
    """Which of the sequence's hands this is (stable across frames)."""
    handedness: Handedness
    keypoints_px: np.ndarray
    """(21, 2) float64 (u, v) pixels: the projection of `joints_m` with the sequence's K."""
    joints_m: np.ndarray
    """(21, 3) float64 metres, camera optical frame, FreiHAND order."""


@dataclass(frozen=True, eq=False)
class DemoFrame:
    """One frame: its image file and the hands in it."""

    index: int
    path: Path
    hands: tuple[DemoHand, ...]


@dataclass(frozen=True, eq=False)
class DemoSequence:
    """The whole sequence as read from `labels.json`."""

    directory: Path
    image_size: tuple[int, int]
    """(width, height) of every frame, pixels."""
    camera_matrix: np.ndarray
    """(3, 3) float64 intrinsics the frames were rendered with, pixels."""
    rate_hz: float
    """Frame rate the motion was designed for."""
    frames: tuple[DemoFrame, ...]


def _field(data: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise DemoSequenceError(f"{where}: missing field '{key}'")
    return data[key]


def _array(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DemoSequenceError(f"{where}: not a numeric array") from None
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise DemoSequenceError(
            f"{where}: expected {shape} finite numbers, got shape {array.shape}"
        )
    return array


def _hand(data: Any, where: str) -> DemoHand:
    side = _field(data, "side", where)
    if side not in _SIDES:
        raise DemoSequenceError(f"{where}.side: {side!r} is not one of {sorted(_SIDES)}")
    track = _field(data, "track", where)
    if not isinstance(track, int) or track < 0:
        raise DemoSequenceError(f"{where}.track: {track!r} is not a non-negative integer")
    return DemoHand(
        track=track,
        handedness=_SIDES[side],
        keypoints_px=_array(_field(data, "keypoints_px", where), (21, 2), f"{where}.keypoints_px"),
        joints_m=_array(_field(data, "joints_m", where), (21, 3), f"{where}.joints_m"),
    )


def load_demo_sequence(directory: str | Path = DEMO_DIRECTORY) -> DemoSequence:
    """Read `labels.json` of a demo sequence directory and check that every frame file exists.

    Raises `DemoSequenceError` naming the file and field when something is missing or malformed.
    """
    directory = Path(directory)
    labels_path = directory / LABELS_FILE
    if not labels_path.is_file():
        raise DemoSequenceError(
            f"demo sequence labels not found: {labels_path} (regenerate the sequence with "
            "`python -m training.demo_sequence --out <dir>`)"
        )
    try:
        data = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DemoSequenceError(f"{labels_path}: not readable JSON ({error})") from None
    where = str(labels_path)
    found = _field(data, "format", where)
    if found != LABELS_FORMAT:
        raise DemoSequenceError(f"{where}: format {found!r} is not {LABELS_FORMAT!r}")
    size = _field(data, "image_size", where)
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise DemoSequenceError(f"{where}.image_size: {size!r} is not [width, height] in pixels")
    camera_matrix = _array(_field(data, "camera_matrix", where), (3, 3), f"{where}.camera_matrix")
    rate_hz = _field(data, "rate_hz", where)
    if not isinstance(rate_hz, int | float) or rate_hz <= 0:
        raise DemoSequenceError(f"{where}.rate_hz: {rate_hz!r} is not a positive number")
    frames_data = _field(data, "frames", where)
    if not isinstance(frames_data, list) or not frames_data:
        raise DemoSequenceError(f"{where}.frames: expected a non-empty list")
    frames = []
    for index, frame in enumerate(frames_data):
        at = f"{where}.frames[{index}]"
        name = _field(frame, "file", at)
        path = directory / str(name)
        if not path.is_file():
            raise DemoSequenceError(f"{at}.file: {path} does not exist")
        hands_data = _field(frame, "hands", at)
        if not isinstance(hands_data, list):
            raise DemoSequenceError(f"{at}.hands: expected a list")
        hands = tuple(_hand(h, f"{at}.hands[{i}]") for i, h in enumerate(hands_data))
        frames.append(DemoFrame(index=index, path=path, hands=hands))
    return DemoSequence(
        directory=directory,
        image_size=(size[0], size[1]),
        camera_matrix=camera_matrix,
        rate_hz=float(rate_hz),
        frames=tuple(frames),
    )
