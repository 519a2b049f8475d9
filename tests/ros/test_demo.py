"""The demo: its orchestration end to end (three node processes over DDS), its failure report,
its ROS environment, and the static check of launch/demo.launch.py."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import cv2
import pytest

from smhr_ros import camera_node, demo, recorder_node
from smhr_ros.node_config import NodeConfig
from smhr_ros.package_paths import share_file

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "demo.launch.py"


def _processes_with_environment(marker: str) -> list[int]:
    """Ids of live processes whose environment contains `marker`."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def _run_demo(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smhr_ros.demo", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_demo_runs_the_loop_and_writes_overlays_and_summary(
    ros_env: dict[str, str], tmp_path: Path, random_checkpoint: Path
) -> None:
    out = tmp_path / "out"
    done = _run_demo(
        ["--frames", "6", "--rate", "5", "--checkpoint", str(random_checkpoint), "--out", str(out)],
        ros_env,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("frame ")] == [
        f"frame {i}" for i in range(1, 7)
    ]
    assert f"[demo] output: {out} (overlays/, summary.json, logs/)" in lines
    assert any(line.startswith("[demo] 6 frames, ") for line in lines)
    assert f"ROS_DOMAIN_ID={ros_env['ROS_DOMAIN_ID']}" in lines[0]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["frames"] == 6
    assert summary["totals"]["stopped_because"] == "max_frames"
    assert summary["model"].startswith("resnet18@128")
    assert summary["hand_model"].startswith("open_hand/")
    overlays = sorted((out / "overlays").glob("frame_*.png"))
    assert len(overlays) == 6
    assert cv2.imread(str(overlays[0])).shape == (240, 320, 3)  # the demo sequence's frames
    assert all(f["frame_id"] == "camera_optical_frame" for f in summary["frames"])
    # camera_node's CameraInfo carries the sequence's K (only the very first image may race
    # ahead of the first CameraInfo).
    assert not any(f["intrinsics_assumed"] for f in summary["frames"][1:])
    for name in ("camera_node", "hands_node", "recorder_node"):
        assert (out / "logs" / f"{name}.log").is_file()
    assert (out / "ros_log").is_dir()
    assert _processes_with_environment(f"ROS_LOG_DIR={out}/ros_log") == []


def test_a_child_that_dies_is_named_and_the_demo_exits_non_zero(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "missing.pth"
    done = _run_demo(["--frames", "3", "--checkpoint", str(missing), "--out", str(out)], ros_env,
                     tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert "[demo] hands_node exited with code 1; last lines of" in done.stdout
    assert str(missing) in done.stdout  # its error line, shown from its log
    assert _processes_with_environment(f"ROS_LOG_DIR={out}/ros_log") == []


def test_camera_source_reaches_the_node_as_a_string(ros_env: dict[str, str], tmp_path: Path):
    # "93" must stay the string '93' (device number) through `--ros-args -p`, not become 93.
    args = demo.parse_args(["--source", "93", "--out", str(tmp_path)])
    command = demo.node_commands(args, tmp_path)["camera_node"]
    done = subprocess.run(
        command, env=ros_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "video device /dev/video93 does not exist" in done.stderr


def test_child_environment_keeps_a_given_domain_and_otherwise_picks_one(tmp_path: Path) -> None:
    given = demo.child_environment(tmp_path, {"ROS_DOMAIN_ID": "42", "PATH": "/bin"})
    assert given["ROS_DOMAIN_ID"] == "42"
    assert given["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert given["ROS_LOG_DIR"] == str(tmp_path / "ros_log")
    own = demo.child_environment(tmp_path, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})
    assert 1 <= int(own["ROS_DOMAIN_ID"]) <= 100
    assert own["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"


@pytest.mark.parametrize(
    "argv", [["--frames", "0"], ["--rate", "0"], ["--rate", "2000"], ["--timeout", "-1"]]
)
def test_bad_options_are_refused(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(argv)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def _launch_nodes() -> tuple[ast.Module, dict[str, set[str]]]:
    """Executable -> parameter names set in demo.launch.py, read without launch_ros."""
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    nodes = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node":
            keywords = {k.arg: k.value for k in call.keywords}
            assert ast.literal_eval(keywords["package"]) == "smhr_ros"
            executable = ast.literal_eval(keywords["executable"])
            (parameters,) = keywords["parameters"].elts
            nodes[executable] = {ast.literal_eval(key) for key in parameters.keys}
    return tree, nodes


def test_launch_file_parses_and_matches_the_nodes() -> None:
    tree, nodes = _launch_nodes()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(nodes) == {"camera_node", "hands_node", "recorder_node"}
    for executable in nodes:
        assert scripts[executable] == f"smhr_ros.{executable}:main"
    declared = {
        "camera_node": {spec.name for spec in camera_node.PARAMETERS},
        "recorder_node": {spec.name for spec in recorder_node.PARAMETERS},
        "hands_node": {f.name for f in fields(NodeConfig)},
    }
    for executable, parameters in nodes.items():
        assert parameters <= declared[executable], (executable, parameters - declared[executable])
    arguments = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "ARGUMENTS"
    )
    names = {element.elts[0].value for element in arguments.elts}
    used = {
        call.args[0].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "LaunchConfiguration"
        and isinstance(call.args[0], ast.Constant)
    }  # fmt: skip
    arg_calls = {
        call.args[0].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "_arg"
    }
    assert used | arg_calls <= names and arg_calls
    assert {"source", "image_topic", "camera_info_topic", "use_camera"} <= names


def test_launch_file_is_installed() -> None:
    installed = share_file("launch", "demo.launch.py")
    assert installed.read_text() == LAUNCH_FILE.read_text()
