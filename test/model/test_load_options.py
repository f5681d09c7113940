"""The load options: one device rule, dtype names, quantisation, and all three together."""

from __future__ import annotations

import sys

import pytest
import torch

from pixellm_ros.model.load_options import (
    DTYPE_NAMES,
    LOAD_IN_CHOICES,
    LoadOptionError,
    resolve_device,
    resolve_dtype,
    resolve_load_in,
    resolve_load_options,
)


def test_device_names() -> None:
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(LoadOptionError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(LoadOptionError, match="unsupported device 'meta'"):
        resolve_device("meta")
    absent = f"cuda:{torch.cuda.device_count()}"
    expected = "does not exist" if torch.cuda.is_available() else "CUDA is not available"
    with pytest.raises(LoadOptionError, match=expected):
        resolve_device(absent)


def test_dtype_names_and_aliases() -> None:
    assert [resolve_dtype(name) for name in DTYPE_NAMES] == [torch.float32, torch.bfloat16, torch.float16]
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype("torch.float16") == torch.float16
    assert resolve_dtype(torch.float32) == torch.float32
    with pytest.raises(LoadOptionError, match="unknown dtype 'int8'"):
        resolve_dtype("int8")
    with pytest.raises(LoadOptionError, match="unsupported dtype"):
        resolve_dtype(torch.int8)


def test_load_in() -> None:
    cpu = torch.device("cpu")
    assert resolve_load_in(None, cpu) is None and resolve_load_in("none", cpu) is None and resolve_load_in("", cpu) is None
    with pytest.raises(LoadOptionError, match="unknown load_in '3bit'"):
        resolve_load_in("3bit", cpu)
    with pytest.raises(LoadOptionError, match="needs bitsandbytes on a CUDA device"):
        resolve_load_in("8bit", cpu)  # on the CPU whatever the machine has


def test_torchao_load_in(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert LOAD_IN_CHOICES == ("none", "8bit", "4bit", "int8_weight", "int4_weight")
    with pytest.raises(LoadOptionError, match="'int4_weight' needs torchao on a CUDA device") as info:
        resolve_load_in(" INT4_weight ", cpu)
    assert ("CUDA is not available" if not torch.cuda.is_available() else "the device is cpu") in str(info.value)
    monkeypatch.setitem(sys.modules, "torchao", None)  # as where torchao is not installed
    with pytest.raises(LoadOptionError, match=r"'int8_weight' needs torchao \(CPU or CUDA\): the torchao package is not installed"):
        resolve_load_in("int8_weight", cpu)


def test_int8_weight_runs_on_the_cpu() -> None:
    pytest.importorskip("torchao")
    assert resolve_load_in("int8_weight", torch.device("cpu")) == "int8_weight"
    options = resolve_load_options("cpu", "float32", "int8_weight")
    assert (options.dtype, options.load_in) == (torch.float32, "int8_weight")


def test_all_three_together() -> None:
    options = resolve_load_options("cpu", "bfloat16", "none")
    assert (options.device, options.dtype, options.load_in) == (torch.device("cpu"), torch.bfloat16, None)
    with pytest.raises(LoadOptionError, match="the device is cpu" if torch.cuda.is_available() else "CUDA is not available"):
        resolve_load_options("cpu", "float16", "4bit")
