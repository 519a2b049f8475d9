"""sensor_msgs images to numpy and back, with or without cv_bridge.

cv_bridge is not on PyPI, so the conversion must work without it; where it is installed (a ROS
workspace) it converts the 8-bit colour encodings after the checks below. Every malformed image
raises `ImageConversionError` whose `kind` names the problem, so a node can count and log each
kind once.
"""

from __future__ import annotations

import importlib
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

COLOR_ENCODINGS = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1),
}
"""Encodings accepted as colour input: numpy dtype and channels."""

DEPTH_ENCODINGS = {"16UC1": (np.uint16, 1), "32FC1": (np.float32, 1)}
"""Depth encodings: 16UC1 in millimetres, 32FC1 in metres."""

UNKNOWN_ENCODING = "unknown_encoding"
STEP_SIZE_MISMATCH = "step_size_mismatch"
TRUNCATED_DATA = "truncated_data"
ZERO_SIZE = "zero_size"
UNDECODABLE = "undecodable_compressed"
ERROR_KINDS = (UNKNOWN_ENCODING, STEP_SIZE_MISMATCH, TRUNCATED_DATA, ZERO_SIZE, UNDECODABLE)


class ImageConversionError(ValueError):
    """An image message that cannot be converted; `kind` is one of `ERROR_KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _cv_bridge() -> Any | None:
    try:
        module = importlib.import_module("cv_bridge")
    except ImportError:
        return None
    return module.CvBridge()


_BRIDGE = _cv_bridge()


def _checked_array(msg: Image, encodings: dict[str, tuple[Any, int]]) -> np.ndarray:
    """The pixels of `msg` as an (H, W, C) array of the encoding's dtype, after size checks."""
    if msg.width == 0 or msg.height == 0:
        raise ImageConversionError(
            ZERO_SIZE, f"image is {msg.width} x {msg.height} pixels (encoding {msg.encoding!r})"
        )
    if msg.encoding not in encodings:
        raise ImageConversionError(
            UNKNOWN_ENCODING,
            f"image encoding {msg.encoding!r} is not supported; use one of {list(encodings)}",
        )
    dtype, channels = encodings[msg.encoding]
    pixel_bytes = np.dtype(dtype).itemsize * channels
    row_bytes = msg.width * pixel_bytes
    if msg.step < row_bytes:
        raise ImageConversionError(
            STEP_SIZE_MISMATCH,
            f"image step {msg.step} bytes is less than width {msg.width} x {pixel_bytes} bytes "
            f"per {msg.encoding} pixel = {row_bytes}",
        )
    expected = msg.step * msg.height
    size = len(msg.data)
    if size < expected:
        raise ImageConversionError(
            TRUNCATED_DATA,
            f"image data has {size} bytes, expected step {msg.step} x height {msg.height} = "
            f"{expected}",
        )
    if size > expected:
        raise ImageConversionError(
            STEP_SIZE_MISMATCH,
            f"image data has {size} bytes, more than step {msg.step} x height {msg.height} = "
            f"{expected}",
        )
    order = ">" if msg.is_bigendian else "<"
    raw = np.frombuffer(memoryview(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    rows = raw[:, :row_bytes]
    return rows.view(np.dtype(dtype).newbyteorder(order)).reshape(msg.height, msg.width, channels)


def image_to_bgr(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, mono16) -> (H, W, 3) uint8 BGR.

    mono16 keeps its 8 most significant bits. Raises `ImageConversionError`.
    """
    pixels = _checked_array(msg, COLOR_ENCODINGS)
    if _BRIDGE is not None and msg.encoding != "mono16":
        return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="bgr8"))
    encoding = msg.encoding
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding == "bgra8":
        return np.ascontiguousarray(pixels[..., :3])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[..., 2::-1])
    if encoding == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))


def compressed_to_bgr(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...) -> (H, W, 3) uint8 BGR.

    Raises `ImageConversionError` (kind `zero_size` for empty data, `undecodable_compressed`
    when OpenCV cannot decode it).
    """
    if len(msg.data) == 0:
        raise ImageConversionError(ZERO_SIZE, f"compressed image ({msg.format!r}) has no data")
    buffer = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageConversionError(
            UNDECODABLE,
            f"compressed image of format {msg.format!r} ({len(msg.data)} bytes) could not be "
            "decoded",
        )
    return image


def depth_to_metres(msg: Image) -> np.ndarray:
    """Depth image (16UC1 millimetres or 32FC1 metres) -> (H, W) float32 metres.

    Pixels without a measurement (0, NaN, inf, negative) become NaN. Raises
    `ImageConversionError`.
    """
    pixels = _checked_array(msg, DEPTH_ENCODINGS)[..., 0]
    if msg.encoding == "16UC1":
        depth = pixels.astype(np.float32) * np.float32(0.001)
    else:
        depth = pixels.astype(np.float32)
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def bgr_to_image(image_bgr: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 BGR -> sensor_msgs/Image (bgr8) with `header`."""
    image = np.ascontiguousarray(image_bgr, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_bgr: expected an (H, W, 3) array, got shape {image.shape}")
    height, width = image.shape[:2]
    msg = Image(
        header=header,
        height=height,
        width=width,
        encoding="bgr8",
        is_bigendian=0,
        step=width * 3,
    )
    msg.data = image.tobytes()
    return msg
