"""The node's parameters: validation, descriptors, and changes at run time on a real node."""

from __future__ import annotations

import array
from dataclasses import fields
from pathlib import Path

import pytest
import rclpy
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter

from smhr_core.config import ConfigError
from smhr_ros.hands_node import HandsNode
from smhr_ros.node_config import (
    NodeConfig,
    camera_name_from_topic,
    from_parameters,
    parameter_descriptors,
    sibling_topic,
)


def test_defaults_are_valid_and_resolve_per_camera_settings() -> None:
    config = NodeConfig()
    assert config.resolved_camera_names() == ["camera"]
    assert config.decode_config().mode == "robot"
    assert config.decode_config().second_look and config.decode_config().second_look_size == 0
    assert config.decode_config().mirror_reading
    assert not NodeConfig(mirror_reading=False).decode_config().mirror_reading
    two = NodeConfig(image_topics=["/left/image_raw", "/right/color/image_raw"])
    assert two.resolved_camera_names() == ["left", "right/color"]
    named = NodeConfig(image_topics=["/a/image", "/b/image"], camera_names=["front", ""])
    assert named.resolved_camera_names() == ["front", "b"]


@pytest.mark.parametrize(
    ("topic", "index", "name"),
    [
        ("/left/image_raw", 0, "left"),
        ("image", 3, "camera3"),
        ("/a/b/img", 0, "a/b"),
        ("~/img", 1, "camera1"),
    ],
)
def test_camera_names_come_from_the_topic_namespace(topic: str, index: int, name: str) -> None:
    assert camera_name_from_topic(topic, index) == name


def test_sibling_topics() -> None:
    assert sibling_topic("/camera/image_raw", "camera_info") == "/camera/camera_info"
    assert sibling_topic("image", "camera_info") == "camera_info"
    assert sibling_topic("/image", "camera_info") == "/camera_info"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"image_topics": []}, "'image_topics': give at least one"),
        ({"image_topics": ["/a b"]}, "'image_topics': '/a b' is not a valid topic name"),
        ({"image_topics": ["/a/i", "/a/i"]}, "'image_topics': duplicate"),
        (
            {"image_topics": ["/a/i", "/b/i"], "depth_topics": ["/d"]},
            "'depth_topics'.*one entry per image",
        ),
        ({"camera_info_topics": ["bad topic"]}, "'camera_info_topics'"),
        (
            {"image_topics": ["/x/a/i", "/x/a/j"]},
            "'camera_names': cameras must have distinct names",
        ),
        ({"camera_names": ["9lives"]}, "'camera_names': '9lives' is not a valid name"),
        (
            {"image_transport": "theora"},
            r"'image_transport': 'theora' is not one of \['raw', 'compressed'\]",
        ),
        ({"image_qos": "fast"}, "'image_qos'.*sensor_data"),
        ({"decode_mode": "greedy"}, "'decode_mode'.*reference"),
        ({"device": "gpu0"}, "'device': 'gpu0' is not one of"),
        (
            {"precision": "half"},
            r"'precision': 'half' is not one of \['auto', 'float32', 'bfloat16', 'float16'\]",
        ),
        ({"score_threshold": 1.5}, r"'score_threshold': 1.5 is outside \[0.0, 1.0\]"),
        ({"max_hands": 0}, r"'max_hands': 0 is outside \[1, 64\]"),
        ({"max_rate_hz": 30}, "'max_rate_hz': 30 must be a float"),
        ({"marker_left_color": [1.0, 0.0, 0.0]}, r"'marker_left_color'.*\[r, g, b, a\]"),
        ({"marker_right_color": [1.0, 0.0, 0.0, 2.0]}, "'marker_right_color'"),
        ({"depth_range_m": [2.0, 1.0]}, "'depth_range_m'.*0 < min < max"),
        (
            {"smoothing_enabled": True, "tracking_enabled": False},
            "'smoothing_enabled'.*tracking_enabled",
        ),
        ({"publish_hands": False, "publish_markers": False}, "publish nothing"),
        ({"tracking_enabled": "yes"}, "'tracking_enabled': 'yes' must be a bool"),
        ({"second_look_fraction": 0.0}, r"'second_look_fraction': 0.0 is outside \[0.05, 1.0\]"),
        ({"mirror_reading": 1}, "'mirror_reading': 1 must be a bool"),
        ({"second_look_size": 32}, r"'second_look_size': 32 must be 0 or within \[64, 2048\]"),
    ],
)
def test_invalid_values_name_the_parameter_and_what_is_allowed(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        NodeConfig(**changes)


def test_from_parameters_accepts_ros_value_types_and_refuses_unknown_names() -> None:
    config = from_parameters(
        {"image_topics": ("/c/image",), "marker_left_color": array.array("d", [0.0, 0.0, 1.0, 1.0])}
    )
    assert config.image_topics == ["/c/image"] and config.marker_left_color == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match=r"unknown parameter.*'colour'"):
        from_parameters({"colour": 1})


