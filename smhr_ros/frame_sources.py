"""Where camera_node's frames come from: a video file, an image folder, a V4L2 device or the
bundled demo sequence.

Every source yields `(H, W, 3)` uint8 BGR frames and proposes intrinsics for them. Pixel
coordinates follow the project's convention (origin at the top-left corner of the top-left
pixel), so the image centre is `(W / 2, H / 2)`.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from smhr_ros.demo_sequence import DemoSequenceError, load_demo_sequence

DEMO_SOURCE = "demo"
"""The `source` value that selects the bundled demo sequence."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
"""File name endings (case-insensitive) read from an image folder."""

DEFAULT_HORIZONTAL_FOV_DEG = 60.0
"""Field of view assumed for a video file, image folder or device without given intrinsics."""

_DEVICE_NUMBER = re.compile(r"^\d+$")


class SourceError(ValueError):
    """A source cannot be opened: the message names it and what is wrong."""


class FrameReadError(RuntimeError):
    """One frame could not be read (e.g. a corrupt file in a folder); the next one may work."""


def assumed_camera_matrix(width: int, height: int) -> np.ndarray:
    """(3, 3) intrinsics of a `DEFAULT_HORIZONTAL_FOV_DEG` pinhole camera, pixels.

    fx = fy = (W / 2) / tan(FOV / 2), principal point at the image centre (W / 2, H / 2).
    """
    focal = (width / 2.0) / math.tan(math.radians(DEFAULT_HORIZONTAL_FOV_DEG) / 2.0)
    return np.array(
        [[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64
    )


class FrameSource(ABC):
    """A sequence of BGR frames."""

    description: str
    """What the source is, for log messages (e.g. "video file /data/hands.mp4")."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame, (H, W, 3) uint8 BGR; None at the end of the source.

        Raises `FrameReadError` when this frame cannot be read but later ones may be.
        """

    def rewind(self) -> bool:
        """Start again from the first frame; False when the source cannot (a live device)."""
        return False

    def camera_matrix(self, width: int, height: int) -> np.ndarray:
        """(3, 3) float64 intrinsics proposed for a `width` x `height` frame, pixels."""
        return assumed_camera_matrix(width, height)

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release the file or device."""


def _natural_key(path: Path) -> list[object]:
    # "frame2.png" before "frame10.png": digit runs compare as numbers.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource(FrameSource):
    """The images of a folder, in natural name order (frame2 before frame10)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=_natural_key,
        )
        if not self.files:
            raise SourceError(
                f"image folder {folder} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        self.description = f"image folder {folder} ({len(self.files)} images)"
        self._next = 0

    def read(self) -> np.ndarray | None:
        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        self._next += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameReadError(f"cannot read image {path} (not an image OpenCV can decode)")
        return image

    def rewind(self) -> bool:
        self._next = 0
        return True


class DemoSource(ImageFolderSource):
    """The bundled demo sequence, with the intrinsics it was rendered with."""

    def __init__(self) -> None:
        try:
            sequence = load_demo_sequence()
        except DemoSequenceError as error:
            raise SourceError(str(error)) from error
        self.folder = sequence.directory
        self.files = [frame.path for frame in sequence.frames]
        self.description = (
            f"bundled demo sequence {sequence.directory} ({len(self.files)} frames, "
            f"{sequence.image_size[0]}x{sequence.image_size[1]})"
        )
        self._image_size = sequence.image_size
        self._camera_matrix = sequence.camera_matrix
        self._next = 0

    def camera_matrix(self, width: int, height: int) -> np.ndarray:
        if (width, height) != self._image_size:
            return assumed_camera_matrix(width, height)
        return self._camera_matrix.copy()


class VideoFileSource(FrameSource):
    """A video file read with OpenCV."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise SourceError(f"cannot open video file {path} (not a video OpenCV can read)")
        frames = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.description = f"video file {path}" + (f" ({frames} frames)" if frames > 0 else "")

    def read(self) -> np.ndarray | None:
        ok, image = self._capture.read()
        return image if ok else None

    def rewind(self) -> bool:
        return bool(self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        self._capture.release()


class DeviceSource(FrameSource):
    """A V4L2 video device (/dev/videoN) read with OpenCV."""

    def __init__(self, device: Path) -> None:
        self.device = device
        if not device.exists():
            raise SourceError(f"video device {device} does not exist")
        self._capture = cv2.VideoCapture(str(device), cv2.CAP_V4L2)
        if not self._capture.isOpened():
            raise SourceError(
                f"cannot open video device {device} (busy, no permission, or not a capture device)"
            )
        self.description = f"video device {device}"

    def read(self) -> np.ndarray | None:
        ok, image = self._capture.read()
        if not ok:
            raise FrameReadError(f"video device {self.device} returned no frame")
        return image

    def close(self) -> None:
        self._capture.release()


def open_source(source: str) -> FrameSource:
    """Open `source`: 'demo', a video file, an image folder, '/dev/videoN' or a device number N.

    Raises `SourceError` naming the source when it does not exist or cannot be opened.
    """
    if source == DEMO_SOURCE:
        return DemoSource()
    if _DEVICE_NUMBER.match(source):
        return DeviceSource(Path(f"/dev/video{source}"))
    path = Path(source).expanduser()
    if source.startswith("/dev/video"):
        return DeviceSource(path)
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        return VideoFileSource(path)
    raise SourceError(
        f"source {source!r} does not exist (give '{DEMO_SOURCE}', a video file, an image folder, "
        "/dev/videoN or a device number)"
    )
