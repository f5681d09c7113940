"""Parameters: one table -> the YAML, descriptors, checks; configure failing with its reason; values
set at run time rejected with the reason or applied (in-process rclpy, and over real DDS)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from pixellm_ros.msg import SegmentationResult, SegmentedTarget
from pixellm_ros.ros import params as P
from pixellm_ros.ros.package_files import default_params_file
from pixellm_ros.ros.qos import image_qos
from support.dds import NodeProcess, RosClient, active_node, rgb_image_msg

DEFAULTS = {name: value for name, value in P.DEFAULTS.items() if value is not None}  # unset ones stay out of YAML


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def test_shipped_yaml_holds_exactly_the_declared_parameters_with_their_defaults() -> None:
    document = yaml.safe_load(default_params_file().read_text())
    values = flatten(document["/**"]["ros__parameters"])
    assert values == DEFAULTS
    settings = P.settings_from_values({**values, "cameras.names": None})
    assert settings.model_path is None and settings.device == "auto" and settings.queue_size == 4
    assert settings.mask_format == SegmentedTarget.MASK_FULL and settings.max_new_tokens is None
    assert settings.image_reliability == "best_effort" and settings.image_depth == 1
    assert settings.camera_names == () and settings.request_depth == 256


def test_every_spec_has_its_settings_field_and_a_descriptor_with_its_range_and_choices() -> None:
    assert len({s.field for s in P.PARAMETER_SPECS}) == len(P.PARAMETER_SPECS)
    queue = P.SPECS_BY_NAME["queue_size"].descriptor()
    assert queue.type == ParameterType.PARAMETER_INTEGER
    assert (queue.integer_range[0].from_value, queue.integer_range[0].to_value) == (1, 1024)
    assert "applies at the next configure" in queue.additional_constraints
    threshold = P.SPECS_BY_NAME["output.mask_threshold"].descriptor()
    assert threshold.type == ParameterType.PARAMETER_DOUBLE and threshold.floating_point_range[0].to_value == 1.0
    assert "> 0" in threshold.additional_constraints and "applies at once" in threshold.additional_constraints
    assert "one of: full, cropped" in P.SPECS_BY_NAME["output.mask_format"].descriptor().additional_constraints
    assert {s.apply for s in P.PARAMETER_SPECS} == {P.LIVE, P.ACTIVATE, P.CONFIGURE, P.STARTUP}


def with_values(**changes: Any) -> dict[str, Any]:
    values = dict(P.DEFAULTS)
    values.update({name.replace("__", "."): value for name, value in changes.items()})
    return values


def test_the_declared_settings_classes_agree_with_the_table() -> None:
    assert P.settings_drift() == []
    assert [f.name for f in dataclasses.fields(P.NodeSettings)] == [s.field for s in P.PARAMETER_SPECS]


def _settings_class_with(name: str, changes: dict[str, Any], drop: str = "") -> type:
    """A copy of NodeSettings with fields retyped (``changes``) or left out (``drop``)."""
    fields = [(f.name, changes.get(f.name, f.type)) for f in dataclasses.fields(P.NodeSettings) if f.name != drop]
    drifted = dataclasses.make_dataclass(name, fields, frozen=True)
    drifted.__module__ = P.__name__  # its annotations are read in the params module
    return drifted


def test_a_settings_class_that_drifts_from_the_table_is_named() -> None:
    [missing] = P.settings_drift(_settings_class_with("NoTimeout", {}, drop="shutdown_timeout_s"))
    assert "missing ['shutdown_timeout_s']" in missing
    problems = P.settings_drift(_settings_class_with("Retyped", {"max_new_tokens": "int", "queue_size": "float",
                                                                 "camera_names": "list[str]"}))
    assert any("NodeSettings" not in p and "Retyped.max_new_tokens" in p and "gives None" in p for p in problems)
    assert any("Retyped.queue_size" in p for p in problems) and any("Retyped.camera_names" in p for p in problems)
    extra = dataclasses.make_dataclass("Extra", [(f.name, f.type) for f in dataclasses.fields(P.CameraSettings)]
                                       + [("frame_id", "str")], frozen=True)
    [camera] = P.settings_drift(camera_class=extra)
    assert "not in the table ['frame_id']" in camera


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model__device": "quantum"}, "'model.device': unknown device 'quantum'"),
        ({"model__device": "cuda:x"}, "model.device"),
        ({"model__dtype": "float8"}, "'model.dtype' is 'float8', which is not one of: float32, bfloat16, float16"),
        ({"model__load_in": "2bit"}, "model.load_in"),
        ({"model__decode_mode": "fast"}, "'model.decode_mode' is 'fast', which is not one of: dynamic, static, cuda_graph"),
        ({"model__decode_mode": "cuda_graph", "model__device": "cpu"}, "a CUDA graph needs a CUDA device"),
        ({"model__path": "/nonexistent/model"}, "'model.path': folder '/nonexistent/model' does not exist"),
        ({"model__clip_path": "/nonexistent/clip"}, "model.clip_path"),
        ({"output__mask_format": "polygon"}, "'output.mask_format' is 'polygon', which is not one of: full, cropped"),
        ({"output__mask_threshold": 1.5}, "'output.mask_threshold' must be < 1"),
        ({"output__mask_threshold": 0.0}, "'output.mask_threshold' must be > 0"),
        ({"qos__image_reliability": "sometimes"}, "not one of: best_effort, reliable"),
        ({"qos__image_depth": 0}, "'qos.image_depth' must be >= 1"),
        ({"queue_size": 0}, "'queue_size' must be >= 1"),
        ({"queue_size": "4"}, "'queue_size' must be an integer"),
        ({"max_image_age_s": -1.0}, "'max_image_age_s' must be >= 0"),
        ({"standing_rate_hz": 0.0}, "'standing_rate_hz' must be > 0"),
        ({"topics__result": ""}, "'topics.result': Invalid topic name: topic name must not be empty"),
        ({"topics__image": "my camera"}, "'topics.image': Invalid topic name"),
        ({"output__debug_image": "yes"}, "'output.debug_image' must be true or false"),
        ({"standing_instruction": "x" * 4001}, "'standing_instruction' has 4001 characters"),
        ({"cameras__names": ["head", "head"]}, "names a camera twice"),
        ({"cameras__names": ["head cam"]}, "must be letters, digits and '_'"),
        ({"tracking__lost_timeout_s": 0.0}, "'tracking.lost_timeout_s' must be > 0"),
        ({"tracking__flow_preset": "slow"}, "'tracking.flow_preset' is 'slow', which is not one of: ultrafast, fast"),
        ({"tracking__history_frames": 0}, "'tracking.history_frames' must be >= 1"),
        ({"tracking__lost_fraction": 0.5}, "parameters 'tracking.*': need lost_fraction <= resume_fraction"),
    ],
)
def test_bad_values_name_the_parameter_and_the_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(P.SettingsError) as error:
        P.settings_from_values(with_values(**changes))
    assert message in str(error.value)


def test_the_trackers_options_are_parameters_declared_by_the_tracking_core_itself() -> None:
    from dataclasses import replace

    from pixellm_ros.tracking import TrackerOptions, option_fields

    options = option_fields()
    assert {o.name for o in options} >= {"lost_timeout_s", "unnamed_timeout_s", "max_frame_gap_s", "history_frames"}
    for option in options:  # the default, meaning and range are the core's, written nowhere else
        spec = P.SPECS_BY_NAME[f"tracking.{option.name}"]
        assert (spec.default, spec.description, spec.apply) == (option.default, option.metadata["help"], P.ACTIVATE)
        assert (spec.minimum, spec.maximum, spec.choices) == (option.metadata["minimum"], option.metadata["maximum"],
                                                              option.metadata["choices"])
    assert P.SPECS_BY_NAME["tracking.standing"].default is False and P.SPECS_BY_NAME["tracking.standing"].apply == P.LIVE
    assert P.tracker_options(P.settings_from_values(with_values())) == TrackerOptions()
    settings = P.settings_from_values(with_values(tracking__lost_timeout_s=4, tracking__flow_preset="Medium"))
    assert P.tracker_options(settings) == replace(TrackerOptions(), lost_timeout_s=4.0, flow_preset="medium")
    timeout = P.SPECS_BY_NAME["tracking.lost_timeout_s"].descriptor()
    assert timeout.floating_point_range[0].from_value == 0.0 and "> 0" in timeout.additional_constraints
    assert "applies at the next activate" in timeout.additional_constraints


def test_the_decode_mode_reaches_the_settings() -> None:
    assert P.settings_from_values(with_values()).decode_mode == "dynamic"
    assert P.settings_from_values(with_values(model__decode_mode="static")).decode_mode == "static"


def test_a_folder_without_a_model_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(P.SettingsError, match="holds no pixellm_config.json or config.json"):
        P.settings_from_values(with_values(model__path=str(tmp_path)))
    (tmp_path / "pixellm_config.json").write_text("{}")
    assert P.settings_from_values(with_values(model__path=str(tmp_path))).model_path == tmp_path


def test_integers_are_accepted_for_floats_and_case_is_ignored() -> None:
    settings = P.settings_from_values(with_values(max_image_age_s=2, model__device="CPU", output__mask_format="Cropped"))
    assert settings.max_image_age_s == 2.0 and isinstance(settings.max_image_age_s, float)
    assert settings.device == "cpu" and settings.mask_format == SegmentedTarget.MASK_CROPPED


def test_cameras_get_their_own_topics_with_defaults_from_their_names() -> None:
    settings = P.settings_from_values(with_values(cameras__names=["head", "wrist"]))
    cameras = P.camera_settings(settings, {"cameras.wrist.image": "/arm/cam", "cameras.wrist.use_compressed": True})
    assert [(c.name, c.topic) for c in cameras] == [("head", "head/image_raw"), ("wrist", "wrist/image_raw/compressed")]
    assert cameras[1].image_topic == "/arm/cam"
    [default] = P.camera_settings(P.settings_from_values(with_values()), {})
    assert (default.name, default.topic) == (P.DEFAULT_CAMERA, "image_raw")


def test_unknown_keys_are_named_with_the_closest_parameter() -> None:
    warnings = P.unknown_overrides(["model.devic", "use_sim_time", "qos_overrides./x.depth", "cameras.head.image",
                                    "frobnicate"], ["head"])
    assert warnings == ["unknown parameter 'frobnicate' is ignored",
                        "unknown parameter 'model.devic' is ignored; did you mean 'model.device'?"]


def test_image_qos_follows_the_parameters() -> None:
    from rclpy.qos import ReliabilityPolicy

    assert image_qos("best_effort", 1).reliability == ReliabilityPolicy.BEST_EFFORT
    profile = image_qos("reliable", 3)
    assert profile.reliability == ReliabilityPolicy.RELIABLE and profile.depth == 3
    with pytest.raises(ValueError):
        image_qos("sometimes", 1)


# ---------------------------------------------------------------------------- a node in this process
@pytest.fixture()
def ros_context(lone_domain_id: int) -> Iterator[Context]:
    context = Context()
    rclpy.init(context=context, domain_id=lone_domain_id)
    yield context
    rclpy.try_shutdown(context=context)


def make_node(context: Context, overrides: dict[str, Any], logged: list[str]) -> Any:
    from pixellm_ros.ros.pixellm_node import PixelLMNode

    node = PixelLMNode("pixellm_param_test", context=context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    logger = node.get_logger()
    # One wrapper per level: rclpy's logger pins one severity per call site.
    error, warning, info = logger.error, logger.warning, logger.info
    logger.error = lambda text, **kw: (logged.append(text), error(text, **kw))[1]  # type: ignore[method-assign]
    logger.warning = lambda text, **kw: (logged.append(text), warning(text, **kw))[1]  # type: ignore[method-assign]
    logger.info = lambda text, **kw: (logged.append(text), info(text, **kw))[1]  # type: ignore[method-assign]
    return node


def result_publishers(node: Any) -> list[str]:
    """The node's own result publishers (its entity list, not the graph, which needs discovery time)."""
    return [p.topic_name for p in node.publishers if p.topic_name.endswith("/result")]


