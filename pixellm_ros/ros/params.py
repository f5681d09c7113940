"""The node's parameters: ONE table, and from it the declarations, the checks and NodeSettings.

Each ``ParameterSpec`` says everything about one parameter once: its dotted name, type, default,
range or choices, what it means, and WHEN a new value takes effect:

    live       at once, from the next request on (``ros2 param set`` is enough)
    activate   at the next activate (the model is loaded there): deactivate + activate
    configure  at the next configure (topics, QoS, queue): cleanup + configure
    startup    only when the process starts (autostart)

From the table come: the declarations with ``ParameterDescriptor`` s (type, description, the
range as ``integer_range`` / ``floating_point_range`` and the choices in ``additional_constraints``,
so ``ros2 param describe`` shows them), ``check_value`` (used by the node's on-set-parameters
callback, which REJECTS a bad value or a wrong type at once with the reason),
``settings_from_values`` (the validation at configure, into ``NodeSettings``) and
``config/pixellm.yaml``. ``NodeSettings`` and ``CameraSettings`` are declared, typed frozen
dataclasses (an editor jumps to a setting), one field per parameter; the table checks them:
``settings_drift`` names a field missing, extra, out of order or of a type the checked values do
not have. A test fails when the YAML's keys or defaults, or the settings classes, drift from the table.

Several cameras (``cameras.names``): unset, the node has one camera, ``default``, on
``topics.image`` / ``topics.compressed_image`` / ``topics.use_compressed`` (and, with depth,
``topics.depth_image`` / ``topics.camera_info``). Set to a list of names, every name gets the group
``cameras.<name>.*`` (``CAMERA_SPECS``: the same five), declared at configure, and ``topics.image``
& co. are not used.

Declared types are static: a value of another type is rejected (``ros2 param set queue_size abc``),
except an integer for a floating-point parameter, which is taken as that number (a YAML
``max_image_age_s: 2``), at start-up and, where rclpy has pre-set callbacks (Iron and later), at
run time too, where a value of another type is rejected with the parameter's type and the value
given (``coerce_run_time``) instead of rclpy's "Wrong parameter type, expected '2' got '3'".
A start-up value (parameters file or ``-p``) of a wrong type or outside the declared range does
not stop the process (rclpy would raise while declaring): the default is declared instead, and
configure fails naming the parameter, the value, what it must be and where the value came from,
until the parameter is set at run time.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterValueException
from rclpy.parameter import Parameter

from pixellm_ros.engine import (
    CLIP_CONFIG_FILES,
    DECODE_MODES,
    DTYPE_NAMES,
    LOAD_IN_CHOICES,
    MODEL_CONFIG_FILES,
    LoadOptionError,
    resolve_device,
    resolve_load_in,
)
from pixellm_ros.msg import SegmentedTarget
from pixellm_ros.tracking import TrackerOptions, option_fields

from .qos import RELIABILITY_CHOICES

LIVE, ACTIVATE, CONFIGURE, STARTUP = "live", "activate", "configure", "startup"
APPLY_HELP = {
    LIVE: "applies at once",
    ACTIVATE: "applies at the next activate (deactivate + activate reloads the model)",
    CONFIGURE: "applies at the next configure (cleanup + configure)",
    STARTUP: "applies when the process starts",
}
DEFAULT_CAMERA = "default"
MASK_FORMATS: dict[str, int] = {"full": SegmentedTarget.MASK_FULL, "cropped": SegmentedTarget.MASK_CROPPED}
DEVICE_HELP = "cpu, cuda, cuda:N or auto"
# Parameters rclpy itself declares or reads; never "unknown".
BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_event_publisher")
BUILTIN_PREFIXES = ("qos_overrides.",)

_TYPES: dict[str, tuple[int, str]] = {
    "bool": (ParameterType.PARAMETER_BOOL, "true or false"),
    "int": (ParameterType.PARAMETER_INTEGER, "an integer"),
    "float": (ParameterType.PARAMETER_DOUBLE, "a number"),
    "str": (ParameterType.PARAMETER_STRING, "a string"),
    "str[]": (ParameterType.PARAMETER_STRING_ARRAY, "a list of strings"),
}
_INT_MAX = 2**63 - 1


class SettingsError(ValueError):
    """A parameter value the node cannot work with; the message names the parameter and the fix."""


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter, declared once.

    name: the dotted name (``cameras.{camera}.image`` for a per-camera template).
    kind: "bool" | "int" | "float" | "str" | "str[]"; default: its value (None: unset, "str[]" only).
    field: the NodeSettings attribute (per-camera templates: the CameraSettings attribute).
    minimum / maximum: inclusive bounds unless ``exclusive``; choices: allowed strings (any case).
    check: extra rule, ``check(value) -> error text or None`` (value already type-checked).
    convert: the settings value from the checked value (default: the value itself).
    """

    name: str
    kind: str
    default: Any
    description: str
    apply: str
    field: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None
    convert: Callable[[Any], Any] | None = None

    @property
    def constraints(self) -> str:
        """What ``ros2 param describe`` shows as the additional constraints."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        low, high = ("> ", "< ") if self.exclusive else (">= ", "<= ")
        if self.minimum is not None:
            parts.append(f"{low}{self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{high}{self.maximum:g}")
        parts.append(APPLY_HELP[self.apply])
        return "; ".join(parts)

    @property
    def allowed(self) -> str:
        """What a value must be: its type, and its range or choices ("an integer >= 1 and <= 1024")."""
        low, high = (">", "<") if self.exclusive else (">=", "<=")
        bounds = [f"{sign} {bound:g}" for sign, bound in ((low, self.minimum), (high, self.maximum))
                  if bound is not None]
        choices = f" (one of: {', '.join(self.choices)})" if self.choices else ""
        return " ".join([_TYPES[self.kind][1], " and ".join(bounds)]).strip() + choices

    def descriptor(self, name: str | None = None) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=name or self.name, type=_TYPES[self.kind][0],
                                         description=self.description, additional_constraints=self.constraints)
        if self.kind == "int" and (self.minimum is not None or self.maximum is not None):
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.minimum if self.minimum is not None else -_INT_MAX),
                to_value=int(self.maximum if self.maximum is not None else _INT_MAX), step=1)]
        if self.kind == "float" and (self.minimum is not None or self.maximum is not None):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.minimum if self.minimum is not None else -sys.float_info.max),
                to_value=float(self.maximum if self.maximum is not None else sys.float_info.max), step=0.0)]
        return descriptor


# ------------------------------------------------------------------------------ value rules
def _topic_name(value: str) -> str | None:
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name

    try:
        validate_topic_name(value)
    except InvalidTopicNameException as error:
        return str(error).replace("\n", " ")
    return None


def _folder(config_files: tuple[str, ...], what: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not value:
            return None
        path = Path(value).expanduser()
        if not path.is_dir():
            return f"folder '{value}' does not exist; point it at a {what} folder or leave it empty"
        if not any((path / marker).is_file() for marker in config_files):
            return f"'{value}' holds no {' or '.join(config_files)}, so it is not a {what} folder"
        return None

    return check


def _device(value: str) -> str | None:
    """The project's one device rule (``resolve_device``: cpu | auto | cuda | cuda:N that exists here)."""
    try:
        resolve_device(value)
    except LoadOptionError as error:
        return str(error)
    return None


