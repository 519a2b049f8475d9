"""Fixtures for tests with real rclpy and real DDS.

Isolation: every test gets its own ROS domain id (`worker_domain_id` of tests/conftest.py),
discovery stays on localhost, and ROS logs go to the test's temporary directory.

Child processes (the node, the image publisher) run with `sys.executable` and with the test's
temporary directory as working directory, so they import the installed smhr_ros (with its
generated messages), not the source tree.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from smhr_core.camera import project
from smhr_core.checkpoint import save_checkpoint
from smhr_core.config import ModelConfig
from smhr_core.hand_model import HandModel
from smhr_core.network import SMHRNet
from smhr_core.open_hand import open_hand_directory
from smhr_core.results import Hand, Handedness
from smhr_ros.diagnostics import status_values

PUBLISHER_SCRIPT = Path(__file__).resolve().parent / "image_publisher.py"
TEST_MODEL = ModelConfig(
    backbone="resnet18", input_resolution=128, heads=("hm", "params", "handmap")
)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random ResNet-18 / 128 px network saved as an smhr checkpoint."""
    torch.manual_seed(0)
    network = SMHRNet(TEST_MODEL)
    return save_checkpoint(
        tmp_path_factory.mktemp("model") / "random_r18.pth", network, TEST_MODEL, 0
    )


@pytest.fixture(scope="session")
def non_finite_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `random_checkpoint`, but the `params` head outputs NaN at every cell."""
    torch.manual_seed(0)
    network = SMHRNet(TEST_MODEL)
    with torch.no_grad():
        network.params[2].bias.fill_(float("nan"))
    return save_checkpoint(tmp_path_factory.mktemp("model") / "nan_r18.pth", network, TEST_MODEL, 0)


TEST_CAMERA = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
"""Intrinsics of a 640 x 480 test camera, pixels."""


@pytest.fixture
def camera_matrix() -> np.ndarray:
    """Intrinsics of a 640 x 480 test camera, pixels (the one `make_hand` projects with)."""
    return TEST_CAMERA.copy()


@pytest.fixture(scope="session")
def hand_model() -> HandModel:
    """The shipped open hand model."""
    return HandModel.from_directory(open_hand_directory())


@pytest.fixture(scope="session")
def make_hand(hand_model: HandModel) -> Callable[..., Hand]:
    """Build a real posed hand (open hand model) with its wrist at a chosen point.

    make_hand(wrist_m=(x, y, z), is_right=True, score=0.9, global_orient=(0, 0, 0),
              hand_pose=None (flat), camera_matrix=TEST_CAMERA, with_vertices=True) -> Hand
    """

    def make(
        wrist_m: tuple[float, float, float] = (0.0, 0.0, 0.6),
        is_right: bool = True,
        score: float = 0.9,
        global_orient: tuple[float, float, float] = (0.0, 0.0, 0.0),
        hand_pose: np.ndarray | None = None,
        camera_matrix: np.ndarray = TEST_CAMERA,
        with_vertices: bool = True,
    ) -> Hand:
        orient = torch.tensor([global_orient], dtype=torch.float32)
        pose = torch.zeros(1, 45) if hand_pose is None else torch.tensor(hand_pose).reshape(1, 45)
        betas = torch.zeros(1, 10)
        with torch.no_grad():
            out = hand_model(
                orient, pose.float(), betas, torch.zeros(1, 3), torch.tensor([is_right])
            )
        rest_wrist = out.rest_wrist[0].numpy().astype(np.float64)
        offset = np.asarray(wrist_m, dtype=np.float64) - rest_wrist
        joints = out.joints[0].numpy() + offset
        vertices = out.vertices[0].numpy() + offset
        keypoints = project(joints, camera_matrix)
        return Hand(
            score=score,
            handedness=Handedness.RIGHT if is_right else Handedness.LEFT,
            handedness_probability=0.8,
            joints_m=joints.astype(np.float32),
            keypoints_px=keypoints.astype(np.float32),
            global_orient=np.asarray(global_orient, dtype=np.float32),
            hand_pose=pose.numpy().reshape(45).astype(np.float32),
            betas=np.zeros(10, dtype=np.float32),
            translation_m=offset.astype(np.float32),
            box_px=np.concatenate([keypoints.min(0), keypoints.max(0)]).astype(np.float32),
            centre_px=keypoints.mean(0).astype(np.float32),
            vertices_m=vertices.astype(np.float32) if with_vertices else None,
            faces=hand_model.faces(is_right),
        )

    return make


def ros_environment(domain: int, log_dir: Path) -> dict[str, str]:
    """Environment for a child process in `domain`, discovery on localhost only."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_LOG_DIR=str(log_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


