"""The node's parameters: declaration (with descriptors) and validation into ``NodeSettings``.

All parameters are declared when the node is constructed and read on ``configure``; a change takes
effect at the next configure (``cleanup`` then ``configure``). They are declared with dynamic
typing so that a YAML ``max_image_age_s: 2`` (an integer) is not a crash at start-up; the values are
checked in ``settings_from_values``, which raises ``SettingsError`` with a message that says what
to fix, and the node fails ``configure`` with that message.

The shipped defaults are in ``config/pixellm.yaml`` (same names, nested groups).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from rcl_interfaces.msg import ParameterDescriptor

from .conversions import MASK_FORMATS
from .qos import RELIABILITY_CHOICES

DEVICE_HELP = "cpu, cuda, cuda:N or auto"
DTYPE_CHOICES: tuple[str, ...] = ("float32", "bfloat16", "float16")
LOAD_IN_CHOICES: tuple[str, ...] = ("none", "8bit", "4bit")


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: its full dotted name, default value, and what it means."""

    name: str
    default: Any
    description: str
    constraints: str = ""


PARAMETER_SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("autostart", True, "configure and activate on start-up (run standalone)"),
    ParameterSpec("model.path", "", "model folder (save_pixellm output or a released checkpoint); "
                  "empty = the embedded default model"),
    ParameterSpec("model.clip_path", "", "local CLIP ViT-L/14-336 folder for released checkpoints; empty = none"),
    ParameterSpec("model.device", "auto", "where the model runs", DEVICE_HELP),
    ParameterSpec("model.dtype", "float32", "weights and compute dtype", " | ".join(DTYPE_CHOICES)),
    ParameterSpec("model.load_in", "none", "quantised loading of the LLM (bitsandbytes, CUDA only)",
                  " | ".join(LOAD_IN_CHOICES)),
    ParameterSpec("generation.max_new_tokens", 0, "answer length limit in tokens; 0 = the model's default",
                  ">= 0"),
    ParameterSpec("output.mask_threshold", 0.5, "foreground probability above which a pixel is in a mask",
                  "0 < value < 1"),
    ParameterSpec("output.mask_format", "full", "full: masks of the image's size; cropped: masks of the "
                  "target's box only", " | ".join(MASK_FORMATS)),
    ParameterSpec("output.debug_image", True, "publish the overlay image (only while someone subscribes)"),
    ParameterSpec("topics.image", "image_raw", "camera images (sensor_msgs/Image)"),
    ParameterSpec("topics.compressed_image", "image_raw/compressed",
                  "camera images (sensor_msgs/CompressedImage), used when topics.use_compressed"),
    ParameterSpec("topics.use_compressed", False, "subscribe to the compressed image topic instead"),
    ParameterSpec("topics.instruction", "~/instruction", "instructions (std_msgs/String)"),
    ParameterSpec("topics.result", "~/result", "results (pixellm_ros/msg/SegmentationResult), every request"),
    ParameterSpec("topics.answer", "~/answer", "answer text (std_msgs/String) of every successful request"),
    ParameterSpec("topics.debug_image", "~/debug_image", "overlay image (sensor_msgs/Image rgb8)"),
    ParameterSpec("qos.image_reliability", "best_effort", "camera subscription reliability",
                  " | ".join(RELIABILITY_CHOICES)),
    ParameterSpec("qos.image_depth", 1, "camera subscription queue depth", ">= 1"),
    ParameterSpec("qos.result_depth", 50, "result/answer publisher history depth", ">= 1"),
    ParameterSpec("queue_size", 4, "requests that may wait while one runs; when full a new request is "
                  "refused at once with STATUS_QUEUE_FULL", ">= 1"),
    ParameterSpec("max_image_age_s", 1.0, "refuse (STATUS_STALE_IMAGE) a camera frame older than this: "
                  "node clock now - header.stamp; 0 disables", ">= 0"),
    ParameterSpec("max_instruction_chars", 4000, "longer instructions are refused (STATUS_INVALID_INSTRUCTION)",
                  ">= 1"),
    ParameterSpec("standing_instruction", "", "re-run this instruction on new frames (tracking-style); "
                  "empty = off"),
    ParameterSpec("standing_rate_hz", 1.0, "at most this many standing-instruction runs per second", "> 0"),
    ParameterSpec("diagnostics_period_s", 1.0, "publish the node's health (diagnostic_msgs/DiagnosticArray) on "
                  "/diagnostics this often; 0 = off", ">= 0"),
)