def test_changes_at_run_time_are_limited_to_the_live_settings() -> None:
    config = NodeConfig()
    changed = config.with_changes({"max_rate_hz": 5.0, "smoothing_enabled": True})
    assert changed.max_rate_hz == 5.0 and changed.smoothing_enabled
    assert config.with_changes({"checkpoint": ""}) == config  # same value: not a change
    with pytest.raises(ConfigError, match="'checkpoint' is fixed while the node runs"):
        config.with_changes({"checkpoint": "/other.pth"})
    with pytest.raises(ConfigError, match="'nope' is not a parameter"):
        config.with_changes({"nope": 1})


def test_every_field_has_a_descriptor_with_type_description_and_range() -> None:
    descriptors = parameter_descriptors()
    assert list(descriptors) == [f.name for f in fields(NodeConfig)]
    for f in fields(NodeConfig):
        d = descriptors[f.name]
        assert d.description and d.read_only == f.metadata["read_only"]
        if f.metadata["range"] is not None:
            assert d.integer_range or d.floating_point_range
    assert descriptors["max_hands"].type == ParameterType.PARAMETER_INTEGER
    assert descriptors["max_hands"].integer_range[0].to_value == 64
    assert descriptors["image_topics"].type == ParameterType.PARAMETER_STRING_ARRAY
    assert descriptors["marker_left_color"].type == ParameterType.PARAMETER_DOUBLE_ARRAY
    assert "compressed" in descriptors["image_transport"].additional_constraints
    assert descriptors["checkpoint"].read_only and not descriptors["max_rate_hz"].read_only


@pytest.fixture
def context(worker_domain_id: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=worker_domain_id)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ([Parameter("max_hands", value=100)], "'max_hands'.*expected integer in \\[1, 64\\]"),
        ([Parameter("max_rate_hz", value=30)], "'max_rate_hz'.*expected double"),
        ([Parameter("decode_mode", value="fast")], "'decode_mode': 'fast' is not one of"),
        ([Parameter("colour", value=1)], r"unknown parameter\(s\) \['colour'\]"),
    ],
)
def test_node_refuses_invalid_parameters_at_start(context, overrides, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        HandsNode(context=context, parameter_overrides=overrides)


def test_node_accepts_live_changes_and_rejects_the_others_with_a_reason(
    context, random_checkpoint: Path
) -> None:
    node = HandsNode(
        context=context,
        parameter_overrides=[
            Parameter("checkpoint", value=str(random_checkpoint)),
            Parameter("device", value="cpu"),
            Parameter("torch_threads", value=1),
        ],
    )
    try:
        ok = node.set_parameters([Parameter("max_rate_hz", value=7.5)])[0]
        assert ok.successful and node.get_parameter("max_rate_hz").value == 7.5
        read_only = node.set_parameters([Parameter("image_topics", value=["/x/image"])])[0]
        assert not read_only.successful and "image_topics" in read_only.reason
        bad_colour = node.set_parameters([Parameter("marker_left_color", value=[1.0, 0.0])])[0]
        assert not bad_colour.successful and "'marker_left_color'" in bad_colour.reason
        out_of_range = node.set_parameters([Parameter("tracking_max_cost", value=-1.0)])[0]
        assert not out_of_range.successful
        inconsistent = node.set_parameters([Parameter("tracking_enabled", value=False)])
        assert inconsistent[0].successful  # smoothing is off by default
        refused = node.set_parameters([Parameter("smoothing_enabled", value=True)])[0]
        assert not refused.successful and "tracking_enabled" in refused.reason
        assert node.get_parameter("smoothing_enabled").value is False
    finally:
        node.destroy_node()
