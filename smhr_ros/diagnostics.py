"""Counters and rates of the hands node, reported as diagnostic_msgs/DiagnosticArray.

One status per camera ('<node>: camera <name>') with input and output rates, latency p50/p95,
frame counts, drops and errors by kind, and one status for the model ('<node>: inference') with
the device, model, hand model, batch sizes and inference time. `NodeStatistics` is thread-safe:
subscription callbacks, the inference worker and the diagnostics timer all use it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

_LATENCY_SAMPLES = 500


@dataclass
class _Camera:
    name: str
    topic: str
    received: int = 0
    dropped: int = 0
    published: int = 0
    hands: int = 0
    received_times: deque[float] = field(default_factory=deque)
    published_times: deque[float] = field(default_factory=deque)
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_SAMPLES))
    errors: Counter[str] = field(default_factory=Counter)
    intrinsics_assumed: bool | None = None


@dataclass(frozen=True)
class CameraSnapshot:
    """A copy of one camera's statistics."""

    name: str
    received: int
    dropped: int
    published: int
    hands: int
    input_rate_hz: float
    output_rate_hz: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_max_s: float | None
    errors: dict[str, int]


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if len(values) else None


class NodeStatistics:
    """What the node counts, per camera and for the model.

    Args:
        camera_names: one name per camera (index = camera index).
        camera_topics: the image topic of each camera (reported in diagnostics).
        window_s: rates are measured over the last `window_s` seconds.
    """

    def __init__(
        self, camera_names: Sequence[str], camera_topics: Sequence[str], window_s: float = 5.0
    ) -> None:
        self._lock = threading.Lock()
        self._window_s = window_s
        self._cameras = [
            _Camera(name, topic) for name, topic in zip(camera_names, camera_topics, strict=True)
        ]
        self._errors_seen: set[str] = set()
        self._errors_reported: Counter[str] = Counter()
        self._node_errors: Counter[str] = Counter()
        self._batch_sizes: Counter[int] = Counter()
        self._last_batch_size = 0
        self._inference_s: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] < now - self._window_s:
            times.popleft()

    def frame_received(self, camera: int, dropped_waiting: bool, now: float | None = None) -> None:
        """An image arrived; `dropped_waiting` if it replaced one not yet processed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            cam = self._cameras[camera]
            cam.received += 1
            cam.dropped += int(dropped_waiting)
            cam.received_times.append(now)
            self._trim(cam.received_times, now)

    def frame_published(
        self,
        camera: int,
        latency_s: float,
        hands: int,
        intrinsics_assumed: bool,
        now: float | None = None,
    ) -> None:
        """Results of one image were published, `latency_s` after its stamp."""
        now = time.monotonic() if now is None else now
        with self._lock:
            cam = self._cameras[camera]
            cam.published += 1
            cam.hands += hands
            cam.published_times.append(now)
            cam.latencies_s.append(latency_s)
            cam.intrinsics_assumed = intrinsics_assumed
            self._trim(cam.published_times, now)

    def batch_processed(self, size: int, inference_s: float) -> None:
        """One forward pass over `size` images took `inference_s` seconds."""
        with self._lock:
            self._batch_sizes[size] += 1
            self._last_batch_size = size
            self._inference_s.append(inference_s)

    def error(self, kind: str, camera: int | None = None, count: int = 1) -> bool:
        """Count `count` errors of `kind` (for `camera`, or the node); True the first time."""
        with self._lock:
            if camera is None:
                self._node_errors[kind] += count
            else:
                self._cameras[camera].errors[kind] += count
            first = kind not in self._errors_seen
            self._errors_seen.add(kind)
        return first

    def camera(self, camera: int) -> CameraSnapshot:
        """A consistent copy of one camera's statistics."""
        now = time.monotonic()
        with self._lock:
            cam = self._cameras[camera]
            self._trim(cam.received_times, now)
            self._trim(cam.published_times, now)
            latencies = list(cam.latencies_s)
            return CameraSnapshot(
                name=cam.name,
                received=cam.received,
                dropped=cam.dropped,
                published=cam.published,
                hands=cam.hands,
                input_rate_hz=len(cam.received_times) / self._window_s,
                output_rate_hz=len(cam.published_times) / self._window_s,
                latency_p50_s=_percentile(latencies, 50),
                latency_p95_s=_percentile(latencies, 95),
                latency_max_s=max(latencies) if latencies else None,
                errors=dict(cam.errors),
            )

    @property
    def batch_sizes(self) -> dict[int, int]:
        """Batch size -> number of forward passes with that many images."""
        with self._lock:
            return dict(self._batch_sizes)

    def errors(self) -> dict[str, int]:
        """Error kind -> count, over all cameras and the node."""
        with self._lock:
            total = Counter(self._node_errors)
            for cam in self._cameras:
                total.update(cam.errors)
            return dict(total)

    def _since_last_report(self, key: str, counts: dict[str, int]) -> dict[str, int]:
        """Errors counted since the previous diagnostics message, by kind."""
        with self._lock:
            new = {}
            for kind, count in counts.items():
                reported = self._errors_reported[f"{key}/{kind}"]
                if count > reported:
                    new[kind] = count - reported
                self._errors_reported[f"{key}/{kind}"] = count
            return new

    def to_message(
        self, stamp: Time, node_name: str, device: str, model: str, hand_model: str
    ) -> DiagnosticArray:
        """The DiagnosticArray for /diagnostics."""
        array = DiagnosticArray(header=Header(stamp=stamp))
        all_errors = self.errors()
        for index in range(len(self._cameras)):
            snap = self.camera(index)
            with self._lock:
                topic = self._cameras[index].topic
                assumed = self._cameras[index].intrinsics_assumed
            new_errors = self._since_last_report(str(index), snap.errors)
            level, message = DiagnosticStatus.OK, "ok"
            if snap.received == 0:
                level, message = DiagnosticStatus.WARN, f"no images received on {topic} yet"
            elif snap.input_rate_hz == 0:
                level, message = DiagnosticStatus.WARN, f"no images on {topic} recently"
            elif new_errors:
                level = DiagnosticStatus.WARN
                message = "errors: " + ", ".join(f"{k} x{n}" for k, n in sorted(new_errors.items()))
            values = {
                "image_topic": topic,
                "input_rate_hz": f"{snap.input_rate_hz:.2f}",
                "output_rate_hz": f"{snap.output_rate_hz:.2f}",
                "latency_p50_ms": _ms(snap.latency_p50_s),
                "latency_p95_ms": _ms(snap.latency_p95_s),
                "latency_max_ms": _ms(snap.latency_max_s),
                "frames_received": str(snap.received),
                "frames_dropped": str(snap.dropped),
                "frames_published": str(snap.published),
                "hands_published": str(snap.hands),
                "intrinsics_assumed": "unknown" if assumed is None else str(assumed).lower(),
                "errors_total": str(sum(snap.errors.values())),
            }
            values.update({f"errors.{k}": str(n) for k, n in sorted(snap.errors.items())})
            array.status.append(
                DiagnosticStatus(
                    level=level,
                    name=f"{node_name}: camera {snap.name}",
                    message=message,
                    hardware_id=device,
                    values=[KeyValue(key=k, value=v) for k, v in values.items()],
                )
            )
        with self._lock:
            sizes = dict(self._batch_sizes)
            inference = list(self._inference_s)
            last_size = self._last_batch_size
            node_errors = dict(self._node_errors)
        batches = sum(sizes.values())
        values = {
            "device": device,
            "model": model,
            "hand_model": hand_model,
            "batches": str(batches),
            "batch_size_last": str(last_size),
            "batch_size_max": str(max(sizes, default=0)),
            "batch_size_mean": f"{sum(s * n for s, n in sizes.items()) / batches:.2f}"
            if batches
            else "0",
            "inference_p50_ms": _ms(_percentile(inference, 50)),
            "inference_p95_ms": _ms(_percentile(inference, 95)),
            "errors_total": str(sum(all_errors.values())),
        }
        values.update({f"errors.{k}": str(n) for k, n in sorted(node_errors.items())})
        new_errors = self._since_last_report("node", node_errors)
        array.status.append(
            DiagnosticStatus(
                level=DiagnosticStatus.WARN if new_errors else DiagnosticStatus.OK,
                name=f"{node_name}: inference",
                message="errors: " + ", ".join(f"{k} x{n}" for k, n in sorted(new_errors.items()))
                if new_errors
                else "ok",
                hardware_id=device,
                values=[KeyValue(key=k, value=v) for k, v in values.items()],
            )
        )
        return array


def _ms(seconds: float | None) -> str:
    return "nan" if seconds is None else f"{seconds * 1000.0:.1f}"


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """The key/value pairs of a DiagnosticStatus as a dict."""
    return {kv.key: kv.value for kv in status.values}
