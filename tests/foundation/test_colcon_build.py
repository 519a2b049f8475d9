"""The repository builds as a ROS 2 package with colcon (ament_cmake), like in a workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    "CMakeLists.txt",
    "package.xml",
    "msg",
    "launch",
    "config",
    "smhr_ros",
    "smhr_core",
    "training",
]
EXECUTABLES = ["hands_node", "camera_node", "recorder_node"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("colcon_ws")
    package = ws / "src" / "smhr"
    package.mkdir(parents=True)
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, package / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, package / name)
    # What a sourced ROS installation provides: the prefix holding ament_cmake and the messages.
    env = dict(os.environ, CMAKE_PREFIX_PATH=sys.prefix, AMENT_PREFIX_PATH=sys.prefix)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    colcon = Path(sys.executable).parent / "colcon"
    result = subprocess.run(
        [str(colcon), "build", "--event-handlers", "console_direct-"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return ws


def test_colcon_installs_executables_launch_and_config(workspace: Path) -> None:
    prefix = workspace / "install" / "smhr_ros"
    for exe in EXECUTABLES:
        path = prefix / "lib" / "smhr_ros" / exe
        assert path.is_file() and os.access(path, os.X_OK), path
        assert f"from smhr_ros.{exe} import main" in path.read_text()
    share = prefix / "share" / "smhr_ros"
    assert (share / "launch" / "hands.launch.py").is_file()
    assert (share / "config" / "hands.yaml").is_file()
    assert (share / "package.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "smhr_ros").is_file()


def test_sourced_workspace_imports_generated_messages_and_packages(workspace: Path) -> None:
    script = (
        f". {workspace / 'install' / 'setup.sh'} && {sys.executable} -c "
        "'import smhr_ros.msg, smhr_ros.hands_node, smhr_core.predictor, training.config; "
        "print(smhr_ros.msg.__file__); print(smhr_ros.msg.HandArray().hands)'"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["COLCON_CURRENT_PREFIX"] = str(workspace / "install")
    result = subprocess.run(
        ["bash", "-c", script], cwd=workspace, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(str(workspace / "install")), first
