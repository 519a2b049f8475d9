"""camera_node: frame sources, and the node publishing them over real DDS from a child process."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image

from smhr_ros.demo_sequence import DemoSequenceError, load_demo_sequence
from smhr_ros.frame_sources import (
    DemoSource,
    FrameReadError,
    ImageFolderSource,
    SourceError,
    VideoFileSource,
    assumed_camera_matrix,
    open_source,
)

NODE = "import sys; from smhr_ros.camera_node import main; sys.exit(main())"
COLOURS = ((10, 20, 200), (30, 180, 40), (220, 60, 90), (90, 90, 90))
"""BGR fill of the test images, in the order camera_node must publish them."""


def _folder(root: Path, names: tuple[str, ...], size: tuple[int, int] = (64, 48)) -> Path:
    """Images filled with COLOURS[i] under names[i] (lossless PNG)."""
    root.mkdir()
    for name, colour in zip(names, COLOURS, strict=False):
        image = np.full((size[1], size[0], 3), colour, dtype=np.uint8)
        assert cv2.imwrite(str(root / name), image)
    return root


def _run_camera(
    parameters: dict[str, str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    """Run camera_node to its end in a child process (cwd: not the source tree)."""
    args = [arg for name, value in parameters.items() for arg in ("-p", f"{name}:={value}")]
    return subprocess.run(
        [sys.executable, "-c", NODE, "--ros-args", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- frame sources (no ROS) ----------------------------------------------------------------


def test_folder_is_read_in_natural_order_and_rewinds(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "f", ("frame10.png", "frame2.png", "Frame1.png"))
    (folder / "notes.txt").write_text("not an image")
    source = open_source(str(folder))
    assert isinstance(source, ImageFolderSource)
    assert [p.name for p in source.files] == ["Frame1.png", "frame2.png", "frame10.png"]
    first = [tuple(source.read()[0, 0]) for _ in range(3)]
    assert first == [COLOURS[2], COLOURS[1], COLOURS[0]]
    assert source.read() is None
    assert source.rewind()
    assert tuple(source.read()[0, 0]) == COLOURS[2]


def test_unreadable_image_raises_frame_read_error_and_the_next_one_is_read(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path / "f", ("a.png", "c.png"))
    (folder / "b.png").write_bytes(b"\x89PNG but truncated")
    source = ImageFolderSource(folder)
    assert tuple(source.read()[0, 0]) == COLOURS[0]
    with pytest.raises(FrameReadError, match=r"b\.png"):
        source.read()
    assert tuple(source.read()[0, 0]) == COLOURS[1]


def test_video_file_frames_and_rewind(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for value in (40, 120, 200):
        writer.write(np.full((48, 64, 3), value, dtype=np.uint8))
    writer.release()
    source = open_source(str(path))
    assert isinstance(source, VideoFileSource)
    means = [float(source.read().mean()) for _ in range(3)]
    assert source.read() is None
    assert means == pytest.approx([40, 120, 200], abs=4)
    assert source.rewind()
    assert float(source.read().mean()) == pytest.approx(40, abs=4)
    source.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: str(p / "missing.mp4"), "does not exist"),
        (lambda p: str(p), "holds no images"),
        (lambda p: (p / "x.mp4").write_bytes(b"not a video") and str(p / "x.mp4"), "cannot open"),
        (lambda p: "/dev/video93", "video device /dev/video93 does not exist"),
        (lambda p: "93", "video device /dev/video93 does not exist"),
    ],
)
def test_bad_sources_raise_source_error_naming_them(tmp_path: Path, make, message: str) -> None:
    spec = make(tmp_path)
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_assumed_intrinsics_are_a_60_degree_camera_centred_on_the_image() -> None:
    k = assumed_camera_matrix(640, 480)
    assert k[0, 0] == k[1, 1] == pytest.approx(320.0 / math.tan(math.radians(30.0)))
    assert (k[0, 2], k[1, 2]) == (320.0, 240.0)


def test_bundled_demo_sequence_is_complete_and_consistent() -> None:
    sequence = load_demo_sequence()
    assert sequence.image_size == (320, 240)
    assert len(sequence.frames) == 48
    counts = [len(f.hands) for f in sequence.frames]
    assert min(counts) == 1 and max(counts) == 3
    k = sequence.camera_matrix
    for frame in sequence.frames:
        image = cv2.imread(str(frame.path))
        assert image.shape == (240, 320, 3)
        for hand in frame.hands:
            projected = hand.joints_m @ k.T
            np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], hand.keypoints_px,
                                       atol=2e-3)  # fmt: skip
            assert np.all(hand.keypoints_px >= 0) and np.all(hand.keypoints_px < (320, 240))
            length = np.linalg.norm(hand.joints_m[12] - hand.joints_m[0])
            assert 0.08 < length < 0.25  # wrist to middle tip of a hand, metres
    total = sum(p.stat().st_size for p in sequence.directory.rglob("*") if p.is_file())
    assert total < 3e6
    source = DemoSource()
    np.testing.assert_array_equal(source.camera_matrix(320, 240), k)


def test_demo_sequence_errors_name_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(DemoSequenceError, match="labels not found"):
        load_demo_sequence(tmp_path)
    labels = json.loads((load_demo_sequence().directory / "labels.json").read_text())
    del labels["frames"][3]["hands"][0]["joints_m"]
    (tmp_path / "frames").mkdir()
    for frame in labels["frames"]:
        (tmp_path / frame["file"]).write_bytes(b"")
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(
        DemoSequenceError, match=r"frames\[3\]\.hands\[0\]: missing field 'joints_m'"
    ):
        load_demo_sequence(tmp_path)


# --- the node over DDS ----------------------------------------------------------------------


def test_publishes_every_image_of_a_folder_with_header_encoding_and_k(ros, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "frames", ("b10.png", "b2.png", "b1.png"), size=(64, 48))
    images: list[Image] = []
    infos: list[CameraInfo] = []
    ros.node.create_subscription(Image, "/cam/image_raw", images.append, QoSProfile(depth=20))
    ros.node.create_subscription(CameraInfo, "/cam/camera_info", infos.append, QoSProfile(depth=20))
    done = _run_camera(
        {
            "source": str(folder),
            "rate_hz": "20.0",
            "frame_id": "test_optical",
            "image_topic": "/cam/image_raw",
            "camera_info_topic": "/cam/camera_info",
            "fx": "100.0",
            "wait_for_subscribers": "1",
        },
        ros.env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "published 3 frames; stopping (end of the source)" in done.stderr
    assert ros.spin_until(lambda: len(images) == 3 and len(infos) == 3, 10.0)
    assumed = assumed_camera_matrix(64, 48)
    for image, info, colour in zip(images, infos, COLOURS[2::-1], strict=True):
        assert image.header.frame_id == info.header.frame_id == "test_optical"
        assert image.header.stamp == info.header.stamp
        assert (image.width, image.height, image.encoding, image.step) == (64, 48, "bgr8", 192)
        pixels = np.frombuffer(image.data, dtype=np.uint8).reshape(48, 64, 3)
        assert tuple(pixels[10, 10]) == colour
        assert (info.width, info.height) == (64, 48)
        k = np.asarray(info.k).reshape(3, 3)
        np.testing.assert_allclose(k, [[100.0, 0, 32.0], [0, assumed[1, 1], 24.0], [0, 0, 1]])
        np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3], k)
        assert list(info.d) == [0.0] * 5
    stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in images]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_loops_until_max_frames_in_rgb8(ros, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "frames", ("a.png", "b.png"))
    images: list[Image] = []
    ros.node.create_subscription(Image, "/camera/image_raw", images.append, QoSProfile(depth=20))
    ros.node.create_subscription(CameraInfo, "/camera/camera_info", lambda m: None, 20)
    done = _run_camera(
        {
            "source": str(folder),
            "rate_hz": "30.0",
            "loop": "true",
            "max_frames": "5",
            "encoding": "rgb8",
            "wait_for_subscribers": "1",
        },
        ros.env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert ros.spin_until(lambda: len(images) == 5, 10.0)
    firsts = [tuple(np.frombuffer(m.data, dtype=np.uint8)[:3]) for m in images]
    rgb = [tuple(reversed(c)) for c in COLOURS[:2]]
    assert firsts == [rgb[0], rgb[1], rgb[0], rgb[1], rgb[0]]
    assert {m.encoding for m in images} == {"rgb8"} and {m.step for m in images} == {192}


def test_demo_source_publishes_the_true_intrinsics(ros, tmp_path: Path) -> None:
    infos: list[CameraInfo] = []
    ros.node.create_subscription(
        CameraInfo, "/camera/camera_info", infos.append, QoSProfile(depth=20)
    )
    ros.node.create_subscription(Image, "/camera/image_raw", lambda m: None, QoSProfile(depth=5))
    done = _run_camera(
        {"max_frames": "2", "rate_hz": "20.0", "wait_for_subscribers": "1"}, ros.env, tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert ros.spin_until(lambda: len(infos) == 2, 10.0)
    sequence = load_demo_sequence()
    assert (infos[0].width, infos[0].height) == sequence.image_size
    np.testing.assert_allclose(np.asarray(infos[0].k).reshape(3, 3), sequence.camera_matrix)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"source": "/nonexistent/clip.mp4"}, "source '/nonexistent/clip.mp4' does not exist"),
        ({"source": "/dev/video97"}, "video device /dev/video97 does not exist"),
        ({"rate_hz": "10"}, "parameter 'rate_hz': 10 has the wrong type"),
        ({"encoding": "yuv422"}, "parameter 'encoding': 'yuv422' is not one of"),
        ({"sourse": "demo"}, "unknown parameter(s) ['sourse']"),
    ],
)
def test_bad_start_is_one_error_line_and_a_non_zero_exit(
    ros_env: dict[str, str], tmp_path: Path, parameters: dict[str, str], message: str
) -> None:
    done = _run_camera(parameters, ros_env, tmp_path)
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert message in lines[0] and "cannot start" in lines[0]
