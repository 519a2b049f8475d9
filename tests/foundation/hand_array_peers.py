"""Publisher and subscriber processes for the HandArray round-trip test.

Run as a script: `hand_array_peers.py publish TOPIC` or `hand_array_peers.py subscribe TOPIC OUT`.
"""

from __future__ import annotations

import array
import json
import struct
import sys
import time

import numpy as np


def make_hand_array(seed: int = 7, hands: int = 4):
    """A HandArray whose every field holds a distinct, seeded value."""
    from smhr_ros.msg import Hand, HandArray

    rng = np.random.default_rng(seed)
    msg = HandArray()
    msg.header.stamp.sec = 1_700_000_123
    msg.header.stamp.nanosec = 456_789_012
    msg.header.frame_id = "camera_color_optical_frame"
    msg.image_width = 640
    msg.image_height = 480
    msg.camera_matrix = rng.normal(size=9).astype(np.float64)
    msg.intrinsics_assumed = True
    msg.hand_model = "open_hand/1 sha256:0123456789abcdef"
    msg.model = "resnet18@384 test.pth"
    msg.inference_time = 0.0123
    msg.latency = 0.0456
    for i in range(hands):
        hand = Hand()
        hand.id = 1000 + i
        hand.score = float(rng.uniform())
        hand.handedness = Hand.LEFT if i % 2 == 0 else Hand.RIGHT
        hand.handedness_probability = float(rng.uniform())
        hand.joints = rng.normal(size=63).astype(np.float32)
        hand.keypoints = rng.uniform(0, 640, size=42).astype(np.float32)
        hand.global_orient = rng.normal(size=3).astype(np.float32)
        hand.hand_pose = rng.normal(size=45).astype(np.float32)
        hand.shape = rng.normal(size=10).astype(np.float32)
        hand.translation = rng.normal(size=3).astype(np.float32)
        hand.wrist_pose.position.x, hand.wrist_pose.position.y, hand.wrist_pose.position.z = (
            float(v) for v in rng.normal(size=3)
        )
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        (
            hand.wrist_pose.orientation.x,
            hand.wrist_pose.orientation.y,
            hand.wrist_pose.orientation.z,
            hand.wrist_pose.orientation.w,
        ) = (float(v) for v in q)
        hand.box = rng.uniform(0, 480, size=4).astype(np.float32)
        hand.depth_corrected = i == 2
        hand.vertices = rng.normal(size=778 * 3 if i != 3 else 0).astype(np.float32)
        msg.hands.append(hand)
    return msg


def to_plain(value, ros_type: str = ""):
    """A message as nested dicts/lists; floats as exact bit patterns of their ROS type (hex)."""
    if hasattr(value, "get_fields_and_field_types"):
        return {
            name: to_plain(getattr(value, name), kind)
            for name, kind in value.get_fields_and_field_types().items()
        }
    if isinstance(value, array.array):
        dtype = {"f": np.float32, "d": np.float64}[value.typecode]
        return to_plain(np.frombuffer(value.tobytes(), dtype=dtype))
    if isinstance(value, np.ndarray):
        if value.dtype in (np.float32, np.float64):
            return [f"{value.dtype}:" + v.tobytes().hex() for v in value]
        return [v.item() for v in value]
    if isinstance(value, (list, tuple)):
        element = ros_type.split("<", 1)[-1].rstrip(">") if "sequence<" in ros_type else ""
        return [to_plain(v, element) for v in value]
    if ros_type == "float":
        return "float32:" + np.float32(value).tobytes().hex()
    if ros_type == "double":
        return "float64:" + struct.pack("<d", float(value)).hex()
    return value


def publish(topic: str) -> int:
    import rclpy
    from smhr_ros.msg import HandArray

    rclpy.init()
    node = rclpy.create_node("hand_array_publisher")
    pub = node.create_publisher(HandArray, topic, 10)
    msg = make_hand_array()
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        if pub.get_subscription_count() > 0:
            pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
    return 0


def subscribe(topic: str, out: str) -> int:
    import rclpy
    from smhr_ros.msg import HandArray

    rclpy.init()
    node = rclpy.create_node("hand_array_subscriber")
    received = []
    node.create_subscription(HandArray, topic, received.append, 10)
    deadline = time.monotonic() + 60.0
    while not received and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not received:
        return 3
    with open(out, "w") as f:
        json.dump(to_plain(received[0]), f)
    return 0


if __name__ == "__main__":
    mode = sys.argv[1]
    sys.exit(publish(sys.argv[2]) if mode == "publish" else subscribe(sys.argv[2], sys.argv[3]))
