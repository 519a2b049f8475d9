"""camera_node: publish frames of a video file, an image folder, a V4L2 device or the bundled
demo sequence as sensor_msgs/Image + sensor_msgs/CameraInfo at a chosen rate.

Run it with `ros2 run smhr_ros camera_node --ros-args -p source:=/data/hands.mp4` (or the
`camera_node` console script after `pip install`). `source` is 'demo' (the default: the bundled
sequence of synthetic hands, with the intrinsics it was rendered with), a video file, an image
folder (images in natural name order), '/dev/videoN' or a device number N.

Each frame is published on `image_topic` and its CameraInfo (same header) on
`camera_info_topic`; the stamp is the time of publication. Intrinsics not given (fx, fy, cx,
cy = 0) come from the source: the demo sequence's true K, otherwise a 60-degree horizontal field
of view centred on the image. The node stops by itself, with exit code 0, after `max_frames`
frames or at the end of a file source when `loop` is false. A source that does not exist or
cannot be opened, or an invalid parameter, is reported in one error line with exit code 1; so is
a source that stops delivering frames (a device that fails to read many times in a row).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import cv2
import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from smhr_core.config import ConfigError
from smhr_ros.frame_sources import DEMO_SOURCE, FrameReadError, SourceError, open_source
from smhr_ros.node_parameters import ParameterSpec, declare_parameters
from smhr_ros.spinning import spin_until

NODE_NAME = "camera_node"
ENCODINGS = ("bgr8", "rgb8", "mono8")
QOS_PROFILES = ("reliable", "sensor_data")
_QUEUE_DEPTH = 5
_ACK_TIMEOUT_S = 2.0
_MAX_CONSECUTIVE_READ_ERRORS = 25

PARAMETERS = (
    ParameterSpec(
        "source",
        DEMO_SOURCE,
        "What to publish: 'demo' (the bundled synthetic sequence), a video file, an image folder "
        "(natural name order), '/dev/videoN' or a device number N.",
    ),
    ParameterSpec("rate_hz", 10.0, "Frames published per second.", range=(0.01, 1000.0)),
    ParameterSpec(
        "frame_id", "camera_optical_frame", "header.frame_id of the images and CameraInfo."
    ),
    ParameterSpec(
        "loop",
        False,
        "Start again at the end of a file source (video, folder, demo) instead of stopping.",
    ),
    ParameterSpec(
        "max_frames",
        0,
        "Stop after publishing this many frames; 0: no limit.",
        range=(0, 2**31 - 1),
    ),
    ParameterSpec(
        "fx",
        0.0,
        "Focal length along u, pixels; 0: the source's (demo: its true K, otherwise a 60-degree "
        "horizontal field of view).",
        range=(0.0, 1e6),
    ),
    ParameterSpec("fy", 0.0, "Focal length along v, pixels; 0: the source's.", range=(0.0, 1e6)),
    ParameterSpec(
        "cx", 0.0, "Principal point u, pixels; 0: the source's (image centre).", range=(0.0, 1e6)
    ),
    ParameterSpec(
        "cy", 0.0, "Principal point v, pixels; 0: the source's (image centre).", range=(0.0, 1e6)
    ),
    ParameterSpec("image_topic", "/camera/image_raw", "Topic of the sensor_msgs/Image frames."),
    ParameterSpec(
        "camera_info_topic", "/camera/camera_info", "Topic of the sensor_msgs/CameraInfo."
    ),
    ParameterSpec("encoding", "bgr8", "Encoding of the published images.", choices=ENCODINGS),
    ParameterSpec(
        "qos",
        "reliable",
        "QoS of both publishers: 'reliable' or 'sensor_data' (best effort).",
        choices=QOS_PROFILES,
    ),
    ParameterSpec(
        "wait_for_subscribers",
        0,
        "Before the first frame, wait until this many subscriptions listen on image_topic and "
        "on camera_info_topic (so that nothing is lost while they start); 0: start at once.",
        range=(0, 1000),
    ),
)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def image_message(image_bgr: np.ndarray, header: Header, encoding: str) -> Image:
    """(H, W, 3) uint8 BGR -> sensor_msgs/Image in `encoding` (bgr8, rgb8 or mono8)."""
    if encoding == "bgr8":
        pixels = image_bgr
    elif encoding == "rgb8":
        pixels = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    elif encoding == "mono8":
        pixels = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    else:
        raise ValueError(f"encoding {encoding!r} is not one of {list(ENCODINGS)}")
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    msg = Image(
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
    )
    msg.data = pixels.tobytes()
    return msg


def camera_info_message(header: Header, width: int, height: int, k: np.ndarray) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera with intrinsics `k` (3x3, pixels)."""
    k = np.asarray(k, dtype=np.float64)
    projection = np.zeros((3, 4))
    projection[:, :3] = k
    return CameraInfo(
        header=header,
        width=width,
        height=height,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=[float(v) for v in k.ravel()],
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[float(v) for v in projection.ravel()],
    )