def _load_publisher_module() -> Any:
    spec = importlib.util.spec_from_file_location("smhr_test_image_publisher", PUBLISHER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PUBLISHER_MODULE = _load_publisher_module()

_CONTEXT_ENV = ("ROS_LOG_DIR", "ROS_AUTOMATIC_DISCOVERY_RANGE")
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


class RosHarness:
    """An in-process rclpy context in one domain, plus helpers to start child processes."""

    def __init__(self, domain: int, workdir: Path) -> None:
        self.domain = domain
        self.workdir = workdir
        self.log_dir = workdir / "ros_logs"
        self.log_dir.mkdir(exist_ok=True)
        # rclpy reads these when the context starts; restored in close().
        self._saved_env = {k: os.environ.get(k) for k in _CONTEXT_ENV}
        os.environ["ROS_LOG_DIR"] = str(self.log_dir)
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(f"test_probe_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._processes: list[subprocess.Popen] = []
        self.publisher_module = _PUBLISHER_MODULE
        """tests/ros/image_publisher.py as a module (`make_image`, `image_message`, ...)."""
        self.diagnostics: list[DiagnosticArray] = []
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics.append, RELIABLE
        )

    def collect(self, message_type: type, topic: str) -> list[Any]:
        """Subscribe the probe node to `topic`; returns the list received messages go to."""
        received: list[Any] = []
        self.node.create_subscription(message_type, topic, received.append, RELIABLE)
        return received

    def wait_for_publisher(self, topic: str, timeout_s: float) -> None:
        """Spin until some node publishes `topic` (e.g. the node under test is up)."""
        up = self.spin_until(lambda: self.node.count_publishers(topic) > 0, timeout_s)
        assert up, f"nobody published {topic} within {timeout_s} s"

    def diagnostic_values(self, name_suffix: str) -> dict[str, str]:
        """Key/values of the newest diagnostics status whose name ends with `name_suffix`."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if status.name.endswith(name_suffix):
                    return status_values(status)
        return {}

    def wait_for_diagnostic(
        self, name_suffix: str, key: str, predicate: Callable[[str], bool], timeout_s: float
    ) -> dict[str, str]:
        """Spin until the newest status `name_suffix` has `key` with predicate(value) true."""

        def ok() -> bool:
            value = self.diagnostic_values(name_suffix).get(key)
            return value is not None and predicate(value)

        assert self.spin_until(ok, timeout_s), (
            f"diagnostics {name_suffix!r} never had a matching {key!r}: "
            f"{self.diagnostic_values(name_suffix)}"
        )
        return self.diagnostic_values(name_suffix)

    def image_publisher(self, topic: str, compressed: bool = False):
        """A publisher of the probe node for images (or compressed images) on `topic`."""
        kind = CompressedImage if compressed else Image
        return self.node.create_publisher(kind, topic, RELIABLE)

    def camera_info_publisher(self, topic: str):
        """A publisher of the probe node for CameraInfo on `topic`."""
        return self.node.create_publisher(CameraInfo, topic, RELIABLE)

    @property
    def env(self) -> dict[str, str]:
        """Environment for child processes of this harness."""
        return ros_environment(self.domain, self.log_dir)

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Spin the probe node until `predicate()` is true or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def spin_for(self, seconds: float) -> None:
        """Spin the probe node for `seconds`."""
        self.spin_until(lambda: False, seconds)

    def write_params(self, parameters: dict[str, Any], name: str = "params.yaml") -> Path:
        """A --params-file for hands_node with `parameters`."""
        path = self.workdir / name
        path.write_text(yaml.safe_dump({"hands_node": {"ros__parameters": parameters}}))
        return path

    def start_node(
        self, parameters: dict[str, Any], extra_args: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        """Start hands_node in a child process with `parameters` (a params file)."""
        params = self.write_params(parameters)
        command = [
            sys.executable,
            "-c",
            "import sys; from smhr_ros.hands_node import main; sys.exit(main())",
            "--ros-args",
            "--params-file",
            str(params),
            *extra_args,
        ]
        return self._start(command)

    def start_publisher(self, *args: str) -> subprocess.Popen:
        """Start the test image publisher with command-line `args`."""
        return self._start([sys.executable, str(PUBLISHER_SCRIPT), *args])

    def _start(self, command: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._processes.append(process)
        return process

    @staticmethod
    def publisher_stamps(
        process: subprocess.Popen, timeout_s: float = 60.0
    ) -> list[tuple[int, int]]:
        """Wait for an image publisher and return the stamps it published."""
        out, err = process.communicate(timeout=timeout_s)
        assert process.returncode == 0, f"publisher failed ({process.returncode}): {out}\n{err}"
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return [tuple(s) for s in json.loads(lines[-1])["stamps"]]

    def close(self) -> None:
        """Stop child processes and shut the context down."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def ros(worker_domain_id: int, tmp_path: Path) -> Iterator[RosHarness]:
    """A `RosHarness` in this test's own domain (`worker_domain_id` from tests/conftest.py)."""
    harness = RosHarness(worker_domain_id, tmp_path)
    yield harness
    harness.close()