def _camera_names(value: list[str]) -> str | None:
    from rclpy.validate_topic_name import validate_topic_name

    if len(set(value)) != len(value):
        return f"{value} names a camera twice"
    for name in value:
        if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            return f"camera name '{name}' must be letters, digits and '_' (not starting with a digit)"
        validate_topic_name(name)
    return None


def _path_or_none(value: str) -> Path | None:
    return Path(value).expanduser() if value else None


_KINDS_OF_PYTHON = {bool: "bool", int: "int", float: "float", str: "str"}
TRACKING_PREFIX = "tracking."


def tracking_option_specs() -> tuple[ParameterSpec, ...]:
    """``tracking.<field>`` for every TrackerOptions field the core marks as an option: the default,
    meaning and range are the core's own (``tracking.option_fields``), written nowhere else. They apply
    at the next activate: deactivate ends every track, activate makes new trackers with them."""
    return tuple(
        ParameterSpec(TRACKING_PREFIX + option.name, _KINDS_OF_PYTHON[type(option.default)], option.default,
                      option.metadata["help"], ACTIVATE, f"tracking_{option.name}", minimum=option.metadata["minimum"],
                      maximum=option.metadata["maximum"], exclusive=option.metadata["exclusive"],
                      choices=option.metadata["choices"])
        for option in option_fields())


def tracker_options(settings: Any) -> TrackerOptions:
    """The TrackerOptions of the node's ``tracking.*`` parameters (settings: NodeSettings)."""
    return TrackerOptions(**{option.name: getattr(settings, f"tracking_{option.name}") for option in option_fields()})


