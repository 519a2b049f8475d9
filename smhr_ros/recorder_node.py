"""recorder_node: record the hands node's output to a folder and print one line per frame.

Run it with `ros2 run smhr_ros recorder_node --ros-args -p output_dir:=out -p max_frames:=50`
(or the `recorder_node` console script after `pip install`).

It subscribes to `hands_topic` (smhr_ros/HandArray) and `overlay_topic` (sensor_msgs/Image; ''
records no overlays). Each HandArray is one frame: it is numbered from 1, printed as

    frame 12: 2 hands [R 0.93, L 0.88] latency 85 ms

(side and detection score per hand; latency from the image's stamp to the moment the recorder
received the hands), and the overlay with the same stamp is written to
`<output_dir>/overlays/frame_<index>_<sec>.<nanosec>.png`. It stops by itself after
`max_frames` frames, when no frame arrived for `idle_timeout_s` after the first, or when none
arrived within `startup_timeout_s`; then it writes `<output_dir>/summary.json` (per frame: stamp,
hands with id, side, score and wrist position, latencies; totals) and prints where the output is.
Exit code 0 when at least one frame was recorded, 1 otherwise (or for an invalid parameter).
"""

from __future__ import annotations

import json
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image

from smhr_core.config import ConfigError
from smhr_ros.image_conversion import ImageConversionError, image_to_bgr
from smhr_ros.msg import Hand as HandMsg
from smhr_ros.msg import HandArray
from smhr_ros.node_parameters import ParameterSpec, declare_parameters
from smhr_ros.spinning import spin_until

NODE_NAME = "recorder_node"
SUMMARY_FILE = "summary.json"
OVERLAY_FOLDER = "overlays"
SUMMARY_FORMAT = "smhr-recording/1"
QOS_PROFILES = ("reliable", "sensor_data")
_QUEUE_DEPTH = 10
_PENDING_OVERLAYS = 30
_OVERLAY_GRACE_S = 2.0
"""After the last frame, how long to wait for the overlays of recorded frames."""

PARAMETERS = (
    ParameterSpec("hands_topic", "/hands", "smhr_ros/HandArray topic of the hands node."),
    ParameterSpec(
        "overlay_topic",
        "/overlay",
        "sensor_msgs/Image topic of the hands node's overlay; '' records no overlays.",
    ),
    ParameterSpec(
        "output_dir",
        "",
        "Folder for overlays/ and summary.json (created); '' for "
        "./outputs/recording-<date>-<time>.",
    ),
    ParameterSpec(
        "max_frames", 0, "Stop after this many frames; 0: no limit.", range=(0, 2**31 - 1)
    ),
    ParameterSpec(
        "idle_timeout_s",
        5.0,
        "Stop when no frame arrived for this long after the first one, seconds; 0: never.",
        range=(0.0, 86400.0),
    ),
    ParameterSpec(
        "startup_timeout_s",
        120.0,
        "Give up (exit code 1) when no frame arrived this long after start, seconds; 0: never.",
        range=(0.0, 86400.0),
    ),
    ParameterSpec(
        "qos",
        "reliable",
        "QoS of both subscriptions: 'reliable' or 'sensor_data' (best effort).",
        choices=QOS_PROFILES,
    ),
)

_SIDE_NAMES = {HandMsg.LEFT: "left", HandMsg.RIGHT: "right"}


