"""The runner's command lines, read back by rcl itself (the same parser ``ros2 run`` feeds)."""

from __future__ import annotations

import sys
from pathlib import Path

import rclpy
from rclpy.context import Context
from std_msgs.msg import String

from pixellm_ros.ros import runner
from pixellm_ros.ros.package_files import default_params_file


def test_ros_arguments_are_understood_by_rcl(lone_domain_id: int, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    queue_size: 7\n    model:\n      device: cuda\n")
    args = runner.ros_arguments(
        params,
        {"model.device": "cpu", "model.path": "/models/1.0", "max_image_age_s": 2.0, "queue_size": 3,
         "topics.use_compressed": True},
        {"image_raw": "/camera/color/image_raw"},
        node_name="seg", namespace="robot1",
    )
    context = Context()
    rclpy.init(args=["pixellm_node", *args], context=context, domain_id=lone_domain_id)
    try:
        node = rclpy.create_node("pixellm", context=context, allow_undeclared_parameters=True,
                                 automatically_declare_parameters_from_overrides=True)
        assert node.get_fully_qualified_name() == "/robot1/seg"
        values = {name: node.get_parameter(name).value for name in
                  ("model.device", "model.path", "max_image_age_s", "queue_size", "topics.use_compressed")}
        # single -p overrides win over the file; a path that looks like a number stays a string
        assert values == {"model.device": "cpu", "model.path": "/models/1.0", "max_image_age_s": 2.0,
                          "queue_size": 3, "topics.use_compressed": True}
        assert node.create_publisher(String, "image_raw", 1).topic_name == "/camera/color/image_raw"
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_node_command_runs_the_runner_module() -> None:
    command = runner.node_command("/p.yaml", {"queue_size": 2}, {"image_raw": "/cam"}, node_name="n")
    assert command[:4] == [sys.executable, "-m", "pixellm_ros.ros.runner", "node"]
    assert command[4:6] == ["--params-file", "/p.yaml"]
    assert command[6:] == ["--ros-args", "-p", "queue_size:=2", "-r", "image_raw:=/cam", "-r", "__node:=n"]


def test_default_params_file_is_the_shipped_one() -> None:
    assert default_params_file() == Path(__file__).resolve().parents[2] / "config" / "pixellm.yaml"


def test_a_missing_params_file_is_reported(tmp_path: Path, capsys) -> None:
    assert runner.main(["node", "--params-file", str(tmp_path / "nope.yaml")]) == 2
    assert "parameters file not found" in capsys.readouterr().err


def test_the_readme_command_line_starts_the_node_with_ros_arguments(
        client, domain_id: int, chain_model_dir: Path, tmp_path: Path) -> None:
    """``pixellm-ros node --params-file F --ros-args -p ... -r ...``, the console script on PATH."""
    import shutil

    from rcl_interfaces.srv import GetParameters

    from support.dds import NodeProcess, active_node

    executable = shutil.which("pixellm-ros")
    assert executable is not None, "pixellm-ros is not on PATH (scripts/setup_env.sh installs it into the venv)"
    command = [executable, "node", "--params-file", str(default_params_file()), "--ros-args",
               "-p", f"model.path:={chain_model_dir}", "-p", "model.device:=cpu", "-p", "queue_size:=3",
               "-r", "__node:=pixellm_cli", "-r", "image_raw:=/cli/camera"]
    process = NodeProcess(domain_id, "pixellm_cli", {}, tmp_path / "cli.log", command=command)
    with active_node(process, client):
        response = client.call(GetParameters, "/pixellm_cli/get_parameters", GetParameters.Request(names=["queue_size"]))
        assert response.values[0].integer_value == 3
        assert "cameras default on '/cli/camera'" in process.log_path.read_text()


def test_a_wrongly_typed_autostart_is_said_at_start_up(client, domain_id: int, chain_model_dir: Path,
                                                        tmp_path: Path) -> None:
    from support.dds import NodeProcess, wait_until

    params = tmp_path / "typo.yaml"  # what a user might write
    params.write_text('/**:\n  ros__parameters:\n    autostart: "yes"\n')
    command = runner.node_command(params, {"model.path": str(chain_model_dir)}, node_name="pixellm_autostart")
    process = NodeProcess(domain_id, "pixellm_autostart", {}, tmp_path / "autostart.log", command=command)
    try:
        process.wait_active(client, state=1)  # unconfigured, and it says why
        assert wait_until(lambda: "parameter 'autostart' was given 'yes' (string)" in process.log_path.read_text()
                          and "not starting by itself" in process.log_path.read_text(), 10)
    finally:
        assert process.stop() == 0
