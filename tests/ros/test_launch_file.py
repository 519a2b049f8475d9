"""launch/hands.launch.py, config/hands.yaml and config/hands.rviz, checked without launch_ros.

launch and launch_ros are not installable from PyPI, so the launch file is parsed with `ast`:
it must start the `hands_node` executable of package smhr_ros with the parameter file, declare
the launch arguments of issue 4, and set only parameters the node declares.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from smhr_ros.node_config import NodeConfig, from_parameters
from smhr_ros.package_paths import share_directory
from smhr_ros.rviz_config import (
    IMAGE_DISPLAY,
    MARKER_ARRAY_DISPLAY,
    output_topic,
    params_file_value,
    write_rviz_config,
)

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "hands.launch.py"
PARAMS_FILE = ROOT / "config" / "hands.yaml"
RVIZ_FILE = ROOT / "config" / "hands.rviz"
REQUIRED_ARGUMENTS = {
    "image_topic",
    "camera_info_topic",
    "checkpoint",
    "hand_model_dir",
    "device",
    "namespace",
    "use_rviz",
}


@pytest.fixture(scope="module")
def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _assigned_literal(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{LAUNCH_FILE.name} assigns no literal {name}")


def _node_calls(tree: ast.Module) -> list[dict[str, object]]:
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            calls.append(
                {
                    k.arg: ast.literal_eval(k.value)
                    for k in node.keywords
                    if isinstance(k.value, ast.Constant)
                }
            )
    return calls


def test_launch_file_starts_the_installed_hands_node_executable(launch_tree: ast.Module) -> None:
    nodes = _node_calls(launch_tree)
    ours = [n for n in nodes if n.get("package") == "smhr_ros"]
    assert [n["executable"] for n in ours] == ["hands_node"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["hands_node"] == "smhr_ros.hands_node:main"
    assert "hands_node" in (ROOT / "CMakeLists.txt").read_text()
    assert {"package": "rviz2", "executable": "rviz2", "name": "rviz2", "output": "screen"} in nodes
    # The parameter file is the installed config/hands.yaml.
    assert 'share_file("config", "hands.yaml")' in LAUNCH_FILE.read_text()


def test_launch_arguments_and_the_parameters_they_set(launch_tree: ast.Module) -> None:
    arguments = {name for name, _, _ in _assigned_literal(launch_tree, "ARGUMENTS")}
    assert arguments >= REQUIRED_ARGUMENTS
    declared = {f.name for f in fields(NodeConfig)}
    mapping = _assigned_literal(launch_tree, "LAUNCH_TO_PARAMETER")
    assert set(mapping) <= arguments
    assert set(mapping.values()) <= declared
    for parameter in _assigned_literal(launch_tree, "LIST_PARAMETERS"):
        assert isinstance(getattr(NodeConfig(), parameter), list)


def test_the_launch_file_imports_nothing_but_launch_and_smhr_ros(launch_tree: ast.Module) -> None:
    modules = {
        node.module.split(".")[0]
        for node in ast.walk(launch_tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert modules <= {"launch", "launch_ros", "smhr_ros"}
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")


def test_params_file_sets_every_parameter_to_its_default() -> None:
    data = yaml.safe_load(PARAMS_FILE.read_text())
    parameters = data["hands_node"]["ros__parameters"]
    defaults = NodeConfig().to_parameters()
    assert set(parameters) == set(defaults)
    for name, value in parameters.items():
        assert value == defaults[name], name
        assert type(value) is type(defaults[name]), f"{name}: YAML type {type(value).__name__}"
    assert from_parameters(parameters) == NodeConfig()
    text = PARAMS_FILE.read_text()
    for name in parameters:
        # Each parameter is preceded by its comment.
        before = text.split(f"\n    {name}:")[0].rstrip().splitlines()[-1]
        assert before.lstrip().startswith("#"), name


def test_rviz_config_shows_the_image_and_markers_of_one_launch(tmp_path: Path) -> None:
    template = yaml.safe_load(RVIZ_FILE.read_text())
    classes = [d["Class"] for d in template["Visualization Manager"]["Displays"]]
    assert IMAGE_DISPLAY in classes and MARKER_ARRAY_DISPLAY in classes
    path = write_rviz_config(
        RVIZ_FILE,
        "/left/color/image_raw",
        output_topic("robot/", "markers"),
        "left_optical",
        tmp_path,
    )
    written = yaml.safe_load(path.read_text())
    displays = {d["Class"]: d for d in written["Visualization Manager"]["Displays"]}
    assert displays[IMAGE_DISPLAY]["Topic"]["Value"] == "/left/color/image_raw"
    assert displays[MARKER_ARRAY_DISPLAY]["Topic"]["Value"] == "/robot/markers"
    assert written["Visualization Manager"]["Global Options"]["Fixed Frame"] == "left_optical"
    assert output_topic("", "markers") == "/markers"


def test_params_file_values_are_read_for_the_node_or_the_wildcard(tmp_path: Path) -> None:
    assert params_file_value(PARAMS_FILE, "hands_node", "image_topics") == ["/camera/image_raw"]
    wildcard = tmp_path / "p.yaml"
    wildcard.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"device": "cpu"}}}))
    assert params_file_value(wildcard, "hands_node", "device") == "cpu"
    assert params_file_value(wildcard, "hands_node", "checkpoint") is None


def test_installed_share_directory_holds_the_launch_and_config_files() -> None:
    share = share_directory()
    assert share == Path(sys.prefix) / "share" / "smhr_ros" or (share / "package.xml").is_file()
    for relative in ("launch/hands.launch.py", "config/hands.yaml", "config/hands.rviz"):
        assert (share / relative).read_text() == (ROOT / relative).read_text(), relative


def test_share_directory_follows_the_ament_index(tmp_path: Path, monkeypatch) -> None:
    prefix = tmp_path / "install"
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / "smhr_ros"
    marker.parent.mkdir(parents=True)
    marker.write_text("")
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path / 'other'}:{prefix}")
    assert share_directory() == prefix / "share" / "smhr_ros"
