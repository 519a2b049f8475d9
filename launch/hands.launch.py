"""Start hands_node with config/hands.yaml, and RViz on request.

    ros2 launch smhr_ros hands.launch.py image_topic:=/camera/color/image_raw use_rviz:=true
    ros2 launch smhr_ros hands.launch.py checkpoint:=/models/smhr.pth device:=cuda namespace:=left

Launch arguments left empty keep the value in the parameter file (`params_file`, by default the
installed config/hands.yaml); `camera_info_topic` empty means the sibling `camera_info` of the
image topic. With `use_rviz:=true`, RViz shows the image and the hand markers in
`rviz_fixed_frame` (the camera's optical frame, the images' header.frame_id).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from smhr_ros.package_paths import share_file
from smhr_ros.rviz_config import output_topic, params_file_value, write_rviz_config

ARGUMENTS = (
    ("image_topic", "", "Image topic (one camera); empty: image_topics of params_file."),
    ("camera_info_topic", "", "CameraInfo topic; empty: the image topic's sibling camera_info."),
    ("checkpoint", "", "Network checkpoint (.pth); empty: the params_file value."),
    ("hand_model_dir", "", "MANO_RIGHT/LEFT.pkl folder; empty: the params_file value."),
    ("device", "", "Torch device (auto, cpu, cuda, cuda:N); empty: the params_file value."),
    ("precision", "", "Network precision (auto, float32, bfloat16, float16); empty: params_file."),
    ("namespace", "", "Namespace of the node and its outputs (hands, markers, overlay)."),
    ("use_rviz", "false", "Start RViz with config/hands.rviz (image and hand markers)."),
    ("rviz_fixed_frame", "camera_optical_frame", "RViz fixed frame: the images' frame_id."),
    ("params_file", "", "Parameter file; empty: the installed config/hands.yaml."),
)

LAUNCH_TO_PARAMETER = {
    "image_topic": "image_topics",
    "camera_info_topic": "camera_info_topics",
    "checkpoint": "checkpoint",
    "hand_model_dir": "hand_model_dir",
    "device": "device",
    "precision": "precision",
}
"""Launch argument -> hands_node parameter it sets when not empty (topics become 1-item lists)."""

LIST_PARAMETERS = ("image_topics", "camera_info_topics")


def _launch_setup(context, *args, **kwargs):
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    params_file = value("params_file") or str(share_file("config", "hands.yaml"))
    overrides = {}
    for argument, parameter in LAUNCH_TO_PARAMETER.items():
        given = value(argument)
        if given:
            overrides[parameter] = [given] if parameter in LIST_PARAMETERS else given
    namespace = value("namespace")
    actions = [
        Node(
            package="smhr_ros",
            executable="hands_node",
            name="hands_node",
            namespace=namespace,
            parameters=[params_file, overrides] if overrides else [params_file],
            output="screen",
            emulate_tty=True,
        )
    ]
    if value("use_rviz").lower() in ("true", "1", "yes"):
        image_topic = (
            value("image_topic")
            or (
                params_file_value(params_file, "hands_node", "image_topics")
                or ["/camera/image_raw"]
            )[0]
        )
        rviz_file = write_rviz_config(
            share_file("config", "hands.rviz"),
            image_topic=image_topic,
            markers_topic=output_topic(namespace, "markers"),
            fixed_frame=value("rviz_fixed_frame"),
        )
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", str(rviz_file)],
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    """Launch arguments, hands_node and (with use_rviz) RViz."""
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in ARGUMENTS
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
