"""End to end with the shipped checkpoint: scenes with known hands -> hands_node -> HandArray.

The scenes are held out from training (other seeds, another resolution, supersampled), rendered
from the open hand model with their true camera, which is published as CameraInfo; the hands
coming back must be the scene's hands: found, on the right side, with accurate joints.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sensor_msgs.msg import CameraInfo, Image
from smhr_ros.msg import Hand, HandArray

from smhr_core.predictor import DEFAULT_CHECKPOINT
from training.synthetic import SceneConfig, SceneGenerator

SEEDS = range(7_000_000, 7_000_006)
RESOLUTION = 320
START_TIMEOUT_S = 240.0
REPLY_TIMEOUT_S = 120.0

# Bounds below what the shipped model measured on these scenes through the node: v34 recall 1.00,
# precision 1.00, median 2D error 0.037 of the box, wrist-relative joints 0.015 m, handedness 21/23
# (v33: 0.031, 0.015 m, 21/23; v32: 0.038, 0.017 m, 22/23; v31: 0.034, 0.019 m, 22/23; v30:
# 0.033, 0.018 m, 21/23; v29: 0.036, 0.017 m, 21/23), with the default decoding (keypoint fit on
# with the finger-pose prior per axis and scores squared, joints
# read along the kinematic tree within 40 % of the box with no two fingertips on one peak, each at
# the heat-weighted mean around its peak, the second look at a crop around each hand, the hand at 33
# % of the input, and each hand read from the crop and its mirror image, fitted in five iterations
# in the image's own camera). v28 with it (recall 1.00, precision 1.00, median 2D error 0.041 of the
# box, wrist-relative joints 0.019 m, handedness 21/23; the same with three iterations; fitted in
# the network's virtual camera: 0.041, 0.022 m, 21/23; only the joint maps from the mirror image:
# 0.039, 0.025 m, 21/23; without the mirror 0.046, 0.024 m, 21/23; v27 with the same decoding 0.032,
# 0.020 m, 21/23, though on the 1900 hands of the evaluation sets v28 is the better; v27 with one
# finger-pose prior of 0.003: 0.039, 0.021 m, 21/23; with the reading before, 25 % of the box and
# tips free: 0.040, 0.020 m, 21/23; v26 with the second look at 29 %: 0.047, 0.022 m, 20/23, without
# the second look 0.050, 0.022 m, 22/23; v25 0.059, 0.026 m, 20/23, and with each joint at its
# peak's own place 0.051 and 0.027 m: on these 23 hands the mean around the peak does worse, on 242
# hands of 100 other scenes at 320 px better, 6.84 -> 6.68 % of the box, median over hands of each
# one's mean error; v24 with the same fit 1.00, 1.00, 0.055, 0.024 m, 21/23, with the fit's earlier
# priors 0.061 and 0.024 m, with each joint's strongest peak 0.058 and 0.024 m; v23 measured 1.00,
# 1.00, 0.069, 0.026 m, 20/23; v22 measured 1.00, 1.00, 0.074, 0.027 m, 19/23; v21 measured 1.00,
# 1.00, 0.078, 0.027 m, 20/23; v20 measured 1.00, 1.00, 0.088, 0.033 m, 18/23 (with v20's fit
# settings); v19 measured 1.00, 1.00, 0.084, 0.026 m, 19/23; v18 measured 1.00, 1.00, 0.094, 0.038
# m, 17/23; v17 measured 1.00, 1.00, 0.096, 0.036 m, 18/23; v16 measured 1.00, 1.00, 0.127, 0.037 m,
# 19/23; v15 measured 1.00, 1.00, 0.108, 0.044 m, 18/23; v14 1.00, 1.00, 0.124, 0.049 m, 19/23; v13
# 1.00, 1.00, 0.130, 0.043 m, 20/23; v12 measured 1.00, 1.00, 0.156, 0.058 m, 19/23; v11 1.00, 1.00,
# 0.144, 0.056 m, 19/23; v10 1.00, 1.00, 0.148, 0.045 m, 20/23; v9 1.00, 1.00, 0.193, 0.052 m,
# 18/23; v8 1.00, 1.00, 0.176, 0.049 m, 18/23; v7 1.00, 1.00, 0.187, 0.053 m, 18/23; v6 1.00, 1.00,
# 0.236, 0.056 m, 15/23; v5 1.00, 1.00, 0.264, 0.067 m, 12/23): they catch a broken pipeline (camera
# mapping, decoding, message conversion), which puts hands a box or more away or swaps left and
# right (5/23). They are NOT issue 6's quality targets (2D error <= 4 %, handedness >= 0.95): the
# CPU-trained model does not reach the first, and reaches the second on the 234 held-out hands
# (0.99), not on these 23 (0.91; v26 0.87, 0.96 without the second look).
MIN_RECALL = 0.85
MIN_PRECISION = 0.85
MIN_HANDEDNESS = 0.6
"""Fraction of matched hands whose reported side is the scene's."""
MAX_MEDIAN_2D_ERROR = 0.35
"""Median keypoint error as a fraction of the hand's box (longer side)."""
MAX_MEDIAN_JOINT_ERROR_M = 0.1
"""Median wrist-relative 3D joint error, metres."""


