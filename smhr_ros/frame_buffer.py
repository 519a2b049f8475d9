"""Newest-frame-only buffering and the inference worker thread.

`FrameBuffer` holds one slot per camera. A new frame replaces the one waiting in its camera's
slot (that frame is dropped and counted), so however fast images arrive nothing queues up and the
latency from stamp to result stays bounded by about two processing times.

`BatchWorker` runs on its own thread, away from the subscription callbacks: it takes every waiting
frame of every camera at once and hands them to one `process` call (one batched forward pass),
no more often than `max_rate_hz`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Frame:
    """One received message waiting for processing."""

    camera: int
    """Index of the camera (its position in the node's image topic list)."""
    message: Any
    """The image message as received."""
    received_s: float
    """time.monotonic() at reception, seconds."""


class FrameBuffer:
    """One newest-frame slot per camera; thread-safe."""

    def __init__(self, cameras: int) -> None:
        if cameras < 1:
            raise ValueError(f"cameras: need at least one, got {cameras}")
        self._slots: list[Frame | None] = [None] * cameras
        self._received = [0] * cameras
        self._dropped = [0] * cameras
        self._closed = False
        self._condition = threading.Condition()

    @property
    def cameras(self) -> int:
        """Number of camera slots."""
        return len(self._slots)

    def put(self, camera: int, message: Any, received_s: float | None = None) -> bool:
        """Store the newest frame of `camera`; returns True if it replaced a waiting frame."""
        frame = Frame(camera, message, time.monotonic() if received_s is None else received_s)
        with self._condition:
            replaced = self._slots[camera] is not None
            self._slots[camera] = frame
            self._received[camera] += 1
            if replaced:
                self._dropped[camera] += 1
            self._condition.notify_all()
        return replaced

    def take_all(self, timeout_s: float | None = None) -> list[Frame]:
        """Remove and return every waiting frame (at most one per camera, in camera order).

        Blocks until a frame is waiting, the buffer is closed or `timeout_s` passes; returns an
        empty list in the latter two cases.
        """
        with self._condition:
            self._condition.wait_for(
                lambda: self._closed or any(s is not None for s in self._slots), timeout_s
            )
            if self._closed:
                return []
            frames = [s for s in self._slots if s is not None]
            self._slots = [None] * len(self._slots)
        return frames

    def waiting(self) -> int:
        """Number of cameras with a frame waiting."""
        with self._condition:
            return sum(s is not None for s in self._slots)

    def received(self, camera: int) -> int:
        """Frames put for `camera` so far."""
        with self._condition:
            return self._received[camera]

    def dropped(self, camera: int) -> int:
        """Frames of `camera` replaced before they were processed."""
        with self._condition:
            return self._dropped[camera]

    def close(self) -> None:
        """Wake every waiting `take_all`; later calls return nothing."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        """True after `close()`."""
        return self._closed


class BatchWorker:
    """A thread that feeds the waiting frames of all cameras to `process` as one batch.

    `process(frames)` runs on the worker thread. An exception from it is passed to `on_error`
    and the worker carries on with the next batch. Batches start at most `max_rate_hz` times per
    second (0: as fast as `process` allows); frames arriving in between replace older ones.
    """

    def __init__(
        self,
        buffer: FrameBuffer,
        process: Callable[[list[Frame]], None],
        on_error: Callable[[BaseException], None],
        max_rate_hz: float = 0.0,
        name: str = "smhr-inference",
    ) -> None:
        self._buffer = buffer
        self._process = process
        self._on_error = on_error
        self._min_period_s = 0.0
        self.set_max_rate(max_rate_hz)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.batches = 0
        """Batches processed so far."""

    def set_max_rate(self, max_rate_hz: float) -> None:
        """Change the maximum batch rate, Hz (0: unlimited); takes effect at the next batch."""
        if not max_rate_hz >= 0:
            raise ValueError(f"max_rate_hz: must be >= 0, got {max_rate_hz}")
        self._min_period_s = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop taking frames, wait for the batch in progress (up to `timeout_s`)."""
        self._stop.set()
        self._buffer.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        next_start = 0.0
        while not self._stop.is_set():
            delay = next_start - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            frames = self._buffer.take_all(timeout_s=0.5)
            if not frames:
                continue
            started = time.monotonic()
            next_start = started + self._min_period_s
            try:
                self._process(frames)
            except Exception as error:  # the node must keep serving whatever one batch does
                self._on_error(error)
            self.batches += 1
