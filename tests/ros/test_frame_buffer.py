"""Newest-frame slots and the batching worker thread."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from smhr_ros.frame_buffer import BatchWorker, FrameBuffer


def test_each_camera_keeps_only_its_newest_frame() -> None:
    buffer = FrameBuffer(2)
    assert buffer.put(0, "a0") is False
    assert buffer.put(0, "a1") is True
    assert buffer.put(1, "b0") is False
    frames = buffer.take_all(timeout_s=0.1)
    assert [(f.camera, f.message) for f in frames] == [(0, "a1"), (1, "b0")]
    assert (buffer.received(0), buffer.dropped(0), buffer.dropped(1)) == (2, 1, 0)
    assert buffer.take_all(timeout_s=0.05) == []
    buffer.close()
    assert buffer.take_all(timeout_s=None) == []


def test_take_all_wakes_up_when_a_frame_arrives() -> None:
    buffer = FrameBuffer(1)
    threading.Timer(0.1, buffer.put, args=(0, "late")).start()
    started = time.monotonic()
    frames = buffer.take_all(timeout_s=5.0)
    assert [f.message for f in frames] == ["late"]
    assert time.monotonic() - started < 2.0


def test_worker_batches_waiting_cameras_drops_old_frames_and_survives_errors() -> None:
    buffer = FrameBuffer(3)
    batches: list[list[tuple[int, int]]] = []
    errors: list[BaseException] = []
    release = threading.Event()

    def process(frames) -> None:
        batches.append([(f.camera, f.message) for f in frames])
        if len(batches) == 1:
            release.wait(5.0)  # the first batch is slow: frames pile up meanwhile
        if len(batches) == 2:
            raise RuntimeError("boom")

    worker = BatchWorker(buffer, process, errors.append)
    worker.start()
    buffer.put(0, 0)
    while not batches:
        time.sleep(0.01)
    for i in range(1, 50):
        buffer.put(i % 3, i)
    release.set()
    deadline = time.monotonic() + 5.0
    while len(batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    buffer.put(0, 100)
    while len(batches) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert not worker.alive
    assert batches[0] == [(0, 0)]
    assert batches[1] == [(0, 48), (1, 49), (2, 47)]
    assert batches[2] == [(0, 100)]
    assert [str(e) for e in errors] == ["boom"]
    assert sum(buffer.dropped(c) for c in range(3)) == 49 - 3


def test_worker_respects_the_maximum_rate() -> None:
    buffer = FrameBuffer(1)
    starts: list[float] = []
    worker = BatchWorker(buffer, lambda frames: starts.append(time.monotonic()), print, 20.0)
    worker.start()
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        buffer.put(0, "frame")
        time.sleep(0.002)
    worker.stop()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) >= 5
    assert min(gaps) >= 0.05 - 0.005
    with pytest.raises(ValueError, match="max_rate_hz"):
        worker.set_max_rate(-1.0)
