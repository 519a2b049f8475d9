"""The installed package carries its launch file, parameter file and ROS package manifest."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml


def _share() -> Path:
    return Path(sys.prefix) / "share" / "smhr_ros"


def test_launch_and_config_are_installed() -> None:
    share = _share()
    launch = share / "launch" / "hands.launch.py"
    params = share / "config" / "hands.yaml"
    assert launch.is_file(), launch
    assert params.is_file(), params
    compile(launch.read_text(), str(launch), "exec")
    loaded = yaml.safe_load(params.read_text())
    assert "ros__parameters" in next(iter(loaded.values()))


def test_package_manifest_is_format_3_ament_cmake_interface_package() -> None:
    root = ET.parse(_share() / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "smhr_ros"
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for needed in (
        "rclpy",
        "sensor_msgs",
        "visualization_msgs",
        "geometry_msgs",
        "std_msgs",
        "cv_bridge",
        "launch_ros",
        "rosidl_default_generators",
        "rosidl_default_runtime",
    ):
        assert needed in deps, needed


def test_ament_index_marks_the_package() -> None:
    marker = Path(sys.prefix) / "share" / "ament_index" / "resource_index" / "packages" / "smhr_ros"
    assert marker.is_file()