# ------------------------------------------------------------------------------ the table
PARAMETER_SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("autostart", "bool", True, "configure and activate on start-up (run standalone)", STARTUP,
                  "autostart"),
    ParameterSpec("model.path", "str", "", "model folder (save_pixellm output or a released checkpoint); "
                  "empty = the embedded default model", ACTIVATE, "model_path",
                  check=_folder(MODEL_CONFIG_FILES, "model"), convert=_path_or_none),
    ParameterSpec("model.clip_path", "str", "", "local CLIP ViT-L/14-336 folder for released checkpoints; "
                  "empty = none", ACTIVATE, "clip_path", check=_folder(CLIP_CONFIG_FILES, "CLIP"), convert=_path_or_none),
    ParameterSpec("model.device", "str", "auto", f"where the model runs: {DEVICE_HELP}", ACTIVATE, "device",
                  check=_device, convert=str.lower),
    ParameterSpec("model.dtype", "str", "float32", "weights and compute dtype", ACTIVATE, "dtype",
                  choices=DTYPE_NAMES),
    ParameterSpec("model.load_in", "str", "none", "quantised loading of the LLM: 8bit / 4bit (bitsandbytes, CUDA), "
                  "int8_weight / int4_weight (torchao; int4 CUDA and bfloat16 only)",
                  ACTIVATE, "load_in", choices=LOAD_IN_CHOICES),
    ParameterSpec("model.decode_mode", "str", "dynamic", "how the answer is decoded: dynamic (any device), static, "
                  "cuda_graph (CUDA: the one-token step replayed as a CUDA graph, about 3x faster at 7B), compiled "
                  "(cuda_graph with the step torch.compile'd first; a minute of compiling per cache size)",
                  ACTIVATE, "decode_mode", choices=DECODE_MODES),
    ParameterSpec("generation.max_new_tokens", "int", 0, "answer length limit in tokens; 0 = the model's default",
                  LIVE, "max_new_tokens", minimum=0, convert=lambda v: v or None),
    ParameterSpec("output.mask_threshold", "float", 0.5, "foreground probability above which a pixel is in a mask",
                  LIVE, "mask_threshold", minimum=0.0, maximum=1.0, exclusive=True),
    ParameterSpec("output.mask_format", "str", "full", "full: masks of the image's size; cropped: masks of the "
                  "target's box only", LIVE, "mask_format", choices=tuple(MASK_FORMATS), convert=MASK_FORMATS.__getitem__),
    ParameterSpec("output.debug_image", "bool", True, "publish the overlay image (only while someone subscribes)",
                  LIVE, "debug_image"),
    ParameterSpec("topics.image", "str", "image_raw", "camera images (sensor_msgs/Image) of the default camera",
                  CONFIGURE, "image_topic", check=_topic_name),
    ParameterSpec("topics.compressed_image", "str", "image_raw/compressed",
                  "camera images (sensor_msgs/CompressedImage) of the default camera, when topics.use_compressed",
                  CONFIGURE, "compressed_image_topic", check=_topic_name),
    ParameterSpec("topics.use_compressed", "bool", False, "subscribe to topics.compressed_image instead",
                  CONFIGURE, "use_compressed"),
    ParameterSpec("topics.depth_image", "str", "depth/image_raw", "depth images aligned with the default camera's "
                  "(sensor_msgs/Image 16UC1 mm or 32FC1 m), when depth.enabled", CONFIGURE, "depth_image_topic",
                  check=_topic_name),
    ParameterSpec("topics.camera_info", "str", "camera_info", "the default camera's sensor_msgs/CameraInfo (of the "
                  "depth image), when depth.enabled", CONFIGURE, "camera_info_topic", check=_topic_name),
    ParameterSpec("topics.instruction", "str", "~/instruction", "instructions (std_msgs/String), answered on the "
                  "first camera", CONFIGURE, "instruction_topic", check=_topic_name),
    ParameterSpec("topics.result", "str", "~/result", "results (pixellm_ros/msg/SegmentationResult), every request",
                  CONFIGURE, "result_topic", check=_topic_name),
    ParameterSpec("topics.answer", "str", "~/answer", "answer text (std_msgs/String) of every successful request",
                  CONFIGURE, "answer_topic", check=_topic_name),
    ParameterSpec("topics.debug_image", "str", "~/debug_image", "overlay image (sensor_msgs/Image rgb8)",
                  CONFIGURE, "debug_image_topic", check=_topic_name),
    ParameterSpec("topics.targets_cloud", "str", "~/targets_cloud", "the targets' 3D points (sensor_msgs/PointCloud2 "
                  "xyz float32 + uint32 target), when output.point_cloud", CONFIGURE, "targets_cloud_topic",
                  check=_topic_name),
    ParameterSpec("topics.markers", "str", "~/markers", "the targets' 3D boxes and names "
                  "(visualization_msgs/MarkerArray, for RViz), drawn only while somebody subscribes", CONFIGURE,
                  "markers_topic", check=_topic_name),
    ParameterSpec("topics.tracks", "str", "~/tracks", "the tracks on every tracked camera frame "
                  "(pixellm_ros/msg/Tracks)", CONFIGURE, "tracks_topic", check=_topic_name),
    ParameterSpec("depth.enabled", "bool", False, "subscribe to aligned depth + camera_info and give every target "
                  "of a camera frame its 3D centroid, box and point count", CONFIGURE, "depth_enabled"),
    ParameterSpec("depth.sync_tolerance_s", "float", 0.02, "largest |depth stamp - colour stamp| that still "
                  "matches", CONFIGURE, "depth_sync_tolerance_s", minimum=0.0),
    ParameterSpec("depth.cache_size", "int", 10, "recent depth frames kept for matching by stamp", CONFIGURE,
                  "depth_cache_size", minimum=1, maximum=1000),
    ParameterSpec("output.point_cloud", "bool", False, "publish the targets' points on topics.targets_cloud",
                  LIVE, "point_cloud"),
    ParameterSpec("cameras.names", "str[]", None, "camera names; unset = one camera 'default' on topics.image. "
                  "Each name gets cameras.<name>.image / .compressed_image / .use_compressed and the instruction "
                  "topic ~/<name>/instruction", CONFIGURE, "camera_names", check=_camera_names,
                  convert=lambda v: tuple(v or ())),
    ParameterSpec("qos.image_reliability", "str", "best_effort", "camera subscription reliability", CONFIGURE,
                  "image_reliability", choices=tuple(RELIABILITY_CHOICES)),
    ParameterSpec("qos.image_depth", "int", 1, "camera subscription queue depth", CONFIGURE, "image_depth",
                  minimum=1),
    ParameterSpec("qos.request_depth", "int", 256, "requests received whole in a burst on each channel "
                  "(instruction topic, service, action) and results kept for slow subscribers; what the queue "
                  "cannot hold is answered STATUS_QUEUE_FULL", CONFIGURE, "request_depth", minimum=1),
    ParameterSpec("queue_size", "int", 4, "requests that may wait while one runs; when full a new request is "
                  "refused at once with STATUS_QUEUE_FULL (an action goal is rejected)", CONFIGURE, "queue_size",
                  minimum=1, maximum=1024),
    ParameterSpec("max_batch", "int", 1, "waiting requests the worker takes at once and decodes together in "
                  "one batch (different images, instructions and cameras); 1 = one at a time. On a GPU "
                  "batches cost little more than one request (decode reads the weights once per step)",
                  ACTIVATE, "max_batch", minimum=1, maximum=64),
    ParameterSpec("action_result_timeout_s", "float", 900.0, "how long a finished action goal's result is kept "
                  "for clients that ask late", CONFIGURE, "action_result_timeout_s", minimum=1.0),
    ParameterSpec("max_image_age_s", "float", 1.0, "refuse (STATUS_STALE_IMAGE) a camera frame older than this: "
                  "node clock now - header.stamp; 0 disables", LIVE, "max_image_age_s", minimum=0.0),
    ParameterSpec("max_instruction_chars", "int", 4000, "longer instructions are refused "
                  "(STATUS_INVALID_INSTRUCTION)", LIVE, "max_instruction_chars", minimum=1),
    ParameterSpec("limits.max_image_pixels", "int", 50_000_000, "images with more pixels are refused "
                  "(STATUS_INVALID_IMAGE), compressed ones from their header, before decoding", LIVE,
                  "max_image_pixels", minimum=1),
    ParameterSpec("limits.max_compressed_bytes", "int", 50_000_000, "compressed images with a larger payload are "
                  "refused (STATUS_INVALID_IMAGE) before decoding", LIVE, "max_compressed_bytes", minimum=1),
    ParameterSpec("standing_instruction", "str", "", "re-run this instruction on new frames of the first camera "
                  "(tracking-style); empty = off", LIVE, "standing_instruction"),
    ParameterSpec("standing_rate_hz", "float", 1.0, "at most this many standing-instruction runs per second", LIVE,
                  "standing_rate_hz", minimum=0.0, exclusive=True),
    ParameterSpec("diagnostics_period_s", "float", 1.0, "publish the node's health (diagnostic_msgs/DiagnosticArray) "
                  "on /diagnostics this often; 0 = off", LIVE, "diagnostics_period_s", minimum=0.0),
    ParameterSpec("shutdown_timeout_s", "float", 30.0, "on SIGINT / SIGTERM the running request may finish for "
                  "this long before it is stopped; waiting ones are answered STATUS_NOT_READY", LIVE,
                  "shutdown_timeout_s", minimum=0.0),
    ParameterSpec("tracking.standing", "bool", False, "follow the standing instruction's targets on every frame of "
                  "the first camera (topics.tracks), each result's target with its track id", LIVE,
                  "tracking_standing"),
    *tracking_option_specs(),
)

