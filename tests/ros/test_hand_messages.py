"""ImageHands -> HandArray: every field, the order, and the wrist pose."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from scipy.spatial.transform import Rotation
from smhr_ros.msg import Hand as HandMsg
from smhr_ros.msg import HandArray
from std_msgs.msg import Header

from smhr_core.results import ImageHands
from smhr_ros.hand_messages import axis_angle_to_quaternion, image_hands_to_msg


def test_quaternion_matches_the_rotation() -> None:
    rotvec = np.array([0.3, -1.2, 0.5])
    q = axis_angle_to_quaternion(rotvec)
    matrix = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    np.testing.assert_allclose(matrix, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-12)
    assert axis_angle_to_quaternion(np.zeros(3)).w == 1.0


def test_image_hands_become_a_hand_array(make_hand, camera_matrix) -> None:
    low = make_hand((-0.1, 0.0, 0.6), is_right=False, score=0.4, global_orient=(0.1, 0.2, 0.3))
    high = make_hand((0.1, 0.0, 0.6), is_right=True, score=0.9)
    result = ImageHands(
        hands=(low, high),
        image_size=(640, 480),
        camera_matrix=camera_matrix,
        intrinsics_assumed=False,
    )
    header = Header(stamp=Time(sec=12, nanosec=345), frame_id="cam_optical")
    msg = image_hands_to_msg(
        result,
        header,
        [low, high],
        [7, 3],
        [True, False],
        "open_hand/1 x",
        "resnet18@128 m.pth",
        0.02,
        True,
    )
    msg = deserialize_message(serialize_message(msg), HandArray)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
        12,
        345,
        "cam_optical",
    )
    assert (msg.image_width, msg.image_height) == (640, 480)
    np.testing.assert_array_equal(msg.camera_matrix, camera_matrix.reshape(9))
    assert msg.intrinsics_assumed is False
    assert (msg.hand_model, msg.model) == ("open_hand/1 x", "resnet18@128 m.pth")
    assert msg.inference_time == pytest.approx(0.02)
    first, second = msg.hands
    assert (first.id, first.handedness, first.depth_corrected) == (3, HandMsg.RIGHT, False)
    assert (second.id, second.handedness, second.depth_corrected) == (7, HandMsg.LEFT, True)
    assert second.score == pytest.approx(0.4)
    np.testing.assert_allclose(second.joints, low.joints_m.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(second.keypoints, low.keypoints_px.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(second.global_orient, [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(second.translation, low.translation_m, rtol=1e-6)
    np.testing.assert_allclose(second.box, low.box_px, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(second.vertices), low.vertices_m.reshape(-1), rtol=1e-6)
    assert len(second.vertices) == HandMsg.NUM_VERTICES * 3
    p = second.wrist_pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], low.joints_m[0], rtol=1e-6)
    q = second.wrist_pose.orientation
    np.testing.assert_allclose(
        Rotation.from_quat([q.x, q.y, q.z, q.w]).as_rotvec(), [0.1, 0.2, 0.3], atol=1e-6
    )


def test_vertices_are_left_out_on_request_and_lengths_must_agree(make_hand, camera_matrix) -> None:
    hand = make_hand()
    result = ImageHands((hand,), (640, 480), camera_matrix, True)
    msg = image_hands_to_msg(result, Header(), [hand], [0], [False], "m", "n", 0.0, False)
    assert len(msg.hands[0].vertices) == 0 and msg.intrinsics_assumed is True
    with pytest.raises(ValueError, match="lengths differ"):
        image_hands_to_msg(result, Header(), [hand], [0, 1], [False], "m", "n", 0.0, True)