@pytest.mark.parametrize(
    ("overrides", "logged"),
    [
        ({"model.device": "quantum"}, "model.device"),
        ({"model.path": "/nonexistent/model"}, "does not exist"),
        ({"model.dtype": "float8"}, "model.dtype"),
        ({"output.mask_format": "rle"}, "output.mask_format"),
        ({"qos.image_reliability": "sometimes"}, "qos.image_reliability"),
        ({"topics.result": "bad topic"}, "'topics.result': Invalid topic name"),
        ({"queue_size": "4"}, "parameter 'queue_size' was given '4' (string); it must be an integer"),
    ],
)
def test_configure_fails_with_its_reason_and_leaves_nothing_behind(
        ros_context: Context, overrides: dict[str, Any], logged: str) -> None:
    lines: list[str] = []
    node = make_node(ros_context, overrides, lines)
    try:
        for _ in range(3):  # retries must not leak a publisher each
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            errors = [line for line in lines if line.startswith("configure failed")]
            assert errors and logged in errors[-1]
            assert not result_publishers(node)
    finally:
        node.release_all("test over")
        node.destroy_node()


def test_a_wrong_autostart_is_reported_and_does_not_block_a_configure_by_hand(ros_context: Context) -> None:
    lines: list[str] = []
    node = make_node(ros_context, {"autostart": "yes"}, lines)
    try:
        assert node.startup_problem("autostart") == ("parameter 'autostart' was given 'yes' (string); "
                                                     "it must be true or false")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    finally:
        node.release_all("test over")
        node.destroy_node()