CAMERA_SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("cameras.{camera}.image", "str", "{camera}/image_raw", "the camera's images (sensor_msgs/Image)",
                  CONFIGURE, "image_topic", check=_topic_name),
    ParameterSpec("cameras.{camera}.compressed_image", "str", "{camera}/image_raw/compressed",
                  "the camera's images (sensor_msgs/CompressedImage), when use_compressed", CONFIGURE,
                  "compressed_image_topic", check=_topic_name),
    ParameterSpec("cameras.{camera}.use_compressed", "bool", False, "subscribe to the compressed topic instead",
                  CONFIGURE, "use_compressed"),
    ParameterSpec("cameras.{camera}.depth_image", "str", "{camera}/depth/image_raw", "the camera's aligned depth "
                  "images, when depth.enabled", CONFIGURE, "depth_image_topic", check=_topic_name),
    ParameterSpec("cameras.{camera}.camera_info", "str", "{camera}/camera_info", "the camera's CameraInfo, when "
                  "depth.enabled", CONFIGURE, "camera_info_topic", check=_topic_name),
)

SPECS_BY_NAME: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETER_SPECS}
DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in PARAMETER_SPECS}



@dataclass(frozen=True)
class NodeSettings:
    """The node's checked parameters: one field per ParameterSpec, in the table's order, typed as
    ``check_value`` makes them (``settings_drift`` and its test keep the two in step)."""

    autostart: bool
    model_path: Path | None  # None: the embedded default model
    clip_path: Path | None
    device: str
    dtype: str
    load_in: str
    decode_mode: str
    max_new_tokens: int | None  # None: the model's default
    mask_threshold: float  # a probability
    mask_format: int  # SegmentedTarget.MASK_FULL / MASK_CROPPED
    debug_image: bool
    image_topic: str
    compressed_image_topic: str
    use_compressed: bool
    depth_image_topic: str
    camera_info_topic: str
    instruction_topic: str
    result_topic: str
    answer_topic: str
    debug_image_topic: str
    targets_cloud_topic: str
    markers_topic: str
    tracks_topic: str
    depth_enabled: bool
    depth_sync_tolerance_s: float
    depth_cache_size: int
    point_cloud: bool
    camera_names: tuple[str, ...]  # empty: one camera, 'default', on topics.*
    image_reliability: str
    image_depth: int
    request_depth: int
    queue_size: int
    max_batch: int
    action_result_timeout_s: float
    max_image_age_s: float
    max_instruction_chars: int
    max_image_pixels: int
    max_compressed_bytes: int
    standing_instruction: str
    standing_rate_hz: float
    diagnostics_period_s: float
    shutdown_timeout_s: float
    tracking_standing: bool
    # tracking.<option>: TrackerOptions' fields (their defaults, meanings and ranges are the core's;
    # ``tracker_options`` builds the TrackerOptions)
    tracking_flow_preset: str
    tracking_flow_scale: float
    tracking_roi_margin_px: int
    tracking_colour_tolerance: int
    tracking_lost_fraction: float
    tracking_resume_fraction: float
    tracking_min_area_px: int
    tracking_lost_timeout_s: float
    tracking_unnamed_timeout_s: float
    tracking_max_frame_gap_s: float
    tracking_history_frames: int
    tracking_max_tracks: int
    tracking_min_iou: float
    tracking_max_distance_m: float
    tracking_points_per_track: int
    tracking_align: bool


