"""The runner's command lines, read back by rcl itself (the same parser ``ros2 run`` feeds)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
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


# ---------------------------------------------------------------------------- bad parameters files (issue 25)
def run_to_exit(command: list[str], domain_id: int, timeout: float = 120.0) -> tuple[int, list[str]]:
    """Run a node command that must end by itself: its exit code and its output's non-empty lines."""
    import os
    import subprocess

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def test_a_parameters_file_that_is_not_valid_yaml_ends_start_up_with_one_line(
        lone_domain_id: int, tmp_path: Path) -> None:
    params = tmp_path / "broken.yaml"
    params.write_text("/**:\n  ros__parameters:\n    queue_size: 3\n   model: [\n")  # bad indentation, open list
    code, lines = run_to_exit(runner.node_command(params), lone_domain_id)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"parameters file {params} is not valid YAML at line 4, column 4:"), lines


def test_a_parameters_file_rcl_refuses_ends_start_up_with_one_line_of_ours(lone_domain_id: int, tmp_path: Path) -> None:
    params = tmp_path / "mixed.yaml"
    params.write_text('/**:\n  ros__parameters:\n    cameras:\n      names: [head, 2]\n')  # valid YAML, no ROS type
    code, lines = run_to_exit(runner.node_command(params), lone_domain_id)
    assert code == 2 and not any("Traceback" in line for line in lines), lines
    assert lines[-1] == (f"parameters file {params} cannot be read: Sequence should be of same type. Value type "
                         "'integer' do not belong at line_num 4"), lines


def test_parameters_files_that_set_nothing_for_the_node_are_warned_about(
        client, domain_id: int, chain_model_dir: Path, tmp_path: Path) -> None:
    """Keyed by another node's name (the executable's, ``pixellm_node``), or not a mapping at all:
    rcl ignores such a file without a word and the node runs on its defaults."""
    from support.dds import NodeProcess, active_node

    other = tmp_path / "other_node.yaml"
    other.write_text("pixellm_node:\n  ros__parameters:\n    queue_size: 2\n/robot/pixellm:\n  ros__parameters: {}\n")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("queue_size\n")
    command = runner.node_command(other, {"model.path": str(chain_model_dir), "model.device": "cpu"},
                                  node_name="pixellm_keyed")
    ros_args = command.index("--ros-args") + 1
    command[ros_args:ros_args] = ["--params-file", str(scalar)]
    process = NodeProcess(domain_id, "pixellm_keyed", {}, tmp_path / "keyed.log", command=command)
    with active_node(process, client):
        log = process.log_path.read_text()
        assert (f"parameters file {other} sets nothing for /pixellm_keyed: it holds parameters for pixellm_node, "
                "/robot/pixellm; key them by /** or /pixellm_keyed") in log
        assert f"parameters file {scalar} sets nothing: it is not a mapping of node names to ros__parameters" in log
        assert "queue_size 4" in log  # the default: the file's 2 was for another node


