"""The demo sequence generator reproduces the committed frames and labels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from smhr_ros.demo_sequence import DEMO_DIRECTORY, LABELS_FORMAT, load_demo_sequence
from training.demo_sequence import CAMERA_MATRIX, TRACKS, generate, project, track_pose


def test_a_regenerated_frame_equals_the_committed_one(tmp_path: Path) -> None:
    frame = 25  # three hands
    labels = generate(tmp_path, only_frames=[frame])
    committed = json.loads((DEMO_DIRECTORY / "labels.json").read_text())
    assert labels["format"] == committed["format"] == LABELS_FORMAT
    assert labels["camera_matrix"] == committed["camera_matrix"] == CAMERA_MATRIX.tolist()
    assert labels["image_size"] == committed["image_size"]
    (new,) = labels["frames"]
    old = committed["frames"][frame]
    assert new["file"] == old["file"]
    assert [h["side"] for h in new["hands"]] == [h["side"] for h in old["hands"]]
    assert len(new["hands"]) == 3
    for a, b in zip(new["hands"], old["hands"], strict=True):
        for key in ("keypoints_px", "joints_m", "global_orient", "hand_pose", "translation_m"):
            np.testing.assert_allclose(a[key], b[key], atol=1e-4, err_msg=key)
    image = cv2.imread(str(tmp_path / new["file"])).astype(int)
    shipped = cv2.imread(str(load_demo_sequence().frames[frame].path)).astype(int)
    # The same scene: JPEG blocks may shift by a few grey levels when the renderer's arithmetic
    # changes slightly, but no hand or edge may move.
    difference = np.abs(image - shipped)
    assert difference.mean() < 0.5
    assert (difference > 10).mean() < 1e-3


def test_keypoints_are_the_projection_of_the_joints_and_motion_is_smooth() -> None:
    sequence = load_demo_sequence()
    for frame in sequence.frames:
        for hand in frame.hands:
            np.testing.assert_allclose(project(hand.joints_m), hand.keypoints_px, atol=2e-3)
    # Consecutive frames of one track: the wrist moves at most a few centimetres (10 Hz).
    wrists = [track_pose(TRACKS[0], i)[2] for i in range(len(sequence.frames))]
    steps = np.linalg.norm(np.diff(np.stack(wrists), axis=0), axis=1)
    assert steps.max() < 0.03 and steps.min() > 0.0