@dataclass(frozen=True)
class CameraSettings:
    """One camera input: its name and topics (from topics.* for 'default', else cameras.<name>.*);
    the fields after ``name`` are CAMERA_SPECS' (``settings_drift`` checks them too)."""

    name: str
    image_topic: str
    compressed_image_topic: str
    use_compressed: bool
    depth_image_topic: str
    camera_info_topic: str

    @property
    def topic(self) -> str:
        """The topic actually subscribed (as configured, before remapping)."""
        return self.compressed_image_topic if self.use_compressed else self.image_topic


def settings_drift(settings_class: type = NodeSettings, camera_class: type = CameraSettings) -> list[str]:
    """Where the declared settings classes and the table disagree: a field missing, extra or out of
    order, or typed so that a value ``check_value`` makes (from the default, a value in range, each
    choice) does not fit it. Empty when they agree (test/ros/test_params.py)."""
    problems = []
    for cls, specs, skip in ((settings_class, PARAMETER_SPECS, 0), (camera_class, CAMERA_SPECS, 1)):
        declared = [field.name for field in dataclasses.fields(cls)][skip:]
        table = [spec.field for spec in specs]
        if declared != table:
            missing, extra = [f for f in table if f not in declared], [f for f in declared if f not in table]
            problems.append(f"{cls.__name__} fields {declared} are not the table's {table}"
                            + (f"; missing {missing}" if missing else "")
                            + (f"; not in the table {extra}" if extra else ""))
            continue
        hints = typing.get_type_hints(cls)
        for spec in specs:
            for value in _sample_values(spec):
                try:
                    checked = check_value(spec, value)
                except SettingsError:
                    continue  # not a value of this parameter (a folder that is not there, say)
                if not _fits(checked, hints[spec.field]):
                    problems.append(f"{cls.__name__}.{spec.field} is declared {hints[spec.field]}, but parameter "
                                    f"'{spec.name}' = {value!r} gives {checked!r}")
    return problems


