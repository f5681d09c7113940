"""Start the nodes with a parameters file where ``ros2 launch`` is absent.

``launch/pixellm.launch.py`` is the way on a ROS install. Without the launch system (a pip-only
ROS, this project's test machine) the same node starts with the same YAML file through rclpy's own
command-line rules: ``--ros-args --params-file FILE -p name:=value -r from:=to``.

    python -m pixellm_ros.ros.runner node --params-file config/pixellm.yaml --ros-args -p model.device:=cpu
    python -m pixellm_ros.ros.runner demo --params-file config/pixellm.yaml

``pixellm-ros node`` / ``pixellm-ros demo`` (the project CLI) call ``run_node`` / ``run_demo``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .package_files import default_params_file


def ros_arguments(
    params_file: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    remappings: Mapping[str, str] | None = None,
    node_name: str | None = None,
    namespace: str | None = None,
    log_level: str | None = None,
) -> list[str]:
    """The ``--ros-args ...`` list for rclpy.init: parameters file first, then single overrides.

    Values are written as JSON, which the ROS YAML parser reads back with the same type (so a
    path such as "1.0" stays a string and 2.0 stays a double).
    """
    args = ["--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for name, value in (parameters or {}).items():
        args += ["-p", f"{name}:={json.dumps(value)}"]
    for source, target in (remappings or {}).items():
        args += ["-r", f"{source}:={target}"]
    if node_name:
        args += ["-r", f"__node:={node_name}"]
    if namespace:
        args += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
    if log_level:
        args += ["--log-level", log_level]
    return args


def node_command(
    params_file: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    remappings: Mapping[str, str] | None = None,
    node_name: str | None = None,
    namespace: str | None = None,
) -> list[str]:
    """argv that starts pixellm_node in a new process (tests, benchmarks, process supervisors)."""
    ros_args = ros_arguments(None, parameters, remappings, node_name, namespace)
    command = [sys.executable, "-m", "pixellm_ros.ros.runner", "node"]
    if params_file is not None:
        command += ["--params-file", str(params_file)]
    return command + ros_args


def camera_command(
    parameters: Mapping[str, Any] | None = None,
    remappings: Mapping[str, str] | None = None,
    node_name: str | None = None,
) -> list[str]:
    """argv that starts camera_sim_node in a new process (the demo, tests, benchmarks)."""
    return [sys.executable, "-m", "pixellm_ros.ros.runner", "camera",
            *ros_arguments(None, parameters, remappings, node_name)]


def run_node(params_file: str | Path | None = None, ros_args: Sequence[str] = ()) -> int:
    """Run pixellm_node in this process until Ctrl-C. ros_args: extra ``--ros-args ...`` tokens."""
    from .executables import node_main

    params = Path(params_file) if params_file is not None else default_params_file()
    if not params.is_file():
        print(f"parameters file not found: {params}", file=sys.stderr)
        return 2
    node_main(["pixellm_node", *ros_arguments(params), *ros_args])
    return 0


def run_demo(
    params_file: str | Path | None = None,
    ros_args: Sequence[str] = (),
    camera_parameters: Mapping[str, Any] | None = None,
) -> int:
    """camera_sim + pixellm_node in one process (what launch/demo.launch.py starts as two)."""
    from rclpy.parameter import Parameter

    from .camera_sim import CameraSimNode
    from .executables import run_until_shutdown
    from .pixellm_node import PixelLMNode
    from .spinning import init_ros

    params = Path(params_file) if params_file is not None else default_params_file()
    init_ros(["pixellm_demo", *ros_arguments(params), *ros_args])
    camera = CameraSimNode(parameter_overrides=[Parameter(k, value=v) for k, v in (camera_parameters or {}).items()])
    run_until_shutdown(PixelLMNode(), [camera])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixellm_ros.ros.runner", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("node", "demo", "camera"),
                        help="node: pixellm_node; demo: camera_sim + pixellm_node; camera: camera_sim")
    parser.add_argument("--params-file", type=Path, default=None, help="ROS parameters YAML (default: the shipped one)")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything from the first --ros-args on belongs to rclpy (it may hold its own --params-file).
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    ros_args = argv[split:]
    if args.what == "node":
        return run_node(args.params_file, ros_args)
    if args.what == "camera":
        from .executables import camera_main

        camera_main(["camera_sim_node", *ros_args])
        return 0
    return run_demo(args.params_file, ros_args)


if __name__ == "__main__":
    sys.exit(main())
