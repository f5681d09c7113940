"""The demo: a simulated camera publishing generated tabletop scenes, and pixellm_node watching it.

    ros2 launch pixellm_ros demo.launch.py model_path:=/path/to/model
    ros2 topic pub --once /pixellm/instruction std_msgs/msg/String "{data: 'segment the red cup'}"
    ros2 topic echo /pixellm/answer

Arguments: those of pixellm.launch.py (params_file, namespace, node_name, model_path, device), plus
    camera_source   world | folder | pattern (default: world)
    camera_folder   image folder for camera_source:=folder
    camera_rate_hz  frames per second (default: 5.0)

Without the launch system, ``python -m pixellm_ros.ros.runner demo`` runs the same two nodes.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    camera = Node(
        package="pixellm_ros",
        executable="camera_sim_node",
        name="camera_sim",
        namespace=LaunchConfiguration("namespace"),
        parameters=[{
            "source": LaunchConfiguration("camera_source"),
            "folder": LaunchConfiguration("camera_folder"),
            "rate_hz": LaunchConfiguration("camera_rate_hz"),
        }],
        remappings=[("image_raw", "camera/image_raw")],
        output="screen",
    )
    pixellm = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("pixellm_ros"), "launch", "pixellm.launch.py"])
        ),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file"),
            "namespace": LaunchConfiguration("namespace"),
            "node_name": LaunchConfiguration("node_name"),
            "image_topic": "camera/image_raw",
            "model_path": LaunchConfiguration("model_path"),
            "device": LaunchConfiguration("device"),
        }.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("pixellm_ros"), "config", "pixellm.yaml"]),
            description="ROS parameters YAML for pixellm_node",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes"),
        DeclareLaunchArgument("node_name", default_value="pixellm", description="name of the PixelLM node"),
        DeclareLaunchArgument("model_path", default_value="", description="model folder (overrides model.path)"),
        DeclareLaunchArgument("device", default_value="", description="overrides model.device when not empty"),
        DeclareLaunchArgument("camera_source", default_value="world", description="world | folder | pattern"),
        DeclareLaunchArgument("camera_folder", default_value="", description="image folder for camera_source:=folder"),
        DeclareLaunchArgument("camera_rate_hz", default_value="5.0", description="camera frames per second"),
        camera,
        pixellm,
    ])