def test_an_invalid_topic_that_passes_the_name_rules_still_fails_with_a_reason(ros_context: Context) -> None:
    lines: list[str] = []
    node = make_node(ros_context, {"topics.answer": "a//b"}, lines)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert any(line.startswith("configure failed") and "a//b" in line for line in lines)
        assert not result_publishers(node)  # the publishers created before the failing one are gone
        node.set_parameters([Parameter("topics.answer", value="~/answer")])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert len(result_publishers(node)) == 1
    finally:
        node.release_all("test over")
        node.destroy_node()


def test_unknown_keys_are_warned_about_at_configure(ros_context: Context) -> None:
    lines: list[str] = []
    node = make_node(ros_context, {"model.devic": "cpu"}, lines)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert "unknown parameter 'model.devic' is ignored; did you mean 'model.device'?" in lines
    finally:
        node.release_all("test over")
        node.destroy_node()


def test_set_at_run_time_is_checked_and_live_values_apply(ros_context: Context) -> None:
    lines: list[str] = []
    node = make_node(ros_context, {}, lines)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        [bad] = node.set_parameters([Parameter("queue_size", value=0)])
        assert not bad.successful and "queue_size" in bad.reason
        [wrong_type] = node.set_parameters([Parameter("queue_size", value="many")])
        assert not wrong_type.successful and "type" in wrong_type.reason.lower()
        assert node.get_parameter("queue_size").value == 4  # neither value nor type changed
        [coerced] = node.set_parameters([Parameter("max_image_age_s", value=3)])
        assert coerced.successful and node.get_parameter("max_image_age_s").value == 3.0
        assert node._desk.settings.max_image_age_s == 3.0  # live: in effect at once
        [later] = node.set_parameters([Parameter("queue_size", value=8)])
        assert later.successful and any("'queue_size' applies at the next configure" in line for line in lines)
        assert node._desk.settings.queue_size == 4  # not until the next configure
        [threshold] = node.set_parameters([Parameter("output.mask_threshold", value=1.0)])
        assert not threshold.successful and "must be < 1" in threshold.reason
    finally:
        node.release_all("test over")
        node.destroy_node()


