"""hands_node: multi-hand 3D mesh reconstruction for ROS 2 cameras.

Run it with `ros2 run smhr_ros hands_node --ros-args --params-file config/hands.yaml` (or the
`hands_node` console script after `pip install`); every parameter is described in
`smhr_ros.node_config` and `config/hands.yaml`.

Inputs, per camera `i` of the `image_topics` list:
- the image: sensor_msgs/Image on `image_topics[i]` (rgb8, bgr8, rgba8, bgra8, mono8, mono16), or
  sensor_msgs/CompressedImage on `image_topics[i]/compressed` with `image_transport: compressed`;
- sensor_msgs/CameraInfo on `camera_info_topics[i]`, by default the sibling `camera_info` of the
  image topic (`/cam/image_raw` -> `/cam/camera_info`); its K makes the 3D output metric in the
  camera's optical frame. Without it the network's virtual camera is assumed (logged once, and
  `HandArray.intrinsics_assumed` is true);
- optionally an aligned depth image (16UC1 mm or 32FC1 m) on `depth_topics[i]`, used to correct
  each hand's distance (`Hand.depth_corrected`).
Image subscriptions use the sensor-data QoS (best effort) unless `image_qos: reliable`.

Outputs, relative names resolved in the node's namespace:
- one camera: `hands` (smhr_ros/HandArray), `markers` (visualization_msgs/MarkerArray),
  `overlay` (sensor_msgs/Image, when `publish_overlay` is true);
- several cameras: the same three under each camera's name, `<camera_name>/hands`,
  `<camera_name>/markers`, `<camera_name>/overlay`. A camera's name is `camera_names[i]`, or the
  namespace of its image topic (`/left/image_raw` -> `left/hands`; a topic without a namespace
  gives `camera<i>`). This mirrors how camera drivers put each camera under its own namespace;
- `/diagnostics` (diagnostic_msgs/DiagnosticArray): one status per camera and one for the model.
Each HandArray carries the header (stamp and frame_id) of the image it was computed from.

Processing: subscription callbacks only store the newest message per camera; a worker thread
takes the waiting frames of all cameras and runs them through one batched forward pass, at most
`max_rate_hz` times per second. Frames replaced before processing are dropped and counted.
Malformed inputs (unknown encoding, step/size mismatch, truncated data, zero size, undecodable
compressed data, non-finite network output, invalid CameraInfo or depth) are logged once per
kind, counted in /diagnostics (`errors.<kind>`), and the node keeps serving.

A missing or invalid checkpoint, hand model or parameter at start is reported in one error line
and `main()` returns a non-zero exit code.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
import rclpy.logging
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from smhr_core.config import ConfigError
from smhr_core.overlay import draw_hands
from smhr_core.predictor import Predictor, PredictorError
from smhr_core.results import Hand, ImageHands
from smhr_ros.depth_correction import DepthCorrectionSettings, correct_hand_depth
from smhr_ros.diagnostics import NodeStatistics
from smhr_ros.frame_buffer import BatchWorker, Frame, FrameBuffer
from smhr_ros.hand_messages import image_hands_to_msg
from smhr_ros.image_conversion import (
    ImageConversionError,
    bgr_to_image,
    compressed_to_bgr,
    depth_to_metres,
    image_to_bgr,
)
from smhr_ros.markers import HandMarkers, MarkerStyle
from smhr_ros.msg import HandArray
from smhr_ros.node_config import (
    NodeConfig,
    from_parameters,
    parameter_descriptors,
    sibling_topic,
)
from smhr_ros.smoothing import HandSmoother
from smhr_ros.spinning import spin_until
from smhr_ros.tracking import HandTracker

NODE_NAME = "hands_node"
_DEPTH_FRAMES_KEPT = 10
_OUTPUT_QOS = 5
# Parameters rclpy itself may be given (e.g. by launch) that are not hands_node settings.
_ROS_OWN_PARAMETERS = ("use_sim_time", "start_type_description_service")

# Error kinds counted in /diagnostics besides ImageConversionError kinds.
NON_FINITE_OUTPUT = "non_finite_output"
INFERENCE_ERROR = "inference_error"
INVALID_CAMERA_INFO = "invalid_camera_info"
CAMERA_INFO_SIZE_MISMATCH = "camera_info_size_mismatch"
DEPTH_UNAVAILABLE = "depth_unavailable"


@dataclass
class _Camera:
    """What the node keeps per camera."""

    index: int
    name: str
    image_topic: str
    info_topic: str
    depth_topic: str | None
    output_prefix: str
    camera_matrix: np.ndarray | None = None
    info_size: tuple[int, int] = (0, 0)
    depth_frames: deque[Image] = field(default_factory=lambda: deque(maxlen=_DEPTH_FRAMES_KEPT))
    tracker: HandTracker = field(default_factory=HandTracker)
    smoother: HandSmoother = field(default_factory=HandSmoother)
    markers: HandMarkers = field(default_factory=HandMarkers)
    publishers: dict[str, object] = field(default_factory=dict)
    warned_assumed_intrinsics: bool = False


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


class HandsNode(Node):
    """The hands node (see the module docstring). Raises ConfigError or PredictorError at start."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._config = self._declare_parameters()
        if self._config.torch_threads > 0:
            torch.set_num_threads(self._config.torch_threads)
        config = self._config
        self.predictor = Predictor(
            config.checkpoint or None,
            config.hand_model_dir or None,
            device=config.device,
            precision=config.precision,
            decode=config.decode_config(),
            with_vertices=config.publish_vertices
            or config.publish_markers
            or config.publish_overlay,
        )
        # The first forward pays for lazy initialisation; keep that out of the first frame.
        self.predictor.predict([np.zeros((64, 64, 3), dtype=np.uint8)])
        self.get_logger().info(
            f"model {self.predictor.model_description} on {self.predictor.device}, hand model "
            f"{self.predictor.hand_model_id}"
        )
        self._cameras = self._make_cameras(config)
        self._stats = NodeStatistics(
            [c.name for c in self._cameras], [c.image_topic for c in self._cameras]
        )
        self._buffer = FrameBuffer(len(self._cameras))
        self._applied_config: NodeConfig | None = None
        self._apply_runtime_settings(config)
        self._subscribe(config)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(
            config.diagnostics_period_s, self._publish_diagnostics
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = BatchWorker(
            self._buffer, self._process, self._on_worker_error, config.max_rate_hz
        )
        self._worker.start()
        outputs = ", ".join(
            self.resolve_topic_name(f"{c.output_prefix}hands") for c in self._cameras
        )
        self.get_logger().info(f"serving {len(self._cameras)} camera(s); hands on {outputs}")

    # --- parameters -------------------------------------------------------------------------

    def _declare_parameters(self) -> NodeConfig:
        defaults = NodeConfig().to_parameters()
        descriptors = parameter_descriptors()
        known = set(defaults)
        # rclpy keeps parameter overrides of undeclared names silently; refuse them instead, so
        # a typo in a params file is an error and not a default quietly in use.
        unknown = sorted(
            name
            for name in self._parameter_overrides
            if name not in known
            and name not in _ROS_OWN_PARAMETERS
            and not name.startswith("qos_overrides.")
        )
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {unknown} for {NODE_NAME}; its parameters are "
                f"{sorted(known)}"
            )
        values = {}
        for name, default in defaults.items():
            descriptor = descriptors[name]
            try:
                values[name] = self.declare_parameter(name, default, descriptor).value
            except (InvalidParameterTypeException, InvalidParameterValueException) as error:
                allowed = Parameter.Type(descriptor.type).name.lower()
                if descriptor.floating_point_range:
                    r = descriptor.floating_point_range[0]
                    allowed += f" in [{r.from_value}, {r.to_value}]"
                if descriptor.integer_range:
                    r = descriptor.integer_range[0]
                    allowed += f" in [{r.from_value}, {r.to_value}]"
                raise ConfigError(
                    f"parameter '{name}': {_one_line(error)}; expected {allowed}"
                ) from None
        return from_parameters(values)

    def _on_set_parameters(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        try:
            config = self._config.with_changes({p.name: p.value for p in parameters})
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        # The worker thread applies it before its next batch: trackers and smoothers are only
        # ever touched from that thread.
        self._config = config
        return SetParametersResult(successful=True)

    @staticmethod
    def _smoothing_settings(config: NodeConfig) -> tuple[float, float, float, float]:
        return (
            config.smoothing_min_cutoff_hz,
            config.smoothing_beta_position,
            config.smoothing_beta_rotation,
            config.smoothing_d_cutoff_hz,
        )

    def _apply_runtime_settings(self, config: NodeConfig) -> None:
        """Apply the settings that may change while the node runs."""
        previous = self._applied_config
        smoothing = self._smoothing_settings(config)
        for camera in self._cameras:
            camera.tracker.max_missed_frames = config.tracking_max_missed_frames
            camera.tracker.max_cost = config.tracking_max_cost
            if previous is not None and previous.tracking_enabled != config.tracking_enabled:
                camera.tracker.reset()
            if previous is None or smoothing != self._smoothing_settings(previous):
                camera.smoother = HandSmoother(*smoothing)
        self._marker_style = MarkerStyle(
            left_rgba=tuple(config.marker_left_color),
            right_rgba=tuple(config.marker_right_color),
            skeleton_rgba=tuple(config.marker_skeleton_color),
            lifetime_s=config.marker_lifetime_s,
        )
        self._depth_settings = DepthCorrectionSettings(
            window_px=config.depth_window_px,
            min_points=config.depth_min_points,
            joint_offset_m=config.depth_joint_offset_m,
            outlier_m=config.depth_outlier_m,
            range_m=(config.depth_range_m[0], config.depth_range_m[1]),
        )
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.set_max_rate(config.max_rate_hz)
        self._applied_config = config

    # --- topics -----------------------------------------------------------------------------

    def _make_cameras(self, config: NodeConfig) -> list[_Camera]:
        names = config.resolved_camera_names()
        several = len(config.image_topics) > 1
        cameras = []
        for index, image_topic in enumerate(config.image_topics):
            info = config.camera_info_topics[index] if config.camera_info_topics != [""] else ""
            depth = config.depth_topics[index] if config.depth_topics != [""] else ""
            cameras.append(
                _Camera(
                    index=index,
                    name=names[index],
                    image_topic=image_topic,
                    info_topic=info or sibling_topic(image_topic, "camera_info"),
                    depth_topic=depth or None,
                    output_prefix=f"{names[index]}/" if several else "",
                )
            )
        return cameras

    def _subscribe(self, config: NodeConfig) -> None:
        if config.image_qos == "sensor_data":
            qos = qos_profile_sensor_data
        else:
            qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        for camera in self._cameras:
            if config.image_transport == "compressed":
                self.create_subscription(
                    CompressedImage,
                    f"{camera.image_topic}/compressed",
                    lambda msg, c=camera.index: self._on_image(c, msg),
                    qos,
                )
            else:
                self.create_subscription(
                    Image,
                    camera.image_topic,
                    lambda msg, c=camera.index: self._on_image(c, msg),
                    qos,
                )
            self.create_subscription(
                CameraInfo,
                camera.info_topic,
                lambda msg, c=camera: self._on_camera_info(c, msg),
                qos,
            )
            if camera.depth_topic is not None:
                self.create_subscription(
                    Image, camera.depth_topic, lambda msg, c=camera: c.depth_frames.append(msg), qos
                )
            prefix = camera.output_prefix
            if config.publish_hands:
                camera.publishers["hands"] = self.create_publisher(
                    HandArray, f"{prefix}hands", _OUTPUT_QOS
                )
            if config.publish_markers:
                camera.publishers["markers"] = self.create_publisher(
                    MarkerArray, f"{prefix}markers", _OUTPUT_QOS
                )
            if config.publish_overlay:
                camera.publishers["overlay"] = self.create_publisher(
                    Image, f"{prefix}overlay", _OUTPUT_QOS
                )

    def _on_image(self, camera: int, msg: Image | CompressedImage) -> None:
        replaced = self._buffer.put(camera, msg)
        self._stats.frame_received(camera, replaced)

    def _on_camera_info(self, camera: _Camera, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        valid = (
            np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0 and np.allclose(k[2], [0, 0, 1])
        )
        if not valid:
            self._report(
                INVALID_CAMERA_INFO,
                camera.index,
                f"CameraInfo on {camera.info_topic} has an unusable K {k.tolist()} (need finite, "
                "fx > 0, fy > 0, last row 0 0 1); assuming the network's virtual camera",
            )
            camera.camera_matrix = None
            return
        camera.camera_matrix = k
        camera.info_size = (int(msg.width), int(msg.height))

    # --- processing -------------------------------------------------------------------------

    def _report(self, kind: str, camera: int | None, message: str, count: int = 1) -> None:
        """Count `count` errors of `kind`; log the first occurrence of each kind."""
        if self._stats.error(kind, camera, count):
            where = "" if camera is None else f"camera {self._cameras[camera].name}: "
            self.get_logger().error(
                f"{where}{message} [{kind}: logged once, counted in /diagnostics]"
            )

    def _on_worker_error(self, error: BaseException) -> None:
        where = traceback.extract_tb(error.__traceback__)[-1]
        self._report(
            INFERENCE_ERROR,
            None,
            f"processing failed: {type(error).__name__}: {_one_line(error)} "
            f"(at {Path(where.filename).name}:{where.lineno})",
        )

    def _camera_matrix_for(self, camera: _Camera, image: np.ndarray) -> np.ndarray | None:
        k = camera.camera_matrix
        size = (image.shape[1], image.shape[0])
        if k is not None and camera.info_size not in ((0, 0), size):
            self._report(
                CAMERA_INFO_SIZE_MISMATCH,
                camera.index,
                f"CameraInfo on {camera.info_topic} is for {camera.info_size[0]}x"
                f"{camera.info_size[1]} images but {camera.image_topic} has {size[0]}x{size[1]}; "
                "assuming the network's virtual camera",
            )
            k = None
        if k is None and not camera.warned_assumed_intrinsics:
            camera.warned_assumed_intrinsics = True
            self.get_logger().warning(
                f"camera {camera.name}: no usable CameraInfo on {camera.info_topic}; 3D output "
                "uses the network's virtual camera mapped to the image (focal 512 px at the "
                "network input), HandArray.intrinsics_assumed is true; distances are then "
                "approximate"
            )
        return k

    def _convert(self, frame: Frame) -> np.ndarray | None:
        try:
            if isinstance(frame.message, CompressedImage):
                return compressed_to_bgr(frame.message)
            return image_to_bgr(frame.message)
        except ImageConversionError as error:
            self._report(error.kind, frame.camera, str(error))
            return None

    def _process(self, frames: list[Frame]) -> None:
        config = self._config
        if config is not self._applied_config:
            self._apply_runtime_settings(config)
        batch = []
        for frame in frames:
            image = self._convert(frame)
            if image is not None:
                camera = self._cameras[frame.camera]
                batch.append((frame, camera, image, self._camera_matrix_for(camera, image)))
        if not batch:
            return
        started = time.perf_counter()
        try:
            results = self.predictor.predict(
                [image for _, _, image, _ in batch], "bgr", [k for _, _, _, k in batch]
            )
        except PredictorError as error:
            self._report(INFERENCE_ERROR, None, _one_line(error))
            return
        inference_s = time.perf_counter() - started
        self._stats.batch_processed(len(batch), inference_s)
        for (frame, camera, image, _), result in zip(batch, results, strict=True):
            self._publish(config, frame, camera, image, result, inference_s)

    def _depth_for(self, camera: _Camera, stamp_s: float, config: NodeConfig) -> np.ndarray | None:
        frames = list(camera.depth_frames)
        if not frames:
            self._report(
                DEPTH_UNAVAILABLE,
                camera.index,
                f"no depth image received on {camera.depth_topic}; distances are monocular",
            )
            return None
        nearest = min(frames, key=lambda m: abs(_stamp_s(m.header) - stamp_s))
        if abs(_stamp_s(nearest.header) - stamp_s) > config.depth_max_age_s:
            self._report(
                DEPTH_UNAVAILABLE,
                camera.index,
                f"no depth image on {camera.depth_topic} within {config.depth_max_age_s} s of "
                "the colour image; distances are monocular for such frames",
            )
            return None
        try:
            return depth_to_metres(nearest)
        except ImageConversionError as error:
            self._report(f"depth_{error.kind}", camera.index, f"depth image: {error}")
            return None

    def _publish(
        self,
        config: NodeConfig,
        frame: Frame,
        camera: _Camera,
        image: np.ndarray,
        result: ImageHands,
        inference_s: float,
    ) -> None:
        header = frame.message.header
        stamp_s = _stamp_s(header)
        if result.non_finite_hands:
            self._report(
                NON_FINITE_OUTPUT,
                camera.index,
                f"the network produced non-finite values for {result.non_finite_hands} hand(s); "
                "they were dropped",
                count=result.non_finite_hands,
            )
        hands: list[Hand] = list(result.hands)
        corrected = [False] * len(hands)
        if camera.depth_topic is not None and hands:
            depth = self._depth_for(camera, stamp_s, config)
            if depth is not None:
                for i, hand in enumerate(hands):
                    hands[i], measurement = correct_hand_depth(
                        hand, depth, result.image_size, result.camera_matrix, self._depth_settings
                    )
                    corrected[i] = measurement.offset_m is not None
        if config.tracking_enabled:
            track_ids = camera.tracker.update(hands)
            marker_keys = track_ids
        else:
            track_ids = [0] * len(hands)
            marker_keys = list(range(len(hands)))
        if config.smoothing_enabled and config.tracking_enabled:
            hands = [
                camera.smoother.smooth(track_id, hand, stamp_s, result.camera_matrix)
                for track_id, hand in zip(track_ids, hands, strict=True)
            ]
            camera.smoother.retain(t.track_id for t in camera.tracker.tracks)
        if "hands" in camera.publishers:
            msg = image_hands_to_msg(
                result,
                header,
                hands,
                track_ids,
                corrected,
                self.predictor.hand_model_id,
                self.predictor.model_description,
                inference_s,
                config.publish_vertices,
            )
            msg.latency = self._latency_s(frame)
            camera.publishers["hands"].publish(msg)
        if "markers" in camera.publishers:
            markers = camera.markers.build(header, hands, marker_keys, self._marker_style)
            camera.publishers["markers"].publish(markers)
        if "overlay" in camera.publishers:
            drawn = draw_hands(image, hands, result.camera_matrix)
            camera.publishers["overlay"].publish(bgr_to_image(drawn, header))
        self._stats.frame_published(
            camera.index, self._latency_s(frame), len(hands), result.intrinsics_assumed
        )

    def _latency_s(self, frame: Frame) -> float:
        """Seconds from the image stamp to now; from reception when the image has no stamp."""
        stamp_s = _stamp_s(frame.message.header)
        if stamp_s == 0.0:
            return time.monotonic() - frame.received_s
        return self.get_clock().now().nanoseconds * 1e-9 - stamp_s

    def _publish_diagnostics(self) -> None:
        self._diagnostics.publish(
            self._stats.to_message(
                self.get_clock().now().to_msg(),
                self.get_name(),
                str(self.predictor.device),
                self.predictor.model_description,
                self.predictor.hand_model_id,
            )
        )

    @property
    def statistics(self) -> NodeStatistics:
        """The node's counters (also published on /diagnostics)."""
        return self._stats

    def destroy_node(self) -> None:
        """Stop the worker thread, then destroy the node."""
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.stop()
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    """Console entry point: run the node until shutdown; returns the process exit code."""
    rclpy.init(args=args)
    try:
        node = HandsNode()
    except (ConfigError, PredictorError, ParameterException) as error:
        rclpy.logging.get_logger(NODE_NAME).error(f"cannot start: {_one_line(error)}")
        rclpy.try_shutdown()
        return 1
    try:
        spin_until(node)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
