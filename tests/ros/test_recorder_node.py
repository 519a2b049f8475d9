"""recorder_node in a child process, fed real HandArray and overlay messages over DDS."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from smhr_ros.msg import HandArray
from std_msgs.msg import Header

from smhr_core.results import ImageHands
from smhr_ros.hand_messages import image_hands_to_msg
from smhr_ros.image_conversion import bgr_to_image

NODE = "import sys; from smhr_ros.recorder_node import main; sys.exit(main())"
LINE = re.compile(r"^frame (\d+): (\d+) hands?( \[[^\]]*\])? latency (\d+) ms$")


@pytest.fixture
def start_recorder(ros, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start recorder_node in a child process (killed at the end of the test if still alive)."""
    processes = []

    def start(out: Path, **parameters: str) -> subprocess.Popen:
        values = {"output_dir": str(out), "hands_topic": "/t/hands", "overlay_topic": "/t/overlay"}
        values.update(parameters)
        args = [arg for name, value in values.items() for arg in ("-p", f"{name}:={value}")]
        process = subprocess.Popen(
            [sys.executable, "-c", NODE, "--ros-args", *args],
            env=ros.env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _wait_for_subscriptions(ros, publishers) -> None:
    assert ros.spin_until(lambda: all(p.get_subscription_count() >= 1 for p in publishers), 30.0), (
        "recorder_node did not subscribe"
    )


def _header(ros, frame_id: str = "cam_optical") -> Header:
    header = Header(frame_id=frame_id)
    header.stamp = ros.node.get_clock().now().to_msg()
    return header


def _overlay(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_records_frames_overlays_and_summary(
    ros, start_recorder, tmp_path: Path, make_hand, camera_matrix
) -> None:
    out = tmp_path / "rec"
    process = start_recorder(out, max_frames="3")
    hands_pub = ros.node.create_publisher(HandArray, "/t/hands", QoSProfile(depth=10))
    overlay_pub = ros.node.create_publisher(Image, "/t/overlay", QoSProfile(depth=10))
    _wait_for_subscriptions(ros, (hands_pub, overlay_pub))
    right = make_hand(wrist_m=(0.05, 0.02, 0.6), is_right=True, score=0.93)
    left = make_hand(wrist_m=(-0.1, 0.03, 0.7), is_right=False, score=0.88)
    frames = [(right, left), (), (left,)]
    sent = []
    for index, hands in enumerate(frames):
        header = _header(ros)
        result = ImageHands(hands, (640, 480), camera_matrix, intrinsics_assumed=False)
        msg = image_hands_to_msg(
            result, header, hands, [7 + i for i in range(len(hands))], [False] * len(hands),
            "open_hand/1 test", "resnet18@128 test", 0.02, with_vertices=False,
        )  # fmt: skip
        msg.latency = 0.05
        overlay = bgr_to_image(_overlay(index), header)
        if index == 1:
            overlay_pub.publish(overlay)  # the overlay may come before its HandArray
            ros.spin_for(0.2)
            hands_pub.publish(msg)
        else:
            hands_pub.publish(msg)
            overlay_pub.publish(overlay)
        sent.append(header.stamp)
        ros.spin_for(0.1)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    lines = [line for line in stdout.splitlines() if line.startswith("frame ")]
    assert [LINE.match(line) is not None for line in lines] == [True] * 3, lines
    assert lines[0].startswith("frame 1: 2 hands [R 0.93, L 0.88] latency ")
    assert lines[1].startswith("frame 2: 0 hands latency ")
    assert lines[2].startswith("frame 3: 1 hand [L 0.88] latency ")
    assert f"output: {out}" in stdout

    summary = json.loads((out / "summary.json").read_text())
    totals = summary["totals"]
    assert totals["frames"] == 3 and totals["hands"] == 3
    assert (totals["right_hands"], totals["left_hands"], totals["frames_with_hands"]) == (1, 2, 2)
    assert totals["overlays_written"] == 3 and totals["stopped_because"] == "max_frames"
    assert totals["latency_ms"]["max"] < 5000 and totals["node_latency_ms"]["p50"] == 50.0
    assert summary["model"] == "resnet18@128 test" and summary["hand_model"] == "open_hand/1 test"
    assert summary["hands_topic"] == "/t/hands"
    first = summary["frames"][0]
    assert first["stamp"] == {"sec": sent[0].sec, "nanosec": sent[0].nanosec}
    assert first["frame_id"] == "cam_optical" and first["image_size"] == [640, 480]
    assert [h["side"] for h in first["hands"]] == ["right", "left"]
    assert [h["id"] for h in first["hands"]] == [7, 8]
    assert first["hands"][0]["score"] == 0.93
    np.testing.assert_allclose(first["hands"][0]["wrist_m"], [0.05, 0.02, 0.6], atol=1e-4)
    np.testing.assert_allclose(first["hands"][1]["wrist_m"], [-0.1, 0.03, 0.7], atol=1e-4)
    assert first["inference_ms"] == 20.0
    for index, (frame, stamp) in enumerate(zip(summary["frames"], sent, strict=True)):
        name = f"overlays/frame_{index + 1:05d}_{stamp.sec}.{stamp.nanosec:09d}.png"
        assert frame["overlay"] == name
        written = cv2.imread(str(out / name))
        np.testing.assert_array_equal(written, _overlay(index))  # PNG: lossless
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(
        Path(f["overlay"]).name for f in summary["frames"]
    )


def test_stops_after_the_idle_timeout(ros, start_recorder, tmp_path: Path, camera_matrix) -> None:
    out = tmp_path / "rec"
    process = start_recorder(out, max_frames="10", idle_timeout_s="1.0", overlay_topic="''")
    hands_pub = ros.node.create_publisher(HandArray, "/t/hands", QoSProfile(depth=10))
    _wait_for_subscriptions(ros, (hands_pub,))
    result = ImageHands((), (320, 240), camera_matrix, intrinsics_assumed=True)
    msg = image_hands_to_msg(result, _header(ros), (), [], [], "h", "m", 0.01, False)
    hands_pub.publish(msg)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert time.monotonic() - started < 10.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["frames"] == 1
    assert summary["totals"]["stopped_because"] == "idle_timeout"
    assert summary["frames"][0]["overlay"] is None and summary["overlay_topic"] is None
    assert not (out / "overlays").exists()


def test_no_frames_before_the_startup_timeout_exits_non_zero(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "rec"
    done = subprocess.run(
        [sys.executable, "-c", NODE, "--ros-args", "-p", f"output_dir:={out}",
         "-p", "startup_timeout_s:=0.5", "-p", "hands_topic:=/nobody/hands"],
        env=ros_env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no HandArray on /nobody/hands within 0.5 s" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["frames"] == 0
    assert summary["totals"]["stopped_because"] == "startup_timeout"
