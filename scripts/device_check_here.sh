#!/usr/bin/env bash
# The device script's --tiny run on THIS machine, as the device machine would run it: the venv's
# python without the ROS environment (scripts/env.sh is not sourced, install/ is not on the path)
# and with rclpy, the ROS message packages, pycocotools and matplotlib made unimportable
# (scripts/block_imports). Usage: OUT=/tmp/device_check bash scripts/device_check_here.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHON="${PYTHON:-$PWD/.venv/bin/python}"
export PYTHONPATH="$PWD/scripts/block_imports"
export PIXELLM_BLOCK_IMPORTS="${PIXELLM_BLOCK_IMPORTS:-rclpy,rosidl_runtime_py,rosidl_parser,launch,launch_ros,std_msgs,sensor_msgs,pycocotools,matplotlib}"
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1  # the venv's ROS wheels would otherwise re-exec python to set up ROS
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec bash scripts/device_train_embedded.sh --tiny
