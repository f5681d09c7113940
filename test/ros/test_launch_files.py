"""The launch files: what they declare and start (read from their source everywhere), and, where the
launch system is installed (apt ROS), what launch_ros makes of them without starting anything."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PIXELLM_LAUNCH = REPO / "launch" / "pixellm.launch.py"
DEMO_LAUNCH = REPO / "launch" / "demo.launch.py"


def calls(path: Path, name: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def keyword(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name:
            return ast.literal_eval(kw.value) if isinstance(kw.value, ast.Constant) else kw.value
    return None


def declared(path: Path) -> set[str]:
    return {ast.literal_eval(call.args[0]) for call in calls(path, "DeclareLaunchArgument")}


def test_pixellm_launch_declares_the_documented_arguments() -> None:
    assert {"params_file", "namespace", "image_topic", "compressed_image_topic", "use_compressed", "depth",
            "depth_image_topic", "camera_info_topic", "cameras", "model_path", "device"} <= declared(PIXELLM_LAUNCH)
    documented = PIXELLM_LAUNCH.read_text().split('"""')[1]
    for argument in declared(PIXELLM_LAUNCH):
        assert f"    {argument} " in documented, f"{argument} is not in the launch file's docstring"
    (node,) = calls(PIXELLM_LAUNCH, "LifecycleNode")
    assert keyword(node, "package") == "pixellm_ros" and keyword(node, "executable") == "pixellm_node"
    for name in ("name", "namespace", "parameters", "remappings"):
        assert keyword(node, name) is not None, f"LifecycleNode without {name}="


def test_demo_launch_starts_the_camera_and_includes_the_node_launch() -> None:
    (camera,) = calls(DEMO_LAUNCH, "Node")
    assert keyword(camera, "executable") == "camera_sim_node" and keyword(camera, "package") == "pixellm_ros"
    assert "pixellm.launch.py" in DEMO_LAUNCH.read_text()
    assert {"params_file", "model_path", "device", "image_topic"} <= declared(DEMO_LAUNCH)
    # the demo's image_topic reaches both nodes: the camera publishes there and the node listens there
    assert DEMO_LAUNCH.read_text().count('"image_topic"') >= 2 and '("image_raw", image_topic)' in DEMO_LAUNCH.read_text()


def test_every_launched_executable_exists_and_is_installed() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    for executable in ("pixellm_node", "camera_sim_node"):
        script = REPO / "scripts" / executable
        assert script.is_file() and script.stat().st_mode & 0o111, f"scripts/{executable} is not executable"
        assert re.search(rf"scripts/{executable}\b", cmake), f"CMakeLists.txt does not install {executable}"
    assert re.search(r"install\(DIRECTORY launch config", cmake)


# ---------------------------------------------------------------- with the real launch system
def load_description(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def evaluate(description, arguments: dict[str, str]) -> list[Any]:
    """Visit every action except the nodes themselves (which would start processes); return the nodes
    with their substitutions performed."""
    from launch import LaunchContext
    from launch_ros.actions import Node

    context = LaunchContext()
    context.launch_configurations.update(arguments)
    nodes: list[Any] = []

    def walk(entities):
        for entity in entities:
            if isinstance(entity, Node):
                entity._perform_substitutions(context)  # what execute() does before starting the process
                nodes.append(entity)
                continue
            walk(entity.visit(context) or [])

    walk(description.entities)
    return nodes


def require_launch_ros() -> None:
    """Skip where the ROS launch system is absent; an installed but broken one is a failure."""
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("the ROS launch system is not installed here")
    import launch_ros.actions  # noqa: F401 - must import where it is installed


def test_launch_ros_evaluates_pixellm_launch_with_overrides(tmp_path: Path) -> None:
    require_launch_ros()
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    queue_size: 2\n")
    (node,) = evaluate(load_description(PIXELLM_LAUNCH), {
        "params_file": str(params), "namespace": "robot1", "image_topic": "/cam/image_raw",
        "model_path": "/models/pixellm", "device": "cpu"})
    assert node.node_package == "pixellm_ros" and node.node_executable == "pixellm_node"
    assert node.node_name == "/robot1/pixellm"
    assert node.expanded_remapping_rules == [("image_raw", "/cam/image_raw"),
                                             ("image_raw/compressed", "/cam/image_raw/compressed"),
                                             ("depth/image_raw", "depth/image_raw"), ("camera_info", "camera_info")]
    files = [Path(p) for p, _ in node._Node__expanded_parameter_arguments]
    assert files[0] == params
    assert "model.path: /models/pixellm" in files[1].read_text() and "model.device: cpu" in files[1].read_text()


def test_launch_ros_evaluates_pixellm_launch_without_overrides() -> None:
    require_launch_ros()
    pytest.importorskip("ament_index_python")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("pixellm_ros")
    except PackageNotFoundError:
        pytest.skip("pixellm_ros is not installed in an ament prefix")
    (node,) = evaluate(load_description(PIXELLM_LAUNCH), {})
    # only the parameters file: an empty model_path/device must not override the file's values
    assert len(node._Node__expanded_parameter_arguments) == 1
    assert node.expanded_remapping_rules[:2] == [("image_raw", "image_raw"), ("image_raw/compressed", "image_raw/compressed")]