def _stamp_key(msg: Any) -> tuple[int, int]:
    return (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def default_output_dir() -> Path:
    """./outputs/recording-<date>-<time> (local time)."""
    return Path("outputs") / f"recording-{datetime.now():%Y%m%d-%H%M%S}"


def hand_summary(hand: HandMsg) -> dict[str, Any]:
    """One hand of a HandArray as JSON-ready values (metres, pixels)."""
    joints = np.asarray(hand.joints, dtype=np.float64)
    return {
        "id": int(hand.id),
        "side": _SIDE_NAMES.get(int(hand.handedness), f"unknown({int(hand.handedness)})"),
        "score": round(float(hand.score), 4),
        "handedness_probability": round(float(hand.handedness_probability), 4),
        "wrist_m": [round(float(v), 4) for v in joints[:3]],
        "box_px": [round(float(v), 1) for v in hand.box],
        "depth_corrected": bool(hand.depth_corrected),
    }


def frame_line(index: int, hands: Sequence[dict[str, Any]], latency_s: float) -> str:
    """'frame 12: 2 hands [R 0.93, L 0.88] latency 85 ms'."""
    noun = "hand" if len(hands) == 1 else "hands"
    listed = ", ".join(f"{h['side'][:1].upper()} {h['score']:.2f}" for h in hands)
    found = f"{len(hands)} {noun}" + (f" [{listed}]" if hands else "")
    return f"frame {index}: {found} latency {latency_s * 1e3:.0f} ms"


def _statistics_ms(values_s: Sequence[float]) -> dict[str, float] | None:
    if not values_s:
        return None
    ms = np.asarray(values_s, dtype=np.float64) * 1e3
    return {
        "mean": round(float(ms.mean()), 1),
        "p50": round(float(np.percentile(ms, 50)), 1),
        "p95": round(float(np.percentile(ms, 95)), 1),
        "max": round(float(ms.max()), 1),
    }


@dataclass
class _Frame:
    record: dict[str, Any]
    latency_s: float


class RecorderNode(Node):
    """Records HandArray and overlay messages (see the module docstring).

    Raises `ConfigError` for an invalid parameter or an output folder that cannot be created.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.settings = declare_parameters(self, PARAMETERS)
        settings = self.settings
        self.output_dir = (
            Path(settings["output_dir"]) if settings["output_dir"] else default_output_dir()
        ).absolute()
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if settings["overlay_topic"]:
                (self.output_dir / OVERLAY_FOLDER).mkdir(exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"parameter 'output_dir': cannot create {self.output_dir} ({error.strerror})"
            ) from None
        qos = (
            qos_profile_sensor_data
            if settings["qos"] == "sensor_data"
            else QoSProfile(depth=_QUEUE_DEPTH)
        )
        self._frames: list[_Frame] = []
        self._index_of_stamp: dict[tuple[int, int], int] = {}
        self._pending: OrderedDict[tuple[int, int], Image] = OrderedDict()
        self.overlays_written = 0
        self.overlay_errors = 0
        self.model = ""
        self.hand_model = ""
        self.stop_reason: str | None = None
        self._started = time.monotonic()
        self._last_frame: float | None = None
        self._first_frame: float | None = None
        self._full_since: float | None = None
        self.create_subscription(HandArray, settings["hands_topic"], self._on_hands, qos)
        if settings["overlay_topic"]:
            self.create_subscription(Image, settings["overlay_topic"], self._on_overlay, qos)
        limit = settings["max_frames"]
        self.get_logger().info(
            f"recording {self.resolve_topic_name(settings['hands_topic'])}"
            + (
                f" and {self.resolve_topic_name(settings['overlay_topic'])}"
                if settings["overlay_topic"]
                else ""
            )
            + f" to {self.output_dir}"
            + (f" for {limit} frames" if limit else "")
        )

    @property
    def frames_recorded(self) -> int:
        """HandArray messages recorded so far."""
        return len(self._frames)

    def _full(self) -> bool:
        limit = self.settings["max_frames"]
        return bool(limit) and len(self._frames) >= limit

    def _on_hands(self, msg: HandArray) -> None:
        if self._full() or self.stop_reason:
            return
        received = self.get_clock().now()
        now = time.monotonic()
        self._first_frame = self._first_frame or now
        self._last_frame = now
        index = len(self._frames) + 1
        key = _stamp_key(msg)
        self._index_of_stamp[key] = index
        latency_s = (received - Time.from_msg(msg.header.stamp)).nanoseconds * 1e-9
        hands = [hand_summary(h) for h in msg.hands]
        self.model, self.hand_model = msg.model, msg.hand_model
        record = {
            "index": index,
            "stamp": {"sec": key[0], "nanosec": key[1]},
            "frame_id": msg.header.frame_id,
            "image_size": [int(msg.image_width), int(msg.image_height)],
            "intrinsics_assumed": bool(msg.intrinsics_assumed),
            "hands": hands,
            "latency_ms": round(latency_s * 1e3, 2),
            "node_latency_ms": round(float(msg.latency) * 1e3, 2),
            "inference_ms": round(float(msg.inference_time) * 1e3, 2),
            "overlay": None,
        }
        self._frames.append(_Frame(record, latency_s))
        print(frame_line(index, hands, latency_s), flush=True)
        overlay = self._pending.pop(key, None)
        if overlay is not None:
            self._write_overlay(index, overlay)
        if self._full():
            self._full_since = now

    def _on_overlay(self, msg: Image) -> None:
        key = _stamp_key(msg)
        index = self._index_of_stamp.get(key)
        if index is not None:
            self._write_overlay(index, msg)
            return
        if self._full() or self.stop_reason:
            return
        # The overlay may arrive before its HandArray: keep the newest few until it does.
        self._pending[key] = msg
        while len(self._pending) > _PENDING_OVERLAYS:
            self._pending.popitem(last=False)

    def _write_overlay(self, index: int, msg: Image) -> None:
        record = self._frames[index - 1].record
        if record["overlay"] is not None:
            return
        try:
            image = image_to_bgr(msg)
        except ImageConversionError as error:
            self.overlay_errors += 1
            self.get_logger().warning(f"frame {index}: overlay not written: {_one_line(error)}")
            return
        sec, nanosec = record["stamp"]["sec"], record["stamp"]["nanosec"]
        name = f"{OVERLAY_FOLDER}/frame_{index:05d}_{sec}.{nanosec:09d}.png"
        if not cv2.imwrite(str(self.output_dir / name), image):
            self.overlay_errors += 1
            self.get_logger().warning(f"frame {index}: could not write {self.output_dir / name}")
            return
        record["overlay"] = name
        self.overlays_written += 1

    def _overlays_missing(self) -> bool:
        return bool(self.settings["overlay_topic"]) and any(
            f.record["overlay"] is None for f in self._frames
        )

    def check_stop(self) -> bool:
        """Decide whether recording is over (sets `stop_reason`); call it between spins."""
        if self.stop_reason:
            return True
        now = time.monotonic()
        settings = self.settings
        if self._full_since is not None:
            if not self._overlays_missing() or now - self._full_since > _OVERLAY_GRACE_S:
                self.stop_reason = "max_frames"
        elif self._last_frame is None:
            timeout = settings["startup_timeout_s"]
            if timeout and now - self._started > timeout:
                self.stop_reason = "startup_timeout"
                self.get_logger().error(
                    f"no HandArray on {self.resolve_topic_name(settings['hands_topic'])} "
                    f"within {timeout:g} s"
                )
        else:
            timeout = settings["idle_timeout_s"]
            if timeout and now - self._last_frame > timeout:
                self.stop_reason = "idle_timeout"
        return self.stop_reason is not None

    def summary(self) -> dict[str, Any]:
        """Everything recorded, as written to summary.json."""
        frames = [f.record for f in self._frames]
        sides = [h["side"] for f in frames for h in f["hands"]]
        duration = (
            (self._last_frame - self._first_frame)
            if self._first_frame is not None and self._last_frame is not None
            else 0.0
        )
        totals = {
            "frames": len(frames),
            "hands": len(sides),
            "left_hands": sides.count("left"),
            "right_hands": sides.count("right"),
            "frames_with_hands": sum(1 for f in frames if f["hands"]),
            "mean_hands_per_frame": round(len(sides) / len(frames), 3) if frames else 0.0,
            "latency_ms": _statistics_ms([f.latency_s for f in self._frames]),
            "node_latency_ms": _statistics_ms([f["node_latency_ms"] * 1e-3 for f in frames]),
            "inference_ms": _statistics_ms([f["inference_ms"] * 1e-3 for f in frames]),
            "overlays_written": self.overlays_written,
            "overlay_errors": self.overlay_errors,
            "duration_s": round(duration, 3),
            "frames_per_second": round((len(frames) - 1) / duration, 2) if duration > 0 else None,
            "stopped_because": self.stop_reason or "interrupted",
        }
        return {
            "format": SUMMARY_FORMAT,
            "hands_topic": self.resolve_topic_name(self.settings["hands_topic"]),
            "overlay_topic": (
                self.resolve_topic_name(self.settings["overlay_topic"])
                if self.settings["overlay_topic"]
                else None
            ),
            "model": self.model,
            "hand_model": self.hand_model,
            "totals": totals,
            "frames": frames,
        }

    def write_summary(self) -> Path:
        """Write summary.json into the output folder; returns its path."""
        path = self.output_dir / SUMMARY_FILE
        path.write_text(json.dumps(self.summary(), indent=1) + "\n", encoding="utf-8")
        return path


def main(args: Sequence[str] | None = None) -> int:
    """Console entry point: record until done; returns the exit code (0: frames recorded)."""
    rclpy.init(args=args)
    try:
        node = RecorderNode()
    except ConfigError as error:
        rclpy.logging.get_logger(NODE_NAME).error(f"cannot start: {_one_line(error)}")
        rclpy.try_shutdown()
        return 1
    spin_until(node, node.check_stop, poll_s=0.05)
    path = node.write_summary()
    totals = node.summary()["totals"]
    latency = totals["latency_ms"]
    print(
        f"recorded {totals['frames']} frames, {totals['hands']} hands"
        + (f", latency p50 {latency['p50']:.0f} ms" if latency else "")
        + f" ({totals['stopped_because'].replace('_', ' ')})",
        flush=True,
    )
    print(
        f"output: {node.output_dir} ({SUMMARY_FILE}, {node.overlays_written} overlays in "
        f"{OVERLAY_FOLDER}/)"
        if node.settings["overlay_topic"]
        else f"output: {path}",
        flush=True,
    )
    recorded = node.frames_recorded
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if recorded else 1


if __name__ == "__main__":
    sys.exit(main())
