"""``pixellm-ros <command>``: a thin argparse dispatcher over one module per command.

Each command module exposes

    HELP: str                                   one line for ``pixellm-ros --help``
    def add_arguments(parser) -> None           its own options
    def run(args) -> int                        the exit status

and keeps heavy imports (torch, rclpy) inside ``run`` so that ``--help`` and unrelated commands
stay fast and work without ROS. Commands are registered below by module path and imported only
when the dispatcher builds its parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Sequence

# command name -> module implementing it. One line per command; each owner adds theirs.
COMMANDS: dict[str, str] = {
    "segment": "pixellm_ros.engine.cli_segment",  # engine: one image + instruction -> result.json, overlay.png
    "node": "pixellm_ros.ros.cli_node",  # ROS 2 node with a parameters file (no ros2 launch needed)
    "demo": "pixellm_ros.ros.demo",  # camera simulator + node + a client: the README's main job
    "train": "pixellm_ros.training.cli",  # training of the embedded model
    "eval": "pixellm_ros.evaluation.cli_eval",  # MUSE evaluation
    "compare": "pixellm_ros.evaluation.cli_compare",  # paired bootstrap of two eval reports
    "world": "pixellm_ros.world.cli_world",  # tabletop scene generator
}


def _load_commands() -> dict[str, ModuleType]:
    modules: dict[str, ModuleType] = {}
    for name, module_path in COMMANDS.items():
        modules[name] = importlib.import_module(module_path)
    return modules


def build_parser(commands: dict[str, ModuleType] | None = None) -> argparse.ArgumentParser:
    commands = _load_commands() if commands is None else commands
    parser = argparse.ArgumentParser(prog="pixellm-ros", description="PixelLM as a ROS 2 perception node and a Python library.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in commands.items():
        sub = subparsers.add_parser(name, help=getattr(module, "HELP", None), description=getattr(module, "HELP", None))
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything from the first --ros-args on belongs to rclpy (ROS's own command-line rules:
    # -p name:=value, -r from:=to, --params-file), whatever argparse would make of it.
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    args.ros_args = argv[split:]
    if args.ros_args and not getattr(args, "_takes_ros_args", False):
        build_parser().error(f"'pixellm-ros {args.command}' takes no --ros-args")
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
