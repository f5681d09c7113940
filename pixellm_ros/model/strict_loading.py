"""Strict filling of a network built on the meta device: every tensor assigned once, nothing left over.

``parameters_on_meta`` builds a network without memory or initialisation; ``fill_strictly`` then
assigns the tensors of one or more sources (a checkpoint, a CLIP folder) straight from their
files, converted to the target dtype and device, one file at a time, so a 7B model is never
held twice. Any checkpoint key that maps to no parameter or buffer, any tensor left unfilled and
any shape that differs is a ``CheckpointError`` naming the keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint folder that does not describe this network exactly (names the keys)."""


# A source yields (our key, or None to skip it; the tensor; the key's name in its file, for messages).
TensorSource = Iterator[tuple[str | None, torch.Tensor, str]]


def fill_strictly(
    model: nn.Module,
    sources: list[tuple[str, TensorSource]],
    device: torch.device,
    dtype: torch.dtype,
    describe_missing: Callable[[str], str] = str,
) -> None:
    """Assign every source tensor to its parameter/buffer; raise CheckpointError on any mismatch.

    Tensors are assigned in batches of one weight file (one ``load_state_dict(assign=True)``
    each) so that a file's tensors are freed as soon as they are placed.
    """
    expected = {key: tensor for key, tensor in model.state_dict(keep_vars=True).items()}
    filled: dict[str, str] = {}
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    for source_name, source in sources:
        batch: dict[str, torch.Tensor] = {}
        for our_key, tensor, file_key in source:
            if our_key is None:
                continue
            if our_key not in expected:
                unexpected.append(f"{file_key} ({source_name})")
                continue
            if our_key in filled:
                raise CheckpointError(f"{our_key} is given twice: by {filled[our_key]} and {file_key}")
            if tuple(tensor.shape) != tuple(expected[our_key].shape):
                wrong_shape.append(f"{file_key}: {tuple(tensor.shape)}, model {tuple(expected[our_key].shape)}")
                continue
            filled[our_key] = file_key
            batch[our_key] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
            if len(batch) >= 64:
                model.load_state_dict(batch, strict=False, assign=True)
                batch = {}
        if batch:
            model.load_state_dict(batch, strict=False, assign=True)
    if wrong_shape:
        raise CheckpointError("checkpoint tensors with the wrong shape: " + "; ".join(wrong_shape))
    raise_for_keys(sorted(describe_missing(k) for k in set(expected) - set(filled)), unexpected, "checkpoint")

    # Non-persistent buffers (rotary frequencies, CLIP position ids) were built for real on the
    # CPU in their own dtype (inv_freq must stay float32); they only move.
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer is not None and buffer.device != device:
                module.register_buffer(name, buffer.to(device), persistent=name not in module._non_persistent_buffers_set)
    on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if on_meta:
        raise CheckpointError(f"tensors left unfilled after loading: {on_meta}")


def raise_for_keys(missing: list[str], unexpected: list[str], what: str) -> None:
    """CheckpointError naming the missing and unexpected keys of ``what`` (nothing if both are empty)."""
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {missing}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {unexpected}")
    raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create every nn.Parameter on the meta device while buffers stay real.

    Under ``torch.device("meta")`` the non-persistent buffers (rotary inv_freq, CLIP
    position_ids), which no checkpoint holds, would be left without values; with only the
    parameters on meta they are computed normally and cost next to nothing. Parameter
    initialisation runs on meta tensors and so costs nothing either.
    """
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]