def _image_message(bgr: np.ndarray, stamp: int, frame_id: str) -> Image:
    message = Image(height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8")
    message.step = bgr.shape[1] * 3
    message.data = bgr.tobytes()
    message.header.frame_id = frame_id
    message.header.stamp.sec = stamp
    return message


def _info_message(k: np.ndarray, size: int, frame_id: str) -> CameraInfo:
    info = CameraInfo(width=size, height=size)
    info.header.frame_id = frame_id
    info.k = [float(v) for v in k.ravel()]
    return info


@pytest.fixture(scope="module")
def scenes():
    generator = SceneGenerator(SceneConfig(resolution=RESOLUTION, supersampling=2))
    return [generator.scene(seed) for seed in SEEDS]


def test_shipped_model_finds_the_scene_hands_through_the_node(ros, scenes) -> None:
    assert DEFAULT_CHECKPOINT.is_file(), f"the embedded default {DEFAULT_CHECKPOINT} is missing"
    received = ros.collect(HandArray, "/hands")
    ros.start_node(
        {
            "image_topics": ["/cam/image_raw"],
            "device": "cpu",
            "torch_threads": 1,
            "publish_vertices": False,
            "publish_markers": False,
            "max_rate_hz": 0.0,
            "image_qos": "reliable",
        }
    )
    ros.wait_for_publisher("/hands", START_TIMEOUT_S)
    images = ros.image_publisher("/cam/image_raw")
    info = ros.camera_info_publisher("/cam/camera_info")
    assert ros.spin_until(
        lambda: images.get_subscription_count() > 0 and info.get_subscription_count() > 0,
        START_TIMEOUT_S,
    )
    found = matched = sides_right = 0
    truth = 0
    errors_2d, errors_3d = [], []
    for stamp, scene in enumerate(scenes, start=1):
        info.publish(_info_message(scene.camera_matrix, RESOLUTION, "scene_optical"))
        ros.spin_for(0.2)
        images.publish(_image_message(scene.image_bgr, stamp, "scene_optical"))
        assert ros.spin_until(
            lambda s=stamp: any(m.header.stamp.sec == s for m in received), REPLY_TIMEOUT_S
        ), f"no HandArray for scene {stamp}"
        message = next(m for m in received if m.header.stamp.sec == stamp)
        assert message.header.frame_id == "scene_optical"
        assert not message.intrinsics_assumed
        np.testing.assert_allclose(np.reshape(message.camera_matrix, (3, 3)), scene.camera_matrix)
        predicted = [np.reshape(h.keypoints, (21, 2)) for h in message.hands]
        actual = [h.keypoints_px for h in scene.hands]
        truth += len(actual)
        found += len(predicted)
        if not predicted:
            continue
        centres = np.array([p.mean(0) for p in predicted])
        truths = np.array([a.mean(0) for a in actual])
        cost = np.linalg.norm(centres[:, None] - truths[None], axis=2)
        for i, j in zip(*linear_sum_assignment(cost), strict=True):
            gt = scene.hands[j]
            box = np.ptp(gt.keypoints_px, axis=0).max()
            if cost[i, j] > 0.5 * box:
                continue
            hand = message.hands[i]
            matched += 1
            sides_right += int((hand.handedness == Hand.RIGHT) == gt.is_right)
            pixel_error = np.linalg.norm(predicted[i] - gt.keypoints_px, axis=1)
            errors_2d.append(np.median(pixel_error) / box)
            joints = np.reshape(hand.joints, (21, 3))
            relative = (joints - joints[0]) - (gt.joints_m - gt.joints_m[0])
            errors_3d.append(np.median(np.linalg.norm(relative, axis=1)))
    recall, precision = matched / truth, matched / max(found, 1)
    summary = (
        f"recall {recall:.2f}, precision {precision:.2f}, handedness {sides_right}/{matched}, "
        f"2D {np.median(errors_2d) if errors_2d else float('nan'):.3f} of box, "
        f"3D {np.median(errors_3d) if errors_3d else float('nan'):.4f} m"
    )
    print(summary)
    assert recall >= MIN_RECALL, summary
    assert precision >= MIN_PRECISION, summary
    assert sides_right >= MIN_HANDEDNESS * matched, summary
    assert np.median(errors_2d) <= MAX_MEDIAN_2D_ERROR, summary
    assert np.median(errors_3d) <= MAX_MEDIAN_JOINT_ERROR_M, summary
