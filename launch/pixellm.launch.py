"""Start pixellm_node (a lifecycle node that configures and activates itself) with a parameters file.

    ros2 launch pixellm_ros pixellm.launch.py image_topic:=/camera/color/image_raw model_path:=/models/pixellm-7b device:=cuda

Arguments:
    params_file   ROS parameters YAML (default: the package's config/pixellm.yaml)
    namespace     namespace of the node (default: none)
    node_name     name of the node (default: pixellm)
    image_topic   camera topic the node's ``image_raw`` subscription is remapped to (default: image_raw)
    model_path    overrides model.path when not empty
    device        overrides model.device when not empty (cpu, cuda, cuda:N, auto)

Without the launch system (pip-only ROS), ``python -m pixellm_ros.ros.runner node`` starts the
same node with the same parameters file.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare


def _pixellm_node(context, *args, **kwargs):
    # Only the overrides that were given: an empty model_path must not replace the file's model.path.
    overrides = {}
    model_path = LaunchConfiguration("model_path").perform(context)
    device = LaunchConfiguration("device").perform(context)
    if model_path:
        overrides["model.path"] = model_path
    if device:
        overrides["model.device"] = device
    parameters = [LaunchConfiguration("params_file")]
    if overrides:
        parameters.append(overrides)
    return [
        LifecycleNode(
            package="pixellm_ros",
            executable="pixellm_node",
            name=LaunchConfiguration("node_name"),
            namespace=LaunchConfiguration("namespace"),
            parameters=parameters,
            remappings=[("image_raw", LaunchConfiguration("image_topic"))],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("pixellm_ros"), "config", "pixellm.yaml"]),
            description="ROS parameters YAML for pixellm_node",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("node_name", default_value="pixellm", description="name of the node"),
        DeclareLaunchArgument("image_topic", default_value="image_raw",
                              description="camera image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="model folder; overrides model.path when not empty"),
        DeclareLaunchArgument("device", default_value="",
                              description="cpu | cuda | cuda:N | auto; overrides model.device when not empty"),
        OpaqueFunction(function=_pixellm_node),
    ])
