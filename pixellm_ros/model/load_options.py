"""How a model is loaded: the device, the dtype and the quantisation, each checked in one place.

``resolve_device`` is THE device rule of the project: the loader, the trainer and (through
``pixellm_ros.engine``) the ROS node's parameters all ask it, so "auto", "cuda:N" and their errors
mean the same everywhere. Every refusal is a ``LoadOptionError`` that says what to change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The names a user writes (parameters, command lines), canonical first; aliases accepted too.
DTYPE_NAMES: tuple[str, ...] = ("float32", "bfloat16", "float16")
LOAD_IN_CHOICES: tuple[str, ...] = ("none", "8bit", "4bit")
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
    """None/"none" -> None, or "8bit"/"4bit" after checking that bitsandbytes and CUDA are both here."""
    if load_in is None or str(load_in).strip().lower() in ("", "none"):
        return None
    mode = str(load_in).strip().lower()
    if mode not in LOAD_IN_CHOICES:
        raise LoadOptionError(f"unknown load_in {load_in!r}: use None/'none', '8bit' or '4bit'")
    missing = []
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        missing.append("the bitsandbytes package is not installed")
    if not torch.cuda.is_available():
        missing.append("CUDA is not available")
    elif device.type != "cuda":
        missing.append(f"the device is {device}, not a CUDA device")
    if missing:
        raise LoadOptionError(f"load_in={mode!r} needs bitsandbytes on a CUDA device: " + "; ".join(missing))
    return mode


@dataclass(frozen=True)
class LoadOptions:
    """The three options, resolved: where the model goes, in which dtype, quantised or not."""

    device: torch.device
    dtype: torch.dtype
    load_in: str | None  # None, "8bit" or "4bit"


def resolve_load_options(
    device: str | torch.device = "cpu", dtype: str | torch.dtype = torch.float32, load_in: str | None = None
) -> LoadOptions:
    """All three checked together (load_in depends on the device); raises LoadOptionError."""
    resolved = resolve_device(device)
    return LoadOptions(resolved, resolve_dtype(dtype), resolve_load_in(load_in, resolved))
