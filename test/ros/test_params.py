"""Parameters: the shipped YAML, validation messages, and configure failing on bad values (in-process rclpy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from pixellm_ros.msg import SegmentedTarget
from pixellm_ros.ros.params import PARAMETER_SPECS, SettingsError, settings_from_values
from pixellm_ros.ros.qos import image_qos
from pixellm_ros.ros.runner import default_params_file

DEFAULTS = {spec.name: spec.default for spec in PARAMETER_SPECS}


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
    settings = settings_from_values(values)
    assert settings.model_path is None and settings.device == "auto" and settings.queue_size == 4
    assert settings.mask_format == SegmentedTarget.MASK_FULL and settings.max_new_tokens is None
    assert settings.image_reliability == "best_effort" and settings.image_depth == 1


def with_values(**changes: Any) -> dict[str, Any]:
    values = dict(DEFAULTS)
    values.update({name.replace("__", "."): value for name, value in changes.items()})
    return values


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model__device": "quantum"}, "'model.device' is 'quantum', which is not a device"),
        ({"model__device": "cuda:x"}, "model.device"),
        ({"model__dtype": "float8"}, "'model.dtype' is 'float8', which is not one of: float32, bfloat16, float16"),
        ({"model__load_in": "2bit"}, "model.load_in"),
        ({"model__path": "/nonexistent/model"}, "'model.path': folder '/nonexistent/model' does not exist"),
        ({"model__clip_path": "/nonexistent/clip"}, "model.clip_path"),
        ({"output__mask_format": "polygon"}, "'output.mask_format' is 'polygon', which is not one of: full, cropped"),
        ({"output__mask_threshold": 1.5}, "strictly between 0 and 1"),
        ({"qos__image_reliability": "sometimes"}, "not one of: best_effort, reliable"),
        ({"qos__image_depth": 0}, "'qos.image_depth' must be >= 1"),
        ({"queue_size": 0}, "'queue_size' must be >= 1"),
        ({"queue_size": "4"}, "'queue_size' must be an integer"),
        ({"max_image_age_s": -1.0}, "'max_image_age_s' must be >= 0"),
        ({"standing_rate_hz": 0.0}, "'standing_rate_hz' must be > 0"),
        ({"topics__result": ""}, "'topics.result' (a topic name) must not be empty"),
        ({"output__debug_image": "yes"}, "'output.debug_image' must be true or false"),
        ({"standing_instruction": "x" * 4001}, "'standing_instruction' has 4001 characters"),
    ],
)
def test_bad_values_name_the_parameter_and_the_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as error:
        settings_from_values(with_values(**changes))
    assert message in str(error.value)


def test_a_folder_without_a_model_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="holds no pixellm_config.json or config.json"):
        settings_from_values(with_values(model__path=str(tmp_path)))
    (tmp_path / "pixellm_config.json").write_text("{}")
    assert settings_from_values(with_values(model__path=str(tmp_path))).model_path == tmp_path


def test_integers_are_accepted_for_floats_and_case_is_ignored() -> None:
    settings = settings_from_values(with_values(max_image_age_s=2, model__device="CPU", output__mask_format="Cropped"))
    assert settings.max_image_age_s == 2.0 and settings.device == "cpu"
    assert settings.mask_format == SegmentedTarget.MASK_CROPPED


def test_image_qos_follows_the_parameters() -> None:
    from rclpy.qos import ReliabilityPolicy

    assert image_qos("best_effort", 1).reliability == ReliabilityPolicy.BEST_EFFORT
    profile = image_qos("reliable", 3)
    assert profile.reliability == ReliabilityPolicy.RELIABLE and profile.depth == 3
    with pytest.raises(ValueError):
        image_qos("sometimes", 1)


@pytest.fixture()
def ros_context(domain_id: int) -> Iterator[Context]:
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.mark.parametrize(
    ("overrides", "logged"),
    [
        ({"model.device": "quantum"}, "model.device"),
        ({"model.path": "/nonexistent/model"}, "does not exist"),
        ({"model.dtype": "float8"}, "model.dtype"),
        ({"output.mask_format": "rle"}, "output.mask_format"),
        ({"qos.image_reliability": "sometimes"}, "qos.image_reliability"),
    ],
)
def test_configure_fails_on_bad_values_and_the_node_stays_unconfigured(
        ros_context: Context, overrides: dict[str, Any], logged: str, caplog) -> None:
    from pixellm_ros.ros.pixellm_node import PixelLMNode

    node = PixelLMNode("pixellm_param_test", context=ros_context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    errors: list[str] = []
    original_error = node.get_logger().error
    node.get_logger().error = lambda text, **kw: (errors.append(text), original_error(text, **kw))[1]  # type: ignore[method-assign]
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert errors and logged in errors[0] and errors[0].startswith("configure failed")
        # nothing was created: no result publisher exists
        assert not [name for name, _ in node.get_publisher_names_and_types_by_node(node.get_name(), "/")
                    if name.endswith("/result")]
        # fixed, it configures
        node.set_parameters([Parameter(k, value=DEFAULTS[k]) for k in overrides])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    finally:
        node.release_all("test over")
        node.destroy_node()