class CameraNode(Node):
    """Publishes the frames of one source (see the module docstring).

    Raises `ConfigError` for an invalid parameter and `SourceError` for a source that does not
    exist or cannot be opened.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.settings = declare_parameters(self, PARAMETERS)
        settings = self.settings
        self.source = open_source(settings["source"])
        qos = (
            qos_profile_sensor_data
            if settings["qos"] == "sensor_data"
            else QoSProfile(depth=_QUEUE_DEPTH)
        )
        self._image_pub = self.create_publisher(Image, settings["image_topic"], qos)
        self._info_pub = self.create_publisher(CameraInfo, settings["camera_info_topic"], qos)
        self.published = 0
        self.unreadable = 0
        self.finished = False
        self.error: str | None = None
        self._waiting = settings["wait_for_subscribers"] > 0
        self._timer = self.create_timer(1.0 / settings["rate_hz"], self._tick)
        self.get_logger().info(
            f"publishing {self.source.description} at {settings['rate_hz']:g} Hz on "
            f"{self._image_pub.topic_name} and {self._info_pub.topic_name} "
            f"(frame_id '{settings['frame_id']}', {settings['encoding']})"
        )

    def camera_matrix(self, width: int, height: int) -> np.ndarray:
        """The source's intrinsics for this frame size with the given fx, fy, cx, cy applied."""
        k = self.source.camera_matrix(width, height)
        for name, (row, col) in (("fx", (0, 0)), ("fy", (1, 1)), ("cx", (0, 2)), ("cy", (1, 2))):
            if self.settings[name] > 0.0:
                k[row, col] = self.settings[name]
        return k

    def _next_frame(self) -> np.ndarray | None:
        """The next readable frame, rewinding once at the end when looping; None at the end."""
        rewound = False
        failures = 0
        while True:
            try:
                image = self.source.read()
            except FrameReadError as error:
                self.unreadable += 1
                failures += 1
                if failures >= _MAX_CONSECUTIVE_READ_ERRORS:
                    raise SourceError(
                        f"{failures} frames in a row could not be read; last: {_one_line(error)}"
                    ) from None
                self.get_logger().warning(f"skipping a frame: {_one_line(error)}")
                continue
            if image is not None:
                return image
            if not self.settings["loop"] or rewound or not self.source.rewind():
                return None
            rewound = True

    def _tick(self) -> None:
        if self.finished:
            return
        if self._waiting:
            wanted = self.settings["wait_for_subscribers"]
            if min(p.get_subscription_count() for p in (self._image_pub, self._info_pub)) < wanted:
                return
            self._waiting = False
        limit = self.settings["max_frames"]
        try:
            image = self._next_frame()
        except SourceError as error:
            self.error = _one_line(error)
            self.get_logger().error(f"stopping: {self.error}")
            self._finish("the source failed")
            return
        if image is None:
            self._finish("end of the source")
            return
        height, width = image.shape[:2]
        header = Header(frame_id=self.settings["frame_id"])
        header.stamp = self.get_clock().now().to_msg()
        # CameraInfo first: a node that pairs each image with the latest CameraInfo then has it.
        self._info_pub.publish(
            camera_info_message(header, width, height, self.camera_matrix(width, height))
        )
        self._image_pub.publish(image_message(image, header, self.settings["encoding"]))
        self.published += 1
        if limit and self.published >= limit:
            self._finish(f"max_frames={limit} reached")

    def _finish(self, reason: str) -> None:
        self.finished = True
        self._timer.cancel()
        self.get_logger().info(f"published {self.published} frames; stopping ({reason})")

    def flush(self) -> None:
        """Wait (boundedly) until reliable subscribers acknowledged the last frames."""
        if self.settings["qos"] == "reliable":
            timeout = Duration(seconds=_ACK_TIMEOUT_S)
            self._image_pub.wait_for_all_acked(timeout)
            self._info_pub.wait_for_all_acked(timeout)

    def destroy_node(self) -> None:
        """Release the source, then destroy the node."""
        source = getattr(self, "source", None)
        if source is not None:
            source.close()
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    """Console entry point: publish until the source ends or max_frames; returns the exit code."""
    rclpy.init(args=args)
    try:
        node = CameraNode()
    except (ConfigError, SourceError) as error:
        rclpy.logging.get_logger(NODE_NAME).error(f"cannot start: {_one_line(error)}")
        rclpy.try_shutdown()
        return 1
    try:
        if spin_until(node, lambda: node.finished):
            node.flush()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 1 if node.error else 0


if __name__ == "__main__":
    sys.exit(main())
