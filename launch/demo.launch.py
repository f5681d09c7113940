"""The demo: a simulated camera publishing generated tabletop scenes (colour, aligned depth,
camera_info), and pixellm_node watching it, with targets in 3D.

    ros2 launch pixellm_ros demo.launch.py model_path:=/path/to/model
    ros2 topic pub --once /pixellm/instruction std_msgs/msg/String "{data: 'segment the red cup'}"
    ros2 topic echo /pixellm/answer

Arguments: params_file, namespace, node_name, model_path, device (as in pixellm.launch.py), plus
    image_topic     where the simulated camera publishes and the node listens (default: camera/image_raw;
                    its depth and camera_info go to camera/depth/image_raw and camera/camera_info)
    camera_source   world | folder | pattern (default: world; only the world has depth)
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

CAMERA = "camera"  # the simulated camera's namespace-like prefix: camera/image_raw, camera/depth/image_raw, ...


def generate_launch_description():
    image_topic = LaunchConfiguration("image_topic")
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
        remappings=[("image_raw", image_topic), ("depth/image_raw", f"{CAMERA}/depth/image_raw"),
                    ("camera_info", f"{CAMERA}/camera_info")],
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
            "image_topic": image_topic,
            "depth": "true",
            "depth_image_topic": f"{CAMERA}/depth/image_raw",
            "camera_info_topic": f"{CAMERA}/camera_info",
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
        DeclareLaunchArgument("image_topic", default_value=f"{CAMERA}/image_raw",
                              description="where the simulated camera publishes and the node listens"),
        DeclareLaunchArgument("model_path", default_value="", description="model folder (overrides model.path)"),
        DeclareLaunchArgument("device", default_value="", description="overrides model.device when not empty"),
        DeclareLaunchArgument("camera_source", default_value="world", description="world | folder | pattern"),
        DeclareLaunchArgument("camera_folder", default_value="", description="image folder for camera_source:=folder"),
        DeclareLaunchArgument("camera_rate_hz", default_value="5.0", description="camera frames per second"),
        camera,
        pixellm,
    ])
