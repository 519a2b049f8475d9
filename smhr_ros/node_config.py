"""The hands node's parameters: one validated dataclass, declared as ROS parameters.

Every field of `NodeConfig` is a ROS parameter of the same name. Its metadata gives the
description, the allowed range or choices and whether it may change while the node runs
(`read_only`: topics, the model and the outputs are fixed at start; colours, rate, tracking,
smoothing and depth-correction settings may change at run time).

Per-camera lists (`camera_info_topics`, `depth_topics`, `camera_names`) either have one entry per
image topic or are `[""]`; an empty entry means the default for that camera (the sibling
`camera_info` topic, no depth, the name derived from the image topic).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidTopicNameException
from rclpy.validate_topic_name import validate_topic_name

from smhr_core.config import DECODE_MODES, PRECISIONS, ConfigError, DecodeConfig
from smhr_ros.node_parameters import build_descriptor

IMAGE_TRANSPORTS = ("raw", "compressed")
IMAGE_QOS_PROFILES = ("sensor_data", "reliable")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
_CAMERA_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")


def _meta(
    description: str,
    *,
    read_only: bool,
    range_: tuple[float, float] | None = None,
    choices: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    return {
        "description": description,
        "read_only": read_only,
        "range": range_,
        "choices": choices,
    }


_RESTART = "fixed while the node runs (restart the node to change it)"


@dataclass(frozen=True)
class NodeConfig:
    """All parameters of `hands_node`, validated on construction (raises `ConfigError`)."""

    image_topics: list[str] = field(
        default_factory=lambda: ["/camera/image_raw"],
        metadata=_meta(
            "Image topics, one per camera (sensor_msgs/Image; with image_transport "
            "'compressed' the node subscribes to '<topic>/compressed'). Relative names resolve "
            "in the node's namespace.",
            read_only=True,
        ),
    )
    camera_info_topics: list[str] = field(
        default_factory=lambda: [""],
        metadata=_meta(
            "CameraInfo topic per camera, or [''] / '' entries for the sibling 'camera_info' "
            "of the image topic (e.g. /camera/image_raw -> /camera/camera_info).",
            read_only=True,
        ),
    )
    depth_topics: list[str] = field(
        default_factory=lambda: [""],
        metadata=_meta(
            "Depth image aligned to each camera's image (16UC1 millimetres or 32FC1 metres), "
            "used to correct each hand's distance; [''] / '' entries: no depth for that camera.",
            read_only=True,
        ),
    )
    camera_names: list[str] = field(
        default_factory=lambda: [""],
        metadata=_meta(
            "Name of each camera, used to name its outputs when there are several cameras "
            "('<name>/hands', ...); [''] / '' entries: derived from the image topic "
            "(/left/image_raw -> 'left').",
            read_only=True,
        ),
    )
    image_transport: str = field(
        default="raw",
        metadata=_meta(
            "'raw' for sensor_msgs/Image, 'compressed' for sensor_msgs/CompressedImage on "
            "'<image topic>/compressed'.",
            read_only=True,
            choices=IMAGE_TRANSPORTS,
        ),
    )
    image_qos: str = field(
        default="sensor_data",
        metadata=_meta(
            "QoS of the image, camera info and depth subscriptions: 'sensor_data' (best effort, as "
            "camera drivers publish) or 'reliable'.",
            read_only=True,
            choices=IMAGE_QOS_PROFILES,
        ),
    )
    checkpoint: str = field(
        default="",
        metadata=_meta(
            "Network checkpoint (.pth); '' for the default checkpoint shipped with smhr.",
            read_only=True,
        ),
    )
    hand_model_dir: str = field(
        default="",
        metadata=_meta(
            "Directory with MANO_RIGHT.pkl and MANO_LEFT.pkl; '' for the shipped open hand model.",
            read_only=True,
        ),
    )
    device: str = field(
        default="auto",
        metadata=_meta(
            "Torch device: 'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N' "
            "or 'mps'.",
            read_only=True,
        ),
    )
    precision: str = field(
        default="auto",
        metadata=_meta(
            "The network's floating-point type: 'auto' (float16 on CUDA, else float32), "
            "'float32', 'bfloat16' (CPU or CUDA; fast on CPUs with AMX or AVX512-BF16) or "
            "'float16' (CUDA).",
            read_only=True,
            choices=PRECISIONS,
        ),
    )
    torch_threads: int = field(
        default=0,
        metadata=_meta(
            "CPU threads torch may use for inference; 0: torch's default (all cores).",
            read_only=True,
            range_=(0, 256),
        ),
    )
    decode_mode: str = field(
        default="robot",
        metadata=_meta(
            "'robot': hands above score_threshold, at most max_hands; 'reference': the release "
            "demo's fixed top-K without a threshold.",
            read_only=True,
            choices=DECODE_MODES,
        ),
    )
    score_threshold: float = field(
        default=0.3,
        metadata=_meta(
            "Minimum detection score (heatmap peak after the sigmoid) in 'robot' mode.",
            read_only=True,
            range_=(0.0, 1.0),
        ),
    )
    max_hands: int = field(
        default=4,
        metadata=_meta("Maximum hands per image in 'robot' mode.", read_only=True, range_=(1, 64)),
    )
    fit_keypoints: bool = field(
        default=True,
        metadata=_meta(
            "Fit each hand's mesh to the joints located by the model's per-joint heatmaps (models "
            "with the 'keypoints' head, such as the default); false: the regressed hand as is.",
            read_only=True,
        ),
    )
    second_look: bool = field(
        default=True,
        metadata=_meta(
            "With fit_keypoints: find each hand again in a crop around it, scaled to the size the "
            "network reads best, and keep that hand (more accurate; one more forward per frame, "
            "batched over its hands).",
            read_only=True,
        ),
    )
    mirror_reading: bool = field(
        default=True,
        metadata=_meta(
            "With fit_keypoints: read each hand (joint heatmaps, parameters, side) from the image "
            "and from its mirror image and average the two (more accurate; one more forward where "
            "the joints are read).",
            read_only=True,
        ),
    )
    second_look_fraction: float = field(
        default=0.33,
        metadata=_meta(
            "The hand's size in the second look's crop, as a fraction of the network's input.",
            read_only=True,
            range_=(0.05, 1.0),
        ),
    )
    second_look_size: int = field(
        default=0,
        metadata=_meta(
            "The second look's crop side, pixels (smaller is faster, less accurate); 0: the "
            "network's input resolution.",
            read_only=True,
            range_=(0, 2048),
        ),
    )
    publish_hands: bool = field(
        default=True, metadata=_meta("Publish 'hands' (smhr_ros/HandArray).", read_only=True)
    )
    publish_vertices: bool = field(
        default=True,
        metadata=_meta("Fill Hand.vertices (778 x 3 mesh vertices) in 'hands'.", read_only=True),
    )
    publish_markers: bool = field(
        default=True,
        metadata=_meta(
            "Publish 'markers' (visualization_msgs/MarkerArray) for RViz.", read_only=True
        ),
    )
    publish_overlay: bool = field(
        default=False,
        metadata=_meta(
            "Publish 'overlay' (sensor_msgs/Image): meshes drawn over the input.", read_only=True
        ),
    )
    max_rate_hz: float = field(
        default=30.0,
        metadata=_meta(
            "Maximum batches processed per second (frames in between are dropped); 0: unlimited.",
            read_only=False,
            range_=(0.0, 1000.0),
        ),
    )
    marker_left_color: list[float] = field(
        default_factory=lambda: [0.2, 0.6, 1.0, 0.8],
        metadata=_meta("Mesh colour of left hands: [r, g, b, a], each in [0, 1].", read_only=False),
    )
    marker_right_color: list[float] = field(
        default_factory=lambda: [1.0, 0.45, 0.2, 0.8],
        metadata=_meta(
            "Mesh colour of right hands: [r, g, b, a], each in [0, 1].", read_only=False
        ),
    )
    marker_skeleton_color: list[float] = field(
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0],
        metadata=_meta(
            "Colour of skeleton lines, joints and labels: [r, g, b, a], each in [0, 1].",
            read_only=False,
        ),
    )
    marker_lifetime_s: float = field(
        default=0.5,
        metadata=_meta(
            "Lifetime of markers, seconds, so RViz drops them if the node stops; 0: forever "
            "(stale hands are also deleted explicitly).",
            read_only=False,
            range_=(0.0, 60.0),
        ),
    )
    tracking_enabled: bool = field(
        default=True,
        metadata=_meta(
            "Give hands ids that are stable across frames (Hand.id; 0 when off).", read_only=False
        ),
    )
    tracking_max_missed_frames: int = field(
        default=5,
        metadata=_meta(
            "Frames a tracked hand may go unseen before its id is retired.",
            read_only=False,
            range_=(0, 1000),
        ),
    )
    tracking_max_cost: float = field(
        default=1.5,
        metadata=_meta(
            "Largest match cost between a hand and a track: centre distance in box diagonals plus "
            "|log size ratio|; above it the hand starts a new track.",
            read_only=False,
            range_=(0.0, 100.0),
        ),
    )
    smoothing_enabled: bool = field(
        default=False,
        metadata=_meta(
            "One Euro filter on each tracked hand's joints, mesh and MANO parameters (needs "
            "tracking_enabled).",
            read_only=False,
        ),
    )
    smoothing_min_cutoff_hz: float = field(
        default=1.0,
        metadata=_meta(
            "One Euro minimum cutoff frequency, Hz: lower smooths more at rest.",
            read_only=False,
            range_=(0.001, 100.0),
        ),
    )
    smoothing_beta_position: float = field(
        default=20.0,
        metadata=_meta(
            "One Euro speed coefficient for 3D positions, Hz per (m/s): higher lags less "
            "when moving.",
            read_only=False,
            range_=(0.0, 10000.0),
        ),
    )
    smoothing_beta_rotation: float = field(
        default=1.0,
        metadata=_meta(
            "One Euro speed coefficient for MANO parameters, Hz per (rad/s).",
            read_only=False,
            range_=(0.0, 10000.0),
        ),
    )
    smoothing_d_cutoff_hz: float = field(
        default=1.0,
        metadata=_meta(
            "One Euro cutoff frequency of the speed estimate, Hz.",
            read_only=False,
            range_=(0.001, 100.0),
        ),
    )
    depth_max_age_s: float = field(
        default=0.1,
        metadata=_meta(
            "Largest stamp difference between an image and the depth image used for it, seconds.",
            read_only=False,
            range_=(0.0, 10.0),
        ),
    )
    depth_window_px: int = field(
        default=5,
        metadata=_meta(
            "Side of the square window around each keypoint whose median depth is measured, "
            "pixels.",
            read_only=False,
            range_=(1, 31),
        ),
    )
    depth_min_points: int = field(
        default=5,
        metadata=_meta(
            "Fewest keypoints with a valid, consistent measured depth needed to correct a hand.",
            read_only=False,
            range_=(1, 21),
        ),
    )
    depth_joint_offset_m: float = field(
        default=0.01,
        metadata=_meta(
            "How far joint centres lie behind the skin surface a depth camera sees, metres.",
            read_only=False,
            range_=(0.0, 0.1),
        ),
    )
    depth_outlier_m: float = field(
        default=0.03,
        metadata=_meta(
            "Smallest tolerance around the median depth offset before a keypoint is an outlier "
            "(occluded or off the hand), metres; the tolerance grows with the spread (3 MADs).",
            read_only=False,
            range_=(0.001, 1.0),
        ),
    )
    depth_range_m: list[float] = field(
        default_factory=lambda: [0.1, 5.0],
        metadata=_meta("[min, max] measured depth accepted as valid, metres.", read_only=False),
    )
    diagnostics_period_s: float = field(
        default=1.0,
        metadata=_meta(
            "Period of /diagnostics messages, seconds.", read_only=True, range_=(0.1, 60.0)
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            if isinstance(getattr(self, f.name), tuple):
                object.__setattr__(self, f.name, list(getattr(self, f.name)))
            _check_scalar(f.name, getattr(self, f.name), f.metadata, f.type)
        topics = self.image_topics
        if not topics:
            raise ConfigError("parameter 'image_topics': give at least one image topic")
        for topic in topics:
            _check_topic("image_topics", topic)
        if len(set(topics)) != len(topics):
            raise ConfigError(f"parameter 'image_topics': duplicate topics in {topics}")
        for name in ("camera_info_topics", "depth_topics", "camera_names"):
            values = getattr(self, name)
            if values != [""] and len(values) != len(topics):
                raise ConfigError(
                    f"parameter '{name}': {values} must have one entry per image topic "
                    f"({len(topics)}: {topics}) or be [''] for the defaults"
                )
        for name in ("camera_info_topics", "depth_topics"):
            for topic in getattr(self, name):
                if topic:
                    _check_topic(name, topic)
        names = self.resolved_camera_names()
        for name in names:
            if not _CAMERA_NAME_PATTERN.match(name):
                raise ConfigError(
                    f"parameter 'camera_names': {name!r} is not a valid name (letters, digits and "
                    "'_', starting with a letter; '/' separates namespaces)"
                )
        if len(set(names)) != len(names):
            raise ConfigError(
                f"parameter 'camera_names': cameras must have distinct names, got {names}; set "
                "camera_names explicitly"
            )
        if not _DEVICE_PATTERN.match(self.device):
            raise ConfigError(
                f"parameter 'device': {self.device!r} is not one of 'auto', 'cpu', 'cuda', "
                "'cuda:N', 'mps'"
            )
        for name in ("marker_left_color", "marker_right_color", "marker_skeleton_color"):
            color = getattr(self, name)
            if len(color) != 4 or not all(0.0 <= c <= 1.0 for c in color):
                raise ConfigError(
                    f"parameter '{name}': {color} must be [r, g, b, a] with each value in [0, 1]"
                )
        if len(self.depth_range_m) != 2 or not 0.0 < self.depth_range_m[0] < self.depth_range_m[1]:
            raise ConfigError(
                f"parameter 'depth_range_m': {self.depth_range_m} must be [min, max] metres with "
                "0 < min < max"
            )
        if self.smoothing_enabled and not self.tracking_enabled:
            raise ConfigError(
                "parameter 'smoothing_enabled': smoothing follows tracked hands; set "
                "tracking_enabled to true as well"
            )
        if self.second_look_size != 0 and not 64 <= self.second_look_size <= 2048:
            raise ConfigError(
                f"parameter 'second_look_size': {self.second_look_size} must be 0 or within "
                "[64, 2048] pixels"
            )
        if not (self.publish_hands or self.publish_markers or self.publish_overlay):
            raise ConfigError(
                "parameters 'publish_hands', 'publish_markers', 'publish_overlay': all are false, "
                "the node would publish nothing"
            )

    def decode_config(self) -> DecodeConfig:
        """The decoding settings for `smhr_core`."""
        return DecodeConfig(
            mode=self.decode_mode,
            score_threshold=self.score_threshold,
            max_hands=self.max_hands,
            fit_keypoints=self.fit_keypoints,
            second_look=self.second_look,
            second_look_fraction=self.second_look_fraction,
            second_look_size=self.second_look_size,
            mirror_reading=self.mirror_reading,
        )

    def resolved_camera_names(self) -> list[str]:
        """One name per image topic: the given name, else derived from the topic."""
        given = self.camera_names if self.camera_names != [""] else [""] * len(self.image_topics)
        return [
            name or camera_name_from_topic(topic, index)
            for index, (name, topic) in enumerate(zip(given, self.image_topics, strict=True))
        ]

    def with_changes(self, changes: Mapping[str, Any]) -> NodeConfig:
        """A new config with `changes` applied, for parameter changes at run time.

        Raises `ConfigError` naming the parameter when it is unknown, read-only or invalid.
        """
        known = {f.name: f for f in fields(self)}
        plain = {name: _plain(value) for name, value in changes.items()}
        for name, value in plain.items():
            if name not in known:
                raise ConfigError(f"parameter '{name}' is not a parameter of hands_node")
            if known[name].metadata["read_only"] and value != getattr(self, name):
                raise ConfigError(f"parameter '{name}' is {_RESTART}")
        return replace(self, **plain)

    def to_parameters(self) -> dict[str, Any]:
        """Field name -> value, as ROS parameter values."""
        return asdict(self)


def camera_name_from_topic(topic: str, index: int) -> str:
    """Namespace of an image topic: '/left/image_raw' -> 'left', '/a/b/image' -> 'a/b'.

    A topic without a namespace ('image_raw') gives 'camera<index>'.
    """
    parts = [p for p in topic.strip("/~").split("/") if p]
    return "/".join(parts[:-1]) or f"camera{index}"


def sibling_topic(image_topic: str, name: str) -> str:
    """The topic `name` beside `image_topic`: '/cam/image_raw' -> '/cam/<name>'."""
    head, _, _ = image_topic.rpartition("/")
    if not head and image_topic.startswith("/"):
        return "/" + name
    return f"{head}/{name}" if head else name


def _check_topic(parameter: str, topic: str) -> None:
    try:
        validate_topic_name(topic)
    except InvalidTopicNameException as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"parameter '{parameter}': {topic!r} is not a valid topic name ({reason})"
        ) from None


def _check_scalar(name: str, value: Any, metadata: Mapping[str, Any], annotation: Any) -> None:
    expected = {
        "bool": bool,
        "int": int,
        "float": float,
        "str": str,
        "list[str]": str,
        "list[float]": float,
    }[str(annotation)]
    if str(annotation).startswith("list["):
        if not isinstance(value, list) or not all(_is_type(v, expected) for v in value):
            raise ConfigError(
                f"parameter '{name}': {value!r} must be a list of {expected.__name__} values"
            )
        return
    if not _is_type(value, expected):
        raise ConfigError(
            f"parameter '{name}': {value!r} must be a {expected.__name__}"
            + (" (write e.g. 30.0, not 30)" if expected is float else "")
        )
    if metadata["range"] is not None:
        low, high = metadata["range"]
        if not low <= value <= high:
            raise ConfigError(f"parameter '{name}': {value!r} is outside [{low}, {high}]")
    if metadata["choices"] is not None and value not in metadata["choices"]:
        raise ConfigError(
            f"parameter '{name}': {value!r} is not one of {list(metadata['choices'])}"
        )


def _is_type(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, float) and math.isfinite(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


_ROS_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "float": ParameterType.PARAMETER_DOUBLE,
    "str": ParameterType.PARAMETER_STRING,
    "list[str]": ParameterType.PARAMETER_STRING_ARRAY,
    "list[float]": ParameterType.PARAMETER_DOUBLE_ARRAY,
}


def parameter_descriptors() -> dict[str, ParameterDescriptor]:
    """One `ParameterDescriptor` per `NodeConfig` field, in declaration order."""
    descriptors = {}
    for f in fields(NodeConfig):
        meta = f.metadata
        descriptors[f.name] = build_descriptor(
            f.name,
            meta["description"],
            read_only=meta["read_only"],
            integer=str(f.type) == "int",
            value_range=meta["range"],
            choices=meta["choices"],
            parameter_type=_ROS_TYPES[str(f.type)],
        )
    return descriptors


def default_parameters() -> dict[str, Any]:
    """Field name -> default value of every parameter."""
    return NodeConfig().to_parameters()


def from_parameters(values: Mapping[str, Any]) -> NodeConfig:
    """Build a `NodeConfig` from ROS parameter values (arrays may arrive as tuples/arrays)."""
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; hands_node has {sorted(known)}")
    return NodeConfig(**{name: _plain(value) for name, value in values.items()})


def _plain(value: Any) -> Any:
    # rclpy returns double arrays as array.array and YAML lists may arrive as tuples.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value
