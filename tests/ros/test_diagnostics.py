"""Counters, rates, latency percentiles and the DiagnosticArray built from them."""

from __future__ import annotations

import time

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus

from smhr_ros.diagnostics import NodeStatistics, status_values


def test_counts_rates_and_latency_percentiles() -> None:
    stats = NodeStatistics(["left", "right"], ["/left/image", "/right/image"], window_s=2.0)
    now = time.monotonic()
    stats.frame_received(0, False, now=now - 10.0)  # outside the rate window
    for i in range(20):
        stats.frame_received(0, dropped_waiting=i % 2 == 1, now=now - 1.0 + i * 0.05)
    for i in range(10):
        stats.frame_published(
            0, latency_s=0.01 * (i + 1), hands=2, intrinsics_assumed=False, now=now
        )
    snap = stats.camera(0)
    assert (snap.received, snap.dropped, snap.published, snap.hands) == (21, 10, 10, 20)
    assert snap.input_rate_hz == 10.0 and snap.output_rate_hz == 5.0
    assert abs(snap.latency_p50_s - 0.055) < 1e-9 and abs(snap.latency_max_s - 0.1) < 1e-9
    assert 0.09 < snap.latency_p95_s <= 0.1
    assert stats.camera(1).latency_p50_s is None


def test_errors_are_first_reported_once_and_counted_by_kind() -> None:
    stats = NodeStatistics(["cam"], ["/cam/image"])
    assert stats.error("truncated_data", 0) is True
    assert stats.error("truncated_data", 0) is False
    assert stats.error("inference_error", None, count=3) is True
    assert stats.errors() == {"truncated_data": 2, "inference_error": 3}


def test_diagnostic_array_holds_one_status_per_camera_and_one_for_the_model() -> None:
    stats = NodeStatistics(["left", "right"], ["/left/image", "/right/image"])
    stats.frame_received(0, False)
    stats.frame_published(0, 0.02, 1, intrinsics_assumed=True)
    stats.batch_processed(2, 0.01)
    stats.batch_processed(1, 0.03)
    stats.error("unknown_encoding", 0)
    array = stats.to_message(Time(sec=5), "hands_node", "cpu", "resnet18@128 x.pth", "open_hand/1")
    left, right, model = array.status
    assert left.name == "hands_node: camera left" and left.level == DiagnosticStatus.WARN
    assert "unknown_encoding x1" in left.message
    values = status_values(left)
    assert values["errors.unknown_encoding"] == "1" and values["frames_received"] == "1"
    assert values["intrinsics_assumed"] == "true" and values["latency_p50_ms"] == "20.0"
    assert right.level == DiagnosticStatus.WARN and "no images received" in right.message
    assert status_values(right)["latency_p50_ms"] == "nan"
    model_values = status_values(model)
    assert model.name == "hands_node: inference" and model.level == DiagnosticStatus.OK
    assert model_values["batch_size_max"] == "2" and model_values["batches"] == "2"
    assert model_values["device"] == "cpu" and model_values["model"] == "resnet18@128 x.pth"
    assert model_values["errors_total"] == "1"
    # The next report is OK again: the error is counted but no longer new.
    left_again = stats.to_message(Time(sec=6), "hands_node", "cpu", "m", "h").status[0]
    assert left_again.level == DiagnosticStatus.OK
    assert status_values(left_again)["errors.unknown_encoding"] == "1"