def _sample_values(spec: ParameterSpec) -> list[Any]:
    """The default, and values a parameter of this kind takes: the other bool, a number in range, each choice."""
    values = [spec.default, *spec.choices]
    if spec.kind == "bool":
        values.append(not spec.default)
    elif spec.kind in ("int", "float"):
        low = spec.minimum if spec.minimum is not None else 0
        high = spec.maximum if spec.maximum is not None else low + 2
        middle = (low + high) / 2
        values.append(int(middle) if spec.kind == "int" else float(middle))
    elif spec.kind == "str[]":
        values.append(["a"])
    return values


def _fits(value: Any, hint: Any) -> bool:
    """``value`` is of type ``hint`` (plain classes, ``X | None``, ``tuple[X, ...]``; a bool is no int)."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(item, args[0]) for item in value)
    if origin is list:
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value)
    if hint is type(None):
        return value is None
    if hint in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, hint)


def camera_spec_name(spec: ParameterSpec, camera: str) -> str:
    return spec.name.format(camera=camera)


def camera_default(spec: ParameterSpec, camera: str) -> Any:
    return spec.default.format(camera=camera) if isinstance(spec.default, str) else spec.default


# ------------------------------------------------------------------------------ checking
def check_value(spec: ParameterSpec, value: Any, name: str | None = None) -> Any:
    """The settings value for ``value`` of ``spec``, or SettingsError saying what is wrong and what fits."""
    name = name or spec.name
    kind_help = _TYPES[spec.kind][1]
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise SettingsError(f"parameter '{name}' must be {kind_help}, got {value!r}")
    elif spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"parameter '{name}' must be {kind_help}, got {value!r}")
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SettingsError(f"parameter '{name}' must be {kind_help}, got {value!r}")
        value = float(value)
    elif spec.kind == "str":
        if not isinstance(value, str):
            raise SettingsError(f"parameter '{name}' must be {kind_help}, got {value!r}")
        value = value.strip()
        if spec.choices:
            value = value.lower()
            if value not in spec.choices:
                raise SettingsError(f"parameter '{name}' is '{value}', which is not one of: {', '.join(spec.choices)}")
    elif spec.kind == "str[]":
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
            raise SettingsError(f"parameter '{name}' must be {kind_help}, got {value!r}")
        value = [v.strip() for v in value] if value is not None else None
    if spec.minimum is not None and (value < spec.minimum or (spec.exclusive and value == spec.minimum)):
        bound = ">" if spec.exclusive else ">="
        raise SettingsError(f"parameter '{name}' must be {bound} {spec.minimum:g}, got {value:g}")
    if spec.maximum is not None and (value > spec.maximum or (spec.exclusive and value == spec.maximum)):
        bound = "<" if spec.exclusive else "<="
        raise SettingsError(f"parameter '{name}' must be {bound} {spec.maximum:g}, got {value:g}")
    if spec.check is not None and value is not None:
        problem = spec.check(value)
        if problem:
            raise SettingsError(f"parameter '{name}': {problem}")
    return spec.convert(value) if spec.convert is not None else value


def cross_check(values: Mapping[str, Any], changed: Iterable[str] | None = None) -> None:
    """Rules between parameters (SettingsError); ``changed``: only the rules involving these names."""
    changed = set(values) if changed is None else set(changed)
    load_in = str(values["model.load_in"]).strip().lower()
    device = str(values["model.device"]).strip().lower()
    if changed & {"model.load_in", "model.device"} and load_in != "none":
        try:
            resolve_load_in(load_in, resolve_device(device))
        except LoadOptionError as error:
            raise SettingsError(f"parameter 'model.load_in' is '{load_in}' with model.device '{device}': {error}; "
                                "or set model.load_in to none") from None
    if changed & {"model.decode_mode", "model.device"} and str(values["model.decode_mode"]).strip() == "cuda_graph":
        try:
            kind = resolve_device(device).type
        except LoadOptionError:
            kind = None  # model.device's own check says why
        if kind is not None and kind != "cuda":
            raise SettingsError(f"parameter 'model.decode_mode' is 'cuda_graph' with model.device '{device}': a CUDA "
                                "graph needs a CUDA device; use static or compiled on this device, or dynamic")
    options = {TRACKING_PREFIX + option.name: option.name for option in option_fields()}
    if changed & set(options):
        try:  # the rules between options (lost_fraction <= resume_fraction): the core's own check
            TrackerOptions(**{name: check_value(SPECS_BY_NAME[parameter], values[parameter])
                              for parameter, name in options.items()})
        except (ValueError, TypeError) as error:
            raise SettingsError(f"parameters 'tracking.*': {error}") from None
    if changed & {"standing_instruction", "max_instruction_chars"}:
        standing, limit = str(values["standing_instruction"]).strip(), values["max_instruction_chars"]
        if isinstance(limit, int) and len(standing) > limit:
            raise SettingsError(f"parameter 'standing_instruction' has {len(standing)} characters, more than "
                                f"max_instruction_chars = {limit}")


def settings_from_values(values: Mapping[str, Any]) -> NodeSettings:
    """Check raw values (dotted names -> values, every name of PARAMETER_SPECS) into NodeSettings.

    Raises SettingsError naming the first bad parameter and what to put there instead.
    """
    fields = {spec.field: check_value(spec, values[spec.name]) for spec in PARAMETER_SPECS}
    cross_check(values)
    return NodeSettings(**fields)


def camera_settings(settings: NodeSettings, values: Mapping[str, Any]) -> list[CameraSettings]:
    """The cameras of ``settings``: 'default' from topics.*, or each name from cameras.<name>.*."""
    if not settings.camera_names:
        return [CameraSettings(DEFAULT_CAMERA, settings.image_topic, settings.compressed_image_topic,
                               settings.use_compressed, settings.depth_image_topic, settings.camera_info_topic)]
    cameras = []
    for camera in settings.camera_names:
        fields = {spec.field: check_value(spec, values.get(camera_spec_name(spec, camera), camera_default(spec, camera)),
                                          camera_spec_name(spec, camera)) for spec in CAMERA_SPECS}
        cameras.append(CameraSettings(camera, **fields))
    return cameras


def replace_fields(settings: NodeSettings, values: Mapping[str, Any], applies: Sequence[str]) -> NodeSettings:
    """``settings`` with the fields of every parameter that applies at ``applies`` re-read from ``values``."""
    changed = {spec.field: check_value(spec, values[spec.name]) for spec in PARAMETER_SPECS if spec.apply in applies}
    return dataclasses.replace(settings, **changed)


# ------------------------------------------------------------------------------ the node side
def startup_problem(name: str, spec: ParameterSpec, value: Any, kind: str = "", source: str = "") -> str:
    """The one line for a bad start-up value: the parameter, the value (its type when that is what
    is wrong), where it came from (``params_file.value_sources``) and what it must be."""
    given = f"{value!r}" + (f" ({kind})" if kind else "") + (f" from {source}" if source else "")
    return f"parameter '{name}' was given {given}; it must be {spec.allowed if not kind else _TYPES[spec.kind][1]}"


def coerce_overrides(overrides: dict[str, Parameter], specs: Iterable[tuple[str, ParameterSpec]],
                     sources: Mapping[str, str] | None = None) -> dict[str, str]:
    """Fix up a node's parameter overrides in place before they are declared.

    An integer given for a floating-point parameter becomes that number; a value of another
    wrong type is removed (so that declaring does not raise) and returned as ``{name: problem}``
    for configure to report. ``specs``: (full name, spec) pairs; ``sources``: where each value
    came from, by name.
    """
    problems: dict[str, str] = {}
    for name, spec in specs:
        override = overrides.get(name)
        if override is None or override.type_ == Parameter.Type.NOT_SET:
            continue
        expected = Parameter.Type(_TYPES[spec.kind][0])
        if override.type_ == expected:
            continue
        if expected == Parameter.Type.DOUBLE and override.type_ == Parameter.Type.INTEGER:
            overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(override.value))
            continue
        if expected == Parameter.Type.STRING_ARRAY and override.type_ == Parameter.Type.BYTE_ARRAY and not override.value:
            del overrides[name]  # YAML "[]": an empty list has no element type; unset means the same
            continue
        problems[name] = startup_problem(name, spec, override.value, override.type_.name.lower(),
                                         (sources or {}).get(name, ""))
        del overrides[name]
    return problems


def declare(node: Any, name: str, spec: ParameterSpec, default: Any, source: str = "") -> str | None:
    """Declare one parameter with its descriptor (an unset default declares the type only).

    A start-up value that rclpy refuses against the descriptor (outside the declared range, NaN)
    is left out: the default is declared, and the problem returned for configure to report.
    """
    value = Parameter.Type(_TYPES[spec.kind][0]) if default is None else default
    try:
        node.declare_parameter(name, value, spec.descriptor(name))
        return None
    except InvalidParameterValueException:
        if spec.minimum is None and spec.maximum is None:
            raise  # no declared range: refused by the node's own on-set check, which says why
        given = node._parameter_overrides[name].value  # noqa: SLF001 - the value rclpy refused
        node.declare_parameter(name, value, spec.descriptor(name), ignore_override=True)
        return startup_problem(name, spec, given, source=source)


def declare_node_parameters(node: Any, sources: Mapping[str, str] | None = None) -> dict[str, str]:
    """Declare every parameter of PARAMETER_SPECS on ``node``; returns the start-up values refused
    (wrong type, out of range) as ``{name: problem}``. ``sources``: where each value came from."""
    sources = sources or {}
    problems = coerce_overrides(node._parameter_overrides, SPECS_BY_NAME.items(), sources)  # noqa: SLF001
    for spec in PARAMETER_SPECS:
        problem = declare(node, spec.name, spec, spec.default, sources.get(spec.name, ""))
        if problem:
            problems[spec.name] = problem
    return problems


def declare_camera_parameters(node: Any, cameras: Sequence[str]) -> dict[str, str]:
    """Declare the cameras.<name>.* group of each camera not declared yet; returns refused overrides."""
    pairs = [(camera_spec_name(spec, camera), spec, camera) for camera in cameras for spec in CAMERA_SPECS]
    problems = coerce_overrides(node._parameter_overrides, [(n, s) for n, s, _ in pairs])  # noqa: SLF001
    for name, spec, camera in pairs:
        if not node.has_parameter(name):
            problem = declare(node, name, spec, camera_default(spec, camera))
            if problem:
                problems[name] = problem
    return problems


def parameter_values(node: Any) -> dict[str, Any]:
    """The current value of every declared parameter, by dotted name."""
    return {name: parameter.value for name, parameter in node.get_parameters_by_prefix("").items()}


def spec_for(name: str, cameras: Sequence[str] = ()) -> ParameterSpec | None:
    """The spec of a full parameter name, per-camera names included; None when it is not ours."""
    if name in SPECS_BY_NAME:
        return SPECS_BY_NAME[name]
    for camera in cameras:
        for spec in CAMERA_SPECS:
            if camera_spec_name(spec, camera) == name:
                return spec
    return None


def unknown_overrides(overrides: Iterable[str], cameras: Sequence[str]) -> list[str]:
    """Warnings for override names that are no parameter of the node (a typo like ``model.devic``)."""
    known = list(SPECS_BY_NAME) + [camera_spec_name(s, c) for c in cameras for s in CAMERA_SPECS]
    warnings = []
    for name in sorted(overrides):
        if name in known or name in BUILTIN_PARAMETERS or name.startswith(BUILTIN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        warnings.append(f"unknown parameter '{name}' is ignored{hint}")
    return warnings


def coerce_run_time(parameters: list[Parameter], cameras: Sequence[str],
                    current: Callable[[str], Any]) -> tuple[list[Parameter], dict[int, tuple[Parameter, str]]]:
    """Pre-set step, run before rclpy checks a set value's type against the declared one.

    An integer for a floating-point parameter is taken as that number (``ros2 param set x 2``).
    A value of another wrong type is swapped for the parameter's ``current`` value (so rclpy's
    check, whose reason reads "Wrong parameter type, expected '2' got '3'", lets it through) and
    returned as ``{id(swapped): (swapped, problem)}``: the on-set step rejects the set with that
    problem, which names the parameter, its type and the value given. Declared types stay as they are.
    """
    out, wrong = [], {}
    for parameter in parameters:
        spec = spec_for(parameter.name, cameras)
        expected = Parameter.Type(_TYPES[spec.kind][0]) if spec is not None else None
        if expected is None or parameter.type_ in (expected, Parameter.Type.NOT_SET):
            out.append(parameter)
        elif expected == Parameter.Type.DOUBLE and parameter.type_ == Parameter.Type.INTEGER:
            out.append(Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value)))
        else:
            now = current(parameter.name)
            swapped = Parameter(parameter.name, expected, now if now is not None else [])
            like = f", like {now!r}" if spec.kind in ("int", "float") else ""
            wrong[id(swapped)] = (swapped, f"wrong type for parameter '{parameter.name}': it takes "
                                           f"{_TYPES[spec.kind][1]}{like}; got {parameter.value!r} "
                                           f"({parameter.type_.name.lower()})")
            out.append(swapped)
    return out, wrong


def check_run_time(parameters: list[Parameter], values: dict[str, Any], cameras: Sequence[str]) -> list[str]:
    """Check values set at run time (SettingsError with the reason); ``values`` is updated with them.

    Returns, for the parameters that do not apply at once, when they will.
    """
    later = []
    for parameter in parameters:
        spec = spec_for(parameter.name, cameras)
        if spec is None:
            continue
        check_value(spec, parameter.value, parameter.name)
        values[parameter.name] = parameter.value
        if spec.apply != LIVE:
            later.append(f"'{parameter.name}' {APPLY_HELP[spec.apply]}")
    cross_check(values, [p.name for p in parameters])
    return later