def declare_node_parameters(node: Any) -> None:
    """Declare every parameter of PARAMETER_SPECS on ``node`` (an rclpy Node) with its descriptor."""
    for spec in PARAMETER_SPECS:
        node.declare_parameter(
            spec.name,
            spec.default,
            ParameterDescriptor(description=spec.description, additional_constraints=spec.constraints,
                                dynamic_typing=True),
        )


def parameter_values(node: Any) -> dict[str, Any]:
    """The current value of every declared parameter, by dotted name."""
    return {spec.name: node.get_parameter(spec.name).value for spec in PARAMETER_SPECS}


class SettingsError(ValueError):
    """A parameter value the node cannot work with; the message names the parameter and the fix."""


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameters. Paths are None when empty (embedded model / no CLIP folder)."""

    model_path: Path | None
    clip_path: Path | None
    device: str
    dtype: str
    load_in: str
    max_new_tokens: int | None
    mask_threshold: float
    mask_format: int
    debug_image: bool
    image_topic: str
    compressed_image_topic: str
    use_compressed: bool
    instruction_topic: str
    result_topic: str
    answer_topic: str
    debug_image_topic: str
    image_reliability: str
    image_depth: int
    result_depth: int
    queue_size: int
    max_image_age_s: float
    max_instruction_chars: int
    standing_instruction: str
    standing_rate_hz: float
    diagnostics_period_s: float


def _as_bool(values: Mapping[str, Any], name: str) -> bool:
    value = values[name]
    if not isinstance(value, bool):
        raise SettingsError(f"parameter '{name}' must be true or false, got {value!r}")
    return value


def _as_int(values: Mapping[str, Any], name: str, minimum: int) -> int:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"parameter '{name}' must be an integer, got {value!r}")
    if value < minimum:
        raise SettingsError(f"parameter '{name}' must be >= {minimum}, got {value}")
    return value


def _as_float(values: Mapping[str, Any], name: str) -> float:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsError(f"parameter '{name}' must be a number, got {value!r}")
    return float(value)


def _as_str(values: Mapping[str, Any], name: str) -> str:
    value = values[name]
    if not isinstance(value, str):
        raise SettingsError(f"parameter '{name}' must be a string, got {value!r}")
    return value.strip()


def _as_choice(values: Mapping[str, Any], name: str, choices: tuple[str, ...] | list[str]) -> str:
    value = _as_str(values, name).lower()
    if value not in choices:
        raise SettingsError(f"parameter '{name}' is '{values[name]}', which is not one of: {', '.join(choices)}")
    return value


def _as_topic(values: Mapping[str, Any], name: str) -> str:
    value = _as_str(values, name)
    if not value:
        raise SettingsError(f"parameter '{name}' (a topic name) must not be empty")
    return value


MODEL_CONFIG_FILES = ("pixellm_config.json", "config.json")  # ours (save_pixellm), released (llava)
CLIP_CONFIG_FILES = ("config.json",)


def check_model_folder(name: str, raw: str, config_files: tuple[str, ...] = MODEL_CONFIG_FILES,
                       what: str = "model") -> Path | None:
    """An existing folder holding one of ``config_files``, or None for the empty string."""
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise SettingsError(f"parameter '{name}': folder '{raw}' does not exist; point it at a {what} folder "
                            "or leave it empty")
    if not any((path / marker).is_file() for marker in config_files):
        raise SettingsError(f"parameter '{name}': '{raw}' holds no {' or '.join(config_files)}, so it is not "
                            f"a {what} folder")
    return path


def check_device(raw: str) -> str:
    """cpu | auto | cuda | cuda:N where that CUDA device exists on this machine."""
    device = raw.strip().lower()
    if device in ("cpu", "auto"):
        return device
    if device == "cuda" or device.startswith("cuda:"):
        import torch  # only here: the parameter table itself must not need torch

        if not torch.cuda.is_available():
            raise SettingsError(f"parameter 'model.device' is '{raw}' but CUDA is not available on this machine "
                                "(torch.cuda.is_available() is False); use cpu or auto")
        if device.startswith("cuda:"):
            index_text = device.split(":", 1)[1]
            if not index_text.isdigit():
                raise SettingsError(f"parameter 'model.device' is '{raw}'; write cuda:N with N a device number")
            count = torch.cuda.device_count()
            if int(index_text) >= count:
                raise SettingsError(f"parameter 'model.device' is '{raw}' but this machine has {count} CUDA "
                                    f"device(s): cuda:0..cuda:{count - 1}")
        return device
    raise SettingsError(f"parameter 'model.device' is '{raw}', which is not a device; use {DEVICE_HELP}")


def settings_from_values(values: Mapping[str, Any]) -> NodeSettings:
    """Validate raw parameter values (dotted names -> values) into NodeSettings.

    Raises SettingsError naming the first bad parameter and what to put there instead.
    """
    load_in = _as_choice(values, "model.load_in", LOAD_IN_CHOICES)
    device = check_device(_as_str(values, "model.device"))
    if load_in != "none":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise SettingsError(f"parameter 'model.load_in' is '{load_in}', which needs the bitsandbytes package "
                                "(pip install bitsandbytes); or set it to none")
        if device == "cpu":
            raise SettingsError(f"parameter 'model.load_in' is '{load_in}', which needs a CUDA device; "
                                "set model.device to cuda or model.load_in to none")
    mask_threshold = _as_float(values, "output.mask_threshold")
    if not 0.0 < mask_threshold < 1.0:
        raise SettingsError(f"parameter 'output.mask_threshold' must be strictly between 0 and 1, got {mask_threshold}")
    max_image_age_s = _as_float(values, "max_image_age_s")
    if max_image_age_s < 0:
        raise SettingsError(f"parameter 'max_image_age_s' must be >= 0 (0 disables the check), got {max_image_age_s}")
    standing_rate_hz = _as_float(values, "standing_rate_hz")
    if standing_rate_hz <= 0:
        raise SettingsError(f"parameter 'standing_rate_hz' must be > 0, got {standing_rate_hz}")
    diagnostics_period_s = _as_float(values, "diagnostics_period_s")
    if diagnostics_period_s < 0:
        raise SettingsError(f"parameter 'diagnostics_period_s' must be >= 0 (0 turns diagnostics off), "
                            f"got {diagnostics_period_s}")
    max_new_tokens = _as_int(values, "generation.max_new_tokens", 0)
    max_instruction_chars = _as_int(values, "max_instruction_chars", 1)
    standing_instruction = _as_str(values, "standing_instruction")
    if len(standing_instruction) > max_instruction_chars:
        raise SettingsError(f"parameter 'standing_instruction' has {len(standing_instruction)} characters, more than "
                            f"max_instruction_chars = {max_instruction_chars}")
    return NodeSettings(
        model_path=check_model_folder("model.path", _as_str(values, "model.path")),
        clip_path=check_model_folder("model.clip_path", _as_str(values, "model.clip_path"), CLIP_CONFIG_FILES, "CLIP"),
        device=device,
        dtype=_as_choice(values, "model.dtype", DTYPE_CHOICES),
        load_in=load_in,
        max_new_tokens=max_new_tokens or None,
        mask_threshold=mask_threshold,
        mask_format=MASK_FORMATS[_as_choice(values, "output.mask_format", list(MASK_FORMATS))],
        debug_image=_as_bool(values, "output.debug_image"),
        image_topic=_as_topic(values, "topics.image"),
        compressed_image_topic=_as_topic(values, "topics.compressed_image"),
        use_compressed=_as_bool(values, "topics.use_compressed"),
        instruction_topic=_as_topic(values, "topics.instruction"),
        result_topic=_as_topic(values, "topics.result"),
        answer_topic=_as_topic(values, "topics.answer"),
        debug_image_topic=_as_topic(values, "topics.debug_image"),
        image_reliability=_as_choice(values, "qos.image_reliability", list(RELIABILITY_CHOICES)),
        image_depth=_as_int(values, "qos.image_depth", 1),
        result_depth=_as_int(values, "qos.result_depth", 1),
        queue_size=_as_int(values, "queue_size", 1),
        max_image_age_s=max_image_age_s,
        max_instruction_chars=max_instruction_chars,
        standing_instruction=standing_instruction,
        standing_rate_hz=standing_rate_hz,
        diagnostics_period_s=diagnostics_period_s,
    )
