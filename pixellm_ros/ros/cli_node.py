"""``pixellm-ros node``: pixellm_node with a parameters file, where ``ros2 launch`` is absent."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "run pixellm_node with a parameters file (what launch/pixellm.launch.py starts)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params-file", type=Path, default=None, help="ROS parameters YAML (default: the shipped one)")
    parser.epilog = ("anything after --ros-args goes to rclpy, e.g. --ros-args -p model.device:=cuda -r __ns:=/robot1 "
                     "-r image_raw:=/camera/color/image_raw")
    parser.set_defaults(_takes_ros_args=True)


def run(args: argparse.Namespace) -> int:
    from .runner import run_node

    return run_node(args.params_file, args.ros_args)
