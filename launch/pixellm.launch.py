"""Start pixellm_node (a lifecycle node that configures and activates itself) with a parameters file.

    ros2 launch pixellm_ros pixellm.launch.py image_topic:=/camera/color/image_raw model_path:=/models/pixellm-7b device:=cuda
    ros2 launch pixellm_ros pixellm.launch.py image_topic:=/camera/color/image_raw depth:=true \\
        depth_image_topic:=/camera/aligned_depth_to_color/image_raw camera_info_topic:=/camera/aligned_depth_to_color/camera_info
    ros2 launch pixellm_ros pixellm.launch.py cameras:=head,wrist params_file:=my_cameras.yaml

Arguments:
    params_file             ROS parameters YAML (default: the package's config/pixellm.yaml)
    namespace               namespace of the node (default: none)
    node_name               name of the node (default: pixellm)
    image_topic             the topic the node's ``image_raw`` subscription is remapped to (default: image_raw)
    compressed_image_topic  the same for ``image_raw/compressed`` (default: <image_topic>/compressed),
                            used when use_compressed is true
    use_compressed          true | false: overrides topics.use_compressed when not empty
    depth                   true | false: overrides depth.enabled (targets in 3D) when not empty
    depth_image_topic       the topic ``depth/image_raw`` is remapped to (default: depth/image_raw)
    camera_info_topic       the topic ``camera_info`` is remapped to (default: camera_info)
    cameras                 camera names, comma separated (e.g. head,wrist): overrides cameras.names when
                            not empty; each camera's topics are cameras.<name>.* in the parameters file
    model_path              overrides model.path when not empty
    device                  overrides model.device when not empty (cpu, cuda, cuda:N, auto)

Without the launch system (pip-only ROS), ``pixellm-ros node --params-file F --ros-args ...``
starts the same node with the same parameters file.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _flag(context, name):
    """None when the argument is empty, else its truth value (or an error naming it)."""
    text = LaunchConfiguration(name).perform(context).strip().lower()
    if not text:
        return None
    if text not in TRUE + FALSE:
        raise ValueError(f"launch argument {name}:={text} must be true or false")
    return text in TRUE


def _pixellm_node(context, *args, **kwargs):
    # Only the overrides that were given: an empty model_path must not replace the file's model.path.
    overrides = {}
    for argument, parameter in (("model_path", "model.path"), ("device", "model.device")):
        value = LaunchConfiguration(argument).perform(context)
        if value:
            overrides[parameter] = value
    for argument, parameter in (("use_compressed", "topics.use_compressed"), ("depth", "depth.enabled")):
        value = _flag(context, argument)
        if value is not None:
            overrides[parameter] = value
    cameras = [c.strip() for c in LaunchConfiguration("cameras").perform(context).strip("[] ").split(",") if c.strip()]
    if cameras:
        overrides["cameras.names"] = cameras
    parameters = [LaunchConfiguration("params_file")]
    if overrides:
        parameters.append(overrides)
    image_topic = LaunchConfiguration("image_topic").perform(context)
    compressed = LaunchConfiguration("compressed_image_topic").perform(context) or f"{image_topic}/compressed"
    return [
        LifecycleNode(
            package="pixellm_ros",
            executable="pixellm_node",
            name=LaunchConfiguration("node_name"),
            namespace=LaunchConfiguration("namespace"),
            parameters=parameters,
            remappings=[
                ("image_raw", image_topic),
                ("image_raw/compressed", compressed),
                ("depth/image_raw", LaunchConfiguration("depth_image_topic")),
                ("camera_info", LaunchConfiguration("camera_info_topic")),
            ],
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
        DeclareLaunchArgument("compressed_image_topic", default_value="",
                              description="compressed camera topic (default: <image_topic>/compressed)"),
        DeclareLaunchArgument("use_compressed", default_value="",
                              description="true | false: subscribe to the compressed topic (overrides the file)"),
        DeclareLaunchArgument("depth", default_value="",
                              description="true | false: targets in 3D from aligned depth (overrides the file)"),
        DeclareLaunchArgument("depth_image_topic", default_value="depth/image_raw",
                              description="aligned depth image topic (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera_info",
                              description="camera_info of the depth image"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="camera names, comma separated (overrides cameras.names)"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="model folder; overrides model.path when not empty"),
        DeclareLaunchArgument("device", default_value="",
                              description="cpu | cuda | cuda:N | auto; overrides model.device when not empty"),
        OpaqueFunction(function=_pixellm_node),
    ])
