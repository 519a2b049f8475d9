"""Publish test images (good or deliberately malformed) to a node, from a separate process.

Run as a script by the ROS tests:
    python image_publisher.py --topic /cam/image_raw --frames 20 --rate 30 --kind good
It waits until the topic has `--subscribers` subscribers, publishes CameraInfo (unless
`--no-info`) and the frames, then prints one JSON line: {"stamps": [[sec, nanosec], ...]}.
Frames of kind `good` show a bright blob on a dark background (deterministic per seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import cv2
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

KINDS = (
    "good",
    "compressed",
    "unknown_encoding",
    "step_size_mismatch",
    "truncated_data",
    "zero_size",
    "undecodable_compressed",
    "depth",
)


def make_image(width: int, height: int, seed: int) -> np.ndarray:
    """A BGR test image: noise plus a skin-coloured ellipse."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    centre = (width // 2 + int(rng.integers(-10, 10)), height // 2)
    cv2.ellipse(image, centre, (width // 6, height // 4), 0, 0, 360, (120, 160, 220), -1)
    return image


def image_message(kind: str, image: np.ndarray, encoding: str) -> Image | CompressedImage:
    height, width = image.shape[:2]
    if kind in ("compressed", "undecodable_compressed"):
        msg = CompressedImage(format="jpeg")
        if kind == "compressed":
            msg.data = cv2.imencode(".jpg", image)[1].tobytes()
        else:
            msg.data = b"\xff\xd8 this is not a jpeg"
        return msg
    if encoding == "rgb8":
        pixels = image[..., ::-1]
    elif encoding == "mono8":
        pixels = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    else:
        pixels = image
    pixels = np.ascontiguousarray(pixels)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels)
    data = pixels.tobytes()
    if kind == "unknown_encoding":
        msg.encoding = "yuv422_weird"
    elif kind == "step_size_mismatch":
        msg.step = width * channels - 1
    elif kind == "truncated_data":
        data = data[: len(data) // 2]
    elif kind == "zero_size":
        msg.width = 0
        msg.height = 0
        data = b""
    msg.data = data
    return msg


def depth_message(width: int, height: int, depth_m: float) -> Image:
    depth = np.full((height, width), round(depth_m * 1000.0), dtype=np.uint16)
    msg = Image(height=height, width=width, encoding="16UC1", step=width * 2)
    msg.data = depth.tobytes()
    return msg


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--info-topic", default="")
    parser.add_argument("--depth-topic", default="")
    parser.add_argument("--depth-m", type=float, default=0.6)
    parser.add_argument("--kind", choices=KINDS, default="good")
    parser.add_argument("--encoding", default="bgr8")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--frame-id", default="camera_optical_frame")
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--no-info", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("test_image_publisher")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    compressed = args.kind in ("compressed", "undecodable_compressed")
    topic = f"{args.topic}/compressed" if compressed else args.topic
    publisher = node.create_publisher(CompressedImage if compressed else Image, topic, qos)
    info_topic = args.info_topic or args.topic.rsplit("/", 1)[0] + "/camera_info"
    info_publisher = node.create_publisher(CameraInfo, info_topic, qos)
    depth_publisher = (
        node.create_publisher(Image, args.depth_topic, qos) if args.depth_topic else None
    )
    deadline = time.monotonic() + args.timeout
    while publisher.get_subscription_count() < args.subscribers:
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"no subscriber on {topic}"}), flush=True)
            return 2
        time.sleep(0.02)
    focal = float(args.width)
    info = CameraInfo(width=args.width, height=args.height)
    info.k = [focal, 0.0, args.width / 2.0, 0.0, focal, args.height / 2.0, 0.0, 0.0, 1.0]
    stamps = []
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    next_time = time.monotonic()
    for index in range(args.frames):
        image = make_image(args.width, args.height, args.seed + index)
        msg = image_message(args.kind, image, args.encoding)
        now = node.get_clock().now().to_msg()
        msg.header.stamp = now
        msg.header.frame_id = args.frame_id
        if not args.no_info:
            info.header = msg.header
            info_publisher.publish(info)
        if depth_publisher is not None:
            depth = depth_message(args.width, args.height, args.depth_m)
            depth.header = msg.header
            depth_publisher.publish(depth)
        publisher.publish(msg)
        stamps.append([now.sec, now.nanosec])
        next_time += period
        delay = next_time - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    # Give the middleware a moment to deliver the last reliable messages before exiting.
    time.sleep(0.3)
    print(json.dumps({"stamps": stamps}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
