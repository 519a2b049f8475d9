"""The demo loop for ROS users: camera_node -> hands_node -> recorder_node.

    ros2 launch smhr_ros demo.launch.py                        # the bundled synthetic sequence
    ros2 launch smhr_ros demo.launch.py source:=/dev/video0     # a V4L2 camera
    ros2 launch smhr_ros demo.launch.py use_camera:=false image_topic:=/my_cam/image_raw \
        camera_info_topic:=/my_cam/camera_info                  # a camera driver already running

The hands node uses the embedded default checkpoint and the open hand model unless
`checkpoint` / `hand_model_dir` are given, and publishes /hands and /overlay; the recorder
writes overlays/ and summary.json to `output_dir` and prints one line per frame. The launch
shuts down when the recorder has `frames` frames (or after `idle_timeout_s` without any).
Without launch_ros (pip installs), `python -m smhr_ros.demo` runs the same loop.
"""

from datetime import datetime

from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

ARGUMENTS = (
    ("use_camera", "true", "Start camera_node; false to use a camera driver that is running."),
    ("source", "demo", "camera_node source: demo, a video file, an image folder, /dev/videoN."),
    ("rate_hz", "10.0", "camera_node frames per second."),
    ("image_topic", "/camera/image_raw", "Image topic the hands node reads."),
    ("camera_info_topic", "/camera/camera_info", "CameraInfo topic of that camera."),
    ("checkpoint", "", "Network checkpoint; empty for the embedded default model."),
    ("hand_model_dir", "", "MANO_RIGHT.pkl / MANO_LEFT.pkl folder; empty for the open hand model."),
    ("device", "auto", "Torch device of the hands node: auto, cpu, cuda, cuda:N."),
    ("frames", "48", "Frames the recorder records before the launch shuts down."),
    ("idle_timeout_s", "20.0", "Recorder stops after this many seconds without a frame."),
    (
        "output_dir",
        f"outputs/demo-{datetime.now():%Y%m%d-%H%M%S}",
        "Folder for overlays/ and summary.json.",
    ),
)


def _arg(name: str, value_type: type) -> ParameterValue:
    return ParameterValue(LaunchConfiguration(name), value_type=value_type)


def generate_launch_description() -> LaunchDescription:
    """camera_node (optional), hands_node and recorder_node; shut down when recording ends."""
    camera = Node(
        package="smhr_ros",
        executable="camera_node",
        name="camera_node",
        output="screen",
        condition=IfCondition(LaunchConfiguration("use_camera")),
        parameters=[
            {
                "source": _arg("source", str),
                "rate_hz": _arg("rate_hz", float),
                "loop": True,
                "image_topic": _arg("image_topic", str),
                "camera_info_topic": _arg("camera_info_topic", str),
                "wait_for_subscribers": 1,
            }
        ],
    )
    hands = Node(
        package="smhr_ros",
        executable="hands_node",
        name="hands_node",
        output="screen",
        parameters=[
            {
                "image_topics": [[LaunchConfiguration("image_topic")]],
                "camera_info_topics": [[LaunchConfiguration("camera_info_topic")]],
                "checkpoint": _arg("checkpoint", str),
                "hand_model_dir": _arg("hand_model_dir", str),
                "device": _arg("device", str),
                "publish_overlay": True,
            }
        ],
    )
    recorder = Node(
        package="smhr_ros",
        executable="recorder_node",
        name="recorder_node",
        output="screen",
        parameters=[
            {
                "hands_topic": "/hands",
                "overlay_topic": "/overlay",
                "output_dir": _arg("output_dir", str),
                "max_frames": _arg("frames", int),
                "idle_timeout_s": _arg("idle_timeout_s", float),
                "startup_timeout_s": 300.0,
            }
        ],
    )
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in ARGUMENTS
            ),
            hands,
            recorder,
            camera,
            RegisterEventHandler(
                OnProcessExit(
                    target_action=recorder,
                    on_exit=[EmitEvent(event=Shutdown(reason="recorder_node finished"))],
                )
            ),
        ]
    )
