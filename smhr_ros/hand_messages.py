"""smhr_core results -> smhr_ros/Hand and smhr_ros/HandArray messages (see msg/*.msg)."""

from __future__ import annotations

import array
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header

from smhr_core.results import Hand, ImageHands
from smhr_ros.msg import Hand as HandMsg
from smhr_ros.msg import HandArray


def axis_angle_to_quaternion(axis_angle: np.ndarray) -> Quaternion:
    """Axis-angle (3,) in radians -> unit quaternion (x, y, z, w)."""
    x, y, z, w = Rotation.from_rotvec(np.asarray(axis_angle, dtype=np.float64)).as_quat()
    return Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))


def _float32(values: np.ndarray, size: int, name: str) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size != size:
        raise ValueError(f"{name}: expected {size} values, got {flat.size}")
    return flat


def hand_to_msg(hand: Hand, track_id: int, depth_corrected: bool, with_vertices: bool) -> HandMsg:
    """One `Hand` as a message. `track_id` 0 means tracking is off."""
    msg = HandMsg()
    msg.id = int(track_id)
    msg.score = float(hand.score)
    msg.handedness = int(hand.handedness)
    msg.handedness_probability = float(hand.handedness_probability)
    msg.joints = _float32(hand.joints_m, 63, "joints_m")
    msg.keypoints = _float32(hand.keypoints_px, 42, "keypoints_px")
    msg.global_orient = _float32(hand.global_orient, 3, "global_orient")
    msg.hand_pose = _float32(hand.hand_pose, 45, "hand_pose")
    msg.shape = _float32(hand.betas, 10, "betas")
    msg.translation = _float32(hand.translation_m, 3, "translation_m")
    wrist = np.asarray(hand.joints_m, dtype=np.float64)[0]
    msg.wrist_pose = Pose(
        position=Point(x=float(wrist[0]), y=float(wrist[1]), z=float(wrist[2])),
        orientation=axis_angle_to_quaternion(hand.global_orient),
    )
    msg.box = _float32(hand.box_px, 4, "box_px")
    msg.depth_corrected = bool(depth_corrected)
    if with_vertices and hand.vertices_m is not None:
        vertices = array.array("f")
        vertices.frombytes(
            _float32(hand.vertices_m, HandMsg.NUM_VERTICES * 3, "vertices_m").tobytes()
        )
        msg.vertices = vertices
    return msg


def image_hands_to_msg(
    result: ImageHands,
    header: Header,
    hands: Sequence[Hand],
    track_ids: Sequence[int],
    depth_corrected: Sequence[bool],
    hand_model: str,
    model: str,
    inference_time_s: float,
    with_vertices: bool,
) -> HandArray:
    """All hands of one image as a HandArray, highest score first.

    `hands` are `result.hands` after any tracking, smoothing or depth correction, with one
    `track_ids` and `depth_corrected` entry each. `latency` is left 0: set it just before
    publishing.
    """
    if not len(hands) == len(track_ids) == len(depth_corrected):
        raise ValueError(
            f"hands, track_ids, depth_corrected: lengths differ ({len(hands)}, "
            f"{len(track_ids)}, {len(depth_corrected)})"
        )
    order = sorted(range(len(hands)), key=lambda i: -float(hands[i].score))
    msg = HandArray()
    msg.header = header
    msg.hands = [
        hand_to_msg(hands[i], track_ids[i], depth_corrected[i], with_vertices) for i in order
    ]
    msg.image_width, msg.image_height = (int(v) for v in result.image_size)
    msg.camera_matrix = np.asarray(result.camera_matrix, dtype=np.float64).reshape(9)
    msg.intrinsics_assumed = bool(result.intrinsics_assumed)
    msg.hand_model = hand_model
    msg.model = model
    msg.inference_time = float(inference_time_s)
    return msg