# ---------------------------------------------------------------------------- over real DDS
NODE = "pixellm_params_dds"


@pytest.fixture(scope="module")
def live_node(client: RosClient, domain_id: int, chain_model_dir: Path, tmp_path_factory) -> Iterator[NodeProcess]:
    process = NodeProcess(domain_id, NODE, {"model.path": str(chain_model_dir), "model.device": "cpu",
                                            "max_image_age_s": 0.0},
                          tmp_path_factory.mktemp("params_logs") / f"{NODE}.log")
    with active_node(process, client):
        yield process


def test_over_dds_a_bad_queue_size_is_refused_and_the_mask_format_applies_to_the_next_result(
        client: RosClient, live_node: NodeProcess) -> None:
    [refused] = client.set_parameters_results(NODE, {"queue_size": -3})
    assert not refused.successful and "queue_size" in refused.reason and "-3" in refused.reason
    [wrong] = client.set_parameters_results(NODE, {"queue_size": "eight"})
    assert not wrong.successful and "type" in wrong.reason.lower()

    rgb = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    image = rgb_image_msg(rgb, client.now(), "cam")
    full = client.segment_service(NODE, image, "segment the red cup")
    assert full.status == SegmentationResult.STATUS_OK and full.targets
    assert full.targets[0].mask_format == SegmentedTarget.MASK_FULL and full.targets[0].mask.width == 64

    assert client.set_parameters(NODE, {"output.mask_format": "cropped"}) == [True]
    cropped = client.segment_service(NODE, image, "segment the red cup")
    target = cropped.targets[0]
    assert target.mask_format == SegmentedTarget.MASK_CROPPED
    assert (target.mask.width, target.mask.height) == (target.box.width, target.box.height)
    assert client.set_parameters(NODE, {"output.mask_format": "full"}) == [True]


def test_over_dds_a_value_of_another_type_is_refused_naming_the_types_and_the_declared_type_stays(
        client: RosClient, live_node: NodeProcess) -> None:
    """What ``ros2 param set /pixellm queue_size 2.5`` sends: rclpy alone would answer "Wrong parameter
    type, expected '2' got '3'"; the node's pre-set step names the types instead, and ``ros2 param
    describe`` still shows an integer with its range."""
    from rcl_interfaces.srv import DescribeParameters, GetParameters

    [refused] = client.set_parameters_results(NODE, {"queue_size": 2.5})
    assert not refused.successful
    assert refused.reason == "wrong type for parameter 'queue_size': it takes an integer, like 4; got 2.5 (double)"
    [flag] = client.set_parameters_results(NODE, {"output.debug_image": "yes"})
    assert flag.reason == "wrong type for parameter 'output.debug_image': it takes true or false; got 'yes' (string)"
    [described] = client.call(DescribeParameters, f"/{NODE}/describe_parameters",
                              DescribeParameters.Request(names=["queue_size"])).descriptors
    assert described.type == ParameterType.PARAMETER_INTEGER
    assert (described.integer_range[0].from_value, described.integer_range[0].to_value) == (1, 1024)
    [value] = client.call(GetParameters, f"/{NODE}/get_parameters", GetParameters.Request(names=["queue_size"])).values
    assert value.type == ParameterType.PARAMETER_INTEGER and value.integer_value == 4
