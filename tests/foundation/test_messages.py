"""The custom messages build, import, and cross DDS between two processes unchanged."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np

PEERS = Path(__file__).with_name("hand_array_peers.py")


def _peers():
    spec = importlib.util.spec_from_file_location("hand_array_peers", PEERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_messages_import_with_fixed_sizes() -> None:
    from smhr_ros.msg import Hand, HandArray

    hand = Hand()
    assert (Hand.LEFT, Hand.RIGHT, Hand.NUM_JOINTS, Hand.NUM_VERTICES) == (0, 1, 21, 778)
    sizes = {
        "joints": 63,
        "keypoints": 42,
        "global_orient": 3,
        "hand_pose": 45,
        "shape": 10,
        "translation": 3,
        "box": 4,
    }
    for field, size in sizes.items():
        value = getattr(hand, field)
        assert value.dtype == np.float32 and value.shape == (size,), field
    assert len(hand.vertices) == 0
    array = HandArray()
    assert array.camera_matrix.shape == (9,) and array.camera_matrix.dtype == np.float64
    assert list(array.hands) == []


def test_hand_array_round_trips_between_processes(tmp_path, ros_env, python) -> None:
    topic = f"roundtrip_{ros_env['ROS_DOMAIN_ID']}"
    out = tmp_path / "received.json"
    publisher = subprocess.Popen([python, str(PEERS), "publish", topic], env=ros_env)
    try:
        result = subprocess.run(
            [python, str(PEERS), "subscribe", topic, str(out)], env=ros_env, timeout=90
        )
    finally:
        publisher.kill()
        publisher.wait()
    assert result.returncode == 0, "the subscriber received no HandArray"
    peers = _peers()
    sent = peers.make_hand_array()
    received = json.loads(out.read_text())
    expected = json.loads(json.dumps(peers.to_plain(sent)))
    assert len(received["hands"]) == 4
    assert received == expected