def test_out_of_range_and_wrongly_typed_start_up_values_leave_the_node_up_saying_each_until_set(
        client, domain_id: int, chain_model_dir: Path, tmp_path: Path) -> None:
    """Before: rclpy raised InvalidParameterValueException while declaring, and the process died with
    a traceback. Now the node stays up, unconfigured, one line names every bad value, what it must
    be and where it came from; set over DDS (as ``ros2 param set`` does), the node configures."""
    from lifecycle_msgs.msg import State, Transition

    from support.dds import NodeProcess, wait_until

    params = tmp_path / "out_of_range.yaml"
    params.write_text("/**:\n  ros__parameters:\n    queue_size: 0\n    output:\n      mask_threshold: 1.5\n"
                      "    max_image_age_s: .nan\n    generation:\n      max_new_tokens: -5\n"
                      "    max_instruction_chars: 0\n    qos:\n      image_depth: 0\n    diagnostics_period_s: -1.0\n"
                      "    limits:\n      max_image_pixels: many\n")
    command = runner.node_command(params, {"model.path": str(chain_model_dir), "model.device": "cpu",
                                           "queue_size": 1000000}, node_name="pixellm_ranges")
    process = NodeProcess(domain_id, "pixellm_ranges", {}, tmp_path / "ranges.log", command=command)
    try:
        process.wait_active(client, state=State.PRIMARY_STATE_UNCONFIGURED)
        assert wait_until(lambda: "configure failed" in process.log_path.read_text(), 30)
        log = process.log_path.read_text()
        [line] = [line for line in log.splitlines() if "configure failed" in line]
        for expected in (
                "parameter 'queue_size' was given 1000000 from -p queue_size:=1000000; it must be an integer >= 1 "
                "and <= 1024",
                f"parameter 'output.mask_threshold' was given 1.5 from {params} line 5; it must be a number > 0 "
                "and < 1",
                f"parameter 'max_image_age_s' was given nan from {params} line 6; it must be a number >= 0",
                f"parameter 'generation.max_new_tokens' was given -5 from {params} line 8; it must be an "
                "integer >= 0",
                f"parameter 'max_instruction_chars' was given 0 from {params} line 9; it must be an integer >= 1",
                f"parameter 'qos.image_depth' was given 0 from {params} line 11; it must be an integer >= 1",
                f"parameter 'diagnostics_period_s' was given -1.0 from {params} line 12; it must be a number >= 0",
                f"parameter 'limits.max_image_pixels' was given 'many' (string) from {params} line 14; it must be "
                "an integer"):
            assert expected in line, (expected, line)
        assert "Traceback" not in log and "InvalidParameterValueException" not in log
        fixed = {"queue_size": 4, "output.mask_threshold": 0.5, "max_image_age_s": 1.0, "generation.max_new_tokens": 0,
                 "max_instruction_chars": 4000, "qos.image_depth": 1, "diagnostics_period_s": 1.0}
        assert client.set_parameters("pixellm_ranges", fixed) == [True] * len(fixed)
        assert not client.change_state("pixellm_ranges", Transition.TRANSITION_CONFIGURE)  # one is still bad
        failures = [line for line in process.log_path.read_text().splitlines() if "configure failed" in line]
        assert len(failures) == 2
        assert "configure failed: parameter 'limits.max_image_pixels' was given 'many'" in failures[-1]
        assert client.set_parameters("pixellm_ranges", {"limits.max_image_pixels": 50_000_000}) == [True]
        assert client.change_state("pixellm_ranges", Transition.TRANSITION_CONFIGURE)
        assert client.change_state("pixellm_ranges", Transition.TRANSITION_ACTIVATE)
    finally:
        assert process.stop() == 0


@pytest.mark.parametrize("key", ["pixellm", "/*/pixellm", "/**/pixellm", "/*", "/**", "robot/pixellm", "pixellm_node"])
def test_a_parameters_file_applies_to_the_nodes_rcl_applies_it_to(lone_domain_id: int, tmp_path: Path,
                                                                   key: str) -> None:
    """``params_file.node_name_matches`` (the 'sets nothing for this node' warning, value sources)
    against rcl's own reading of the same file, for a node in the root namespace and in /robot."""
    from pixellm_ros.ros.params_file import node_name_matches

    params = tmp_path / "keyed.yaml"
    params.write_text(f"{key}:\n  ros__parameters:\n    probe: 1\n")
    for namespace in ("/", "/robot"):
        context = Context()
        rclpy.init(args=["pixellm_node", "--ros-args", "--params-file", str(params)], context=context,
                   domain_id=lone_domain_id)
        try:
            node = rclpy.create_node("pixellm", namespace=namespace, context=context,
                                     automatically_declare_parameters_from_overrides=True)
            assert node_name_matches(key, node.get_fully_qualified_name()) == node.has_parameter("probe"), namespace
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)
