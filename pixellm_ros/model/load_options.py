"""How a model is loaded: the device, the dtype and the quantisation, each checked in one place.

``resolve_device`` is THE device rule of the project: the loader, the trainer and (through
``pixellm_ros.engine``) the ROS node's parameters all ask it, so "auto", "cuda:N" and their errors
mean the same everywhere. Every refusal is a ``LoadOptionError`` that says what to change.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

# The names a user writes (parameters, command lines), canonical first; aliases accepted too.
DTYPE_NAMES: tuple[str, ...] = ("float32", "bfloat16", "float16")
# load_in: bitsandbytes' LLM.int8 / NF4 (CUDA only), or torchao's weight-only int8 (per row; CPU and
# CUDA) / int4 (groups of 128, the tinygemm kernel: CUDA of compute capability 8.0+, bfloat16).
BITSANDBYTES_LOAD_IN: tuple[str, ...] = ("8bit", "4bit")
TORCHAO_LOAD_IN: tuple[str, ...] = ("int8_weight", "int4_weight")
LOAD_IN_CHOICES: tuple[str, ...] = ("none", *BITSANDBYTES_LOAD_IN, *TORCHAO_LOAD_IN)
DEVICE_HELP = "'cpu', 'cuda', 'cuda:N' or 'auto'"

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class LoadOptionError(ValueError):
    """A load option that cannot be honoured here: unknown/absent device, dtype, quantisation."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu" | "cuda" | "cuda:N" | "auto"`` (cuda when available) -> an existing torch.device.

    Raises LoadOptionError for an unknown name, a non-CPU/CUDA device, CUDA asked for on a machine
    without it, and a CUDA index beyond the machine's devices.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as error:
        raise LoadOptionError(f"unknown device {device!r}: use {DEVICE_HELP}") from error
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise LoadOptionError(f"unsupported device {device!r}: use {DEVICE_HELP}")
    if not torch.cuda.is_available():
        raise LoadOptionError(f"device {device!r} requested but CUDA is not available on this machine")
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise LoadOptionError(f"device {device!r} does not exist: this machine has {count} CUDA device(s)")
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """torch.float32/bfloat16/float16 or their names ("float32", "bf16", ...)."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        key = str(dtype).strip().lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise LoadOptionError(f"unknown dtype {dtype!r}: use {', '.join(DTYPE_NAMES)}")
        resolved = _DTYPES[key]
    if resolved not in (torch.float32, torch.bfloat16, torch.float16):
        raise LoadOptionError(f"unsupported dtype {resolved}: use {', '.join(DTYPE_NAMES)}")
    return resolved


def resolve_load_in(load_in: str | None, device: torch.device) -> str | None:
    """None/"none" -> None, or one of LOAD_IN_CHOICES after checking that its library and device
    are here: "8bit"/"4bit" need bitsandbytes and CUDA; "int8_weight" needs torchao (any device);
    "int4_weight" needs torchao and a CUDA device of compute capability 8.0 or newer."""
    if load_in is None or str(load_in).strip().lower() in ("", "none"):
        return None
    mode = str(load_in).strip().lower()
    if mode not in LOAD_IN_CHOICES:
        raise LoadOptionError(f"unknown load_in {load_in!r}: use one of {', '.join(LOAD_IN_CHOICES)}")
    library = "bitsandbytes" if mode in BITSANDBYTES_LOAD_IN else "torchao"
    needs_cuda = mode != "int8_weight"
    missing = []
    if importlib.util.find_spec(library) is None:
        missing.append(f"the {library} package is not installed")
    if needs_cuda:
        if not torch.cuda.is_available():
            missing.append("CUDA is not available")
        elif device.type != "cuda":
            missing.append(f"the device is {device}, not a CUDA device")
        elif mode == "int4_weight" and (capability := torch.cuda.get_device_capability(device)) < (8, 0):
            missing.append(f"{device} has compute capability {capability[0]}.{capability[1]}, the int4 kernel needs 8.0")
    if missing:
        where = "on a CUDA device" if needs_cuda else "(CPU or CUDA)"
        raise LoadOptionError(f"load_in={mode!r} needs {library} {where}: " + "; ".join(missing))
    return mode


@dataclass(frozen=True)
class LoadOptions:
    """The three options, resolved: where the model goes, in which dtype, quantised or not."""

    device: torch.device
    dtype: torch.dtype
    load_in: str | None  # None or one of LOAD_IN_CHOICES (not "none")


def resolve_load_options(
    device: str | torch.device = "cpu", dtype: str | torch.dtype = torch.float32, load_in: str | None = None
) -> LoadOptions:
    """All three checked together (load_in depends on the device); raises LoadOptionError."""
    resolved = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype)
    mode = resolve_load_in(load_in, resolved)
    if mode == "int4_weight" and resolved_dtype != torch.bfloat16:
        raise LoadOptionError(f"load_in='int4_weight' computes in bfloat16 (the int4 kernel's only dtype): "
                              f"set dtype to bfloat16, not {str(resolved_dtype).removeprefix('torch.')}")
    return LoadOptions(resolved, resolved_dtype, mode)
