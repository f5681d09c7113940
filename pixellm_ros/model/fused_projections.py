"""Fused q/k/v and gate/up projections of the LLaMA decoder layers, built from loaded weights.

At batch 1 a decode step is a chain of matrix-vector products, each reading its weight once and
launching its own kernel: q, k, v and gate, up are five launches over inputs that are the same
two vectors. ``fuse_projections`` concatenates those weights along the output dimension into one
``qkv_proj`` and one ``gate_up_proj`` Linear per layer (the released values, unchanged: only
their layout), so each layer launches three projections fewer; ``unfuse_projections`` splits them
back exactly.

How the layers use them, without rewriting transformers' code:

- the attention becomes ``FusedLlamaAttention`` (a LlamaAttention, so transformers' output
  capture still finds it). Its forward runs ``qkv_proj`` once and then transformers' own
  LlamaAttention.forward, in which ``q_proj`` / ``k_proj`` / ``v_proj`` are ``ProjectionSlice``
  modules handing out their columns of that one output. Rotary embedding, the cache's update
  (DynamicCache and StaticCache), the attention kernel and CUDA graph capture stay transformers';
- the MLP becomes ``FusedLlamaMLP``: ``down(act(gate) * up)`` with gate and up from one Linear.

Fuse after loading (a strict-load checkpoint has the released keys) and before quantising (the
quantised Linear is then the fused one; per-row int8 and per-group int4 / nf4 quantisation give
the same values either way) and before an engine captures a CUDA graph (a captured graph keeps
the weights it saw). A fused model is refused by the savers: unfuse it first.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP


# What the savers say when handed a fused model (our folder and the released layout both keep the
# released q/k/v and gate/up weights, so that every checkpoint loads strictly anywhere).
SAVE_REFUSAL = (
    "the model's LLaMA projections are fused (fuse_projections): checkpoints keep the released separate "
    "q/k/v and gate/up weights; call pixellm_ros.model.fused_projections.unfuse_projections(model) before saving"
)


class ProjectionSlice(nn.Module):
    """Stands where ``q_proj`` / ``k_proj`` / ``v_proj`` was: columns [start, stop) of the fused
    projection's output, which the owning FusedLlamaAttention computed for this very forward.

    Holds no weight. ``in_features`` / ``out_features`` are kept so that code reading the shapes
    of the projections still finds them.
    """

    def __init__(self, owner: FusedLlamaAttention, start: int, stop: int, in_features: int) -> None:
        super().__init__()
        self.start, self.stop = int(start), int(stop)
        self.in_features, self.out_features = int(in_features), int(stop - start)
        # A plain reference, not a submodule: the owner already holds this module.
        self.__dict__["_owner"] = owner

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., out_features): the slice of the owner's fused output."""
        fused = self._owner.fused_output
        if fused is None:
            raise RuntimeError("a fused projection slice runs only inside its FusedLlamaAttention's forward")
        return fused[..., self.start : self.stop]

    def extra_repr(self) -> str:
        return f"columns {self.start}:{self.stop} of qkv_proj"


class FusedLlamaAttention(LlamaAttention):
    """LlamaAttention whose q/k/v projections are one Linear, ``qkv_proj`` (see the module doc).

    Made from a loaded LlamaAttention in place by ``fuse`` (its class is switched, every other
    attribute and hook stays); ``unfuse`` restores it.
    """

    qkv_proj: nn.Linear
    fused_output: torch.Tensor | None

    @classmethod
    def fuse(cls, attention: LlamaAttention) -> None:
        parts = [attention.q_proj, attention.k_proj, attention.v_proj]
        _check_plain_linears(parts, "q/k/v")
        attention.qkv_proj = _concatenated(parts)
        attention.fused_output = None
        attention.__class__ = cls
        start = 0
        for name, part in zip(("q_proj", "k_proj", "v_proj"), parts):
            setattr(attention, name, ProjectionSlice(attention, start, start + part.out_features, part.in_features))
            start += part.out_features

    @staticmethod
    def unfuse(attention: FusedLlamaAttention) -> None:
        slices = [attention.q_proj, attention.k_proj, attention.v_proj]
        fused = attention.qkv_proj
        del attention.qkv_proj, attention.fused_output
        attention.__class__ = LlamaAttention
        for name, part in zip(("q_proj", "k_proj", "v_proj"), slices):
            setattr(attention, name, _rows(fused, part.start, part.stop))

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        """transformers' LlamaAttention.forward, its three projections served by one ``qkv_proj``."""
        self.fused_output = self.qkv_proj(hidden_states)
        try:
            return super().forward(hidden_states, *args, **kwargs)
        finally:
            self.fused_output = None


class FusedLlamaMLP(LlamaMLP):
    """LlamaMLP with gate and up as one Linear, ``gate_up_proj`` (gate's rows first)."""

    gate_up_proj: nn.Linear

    @classmethod
    def fuse(cls, mlp: LlamaMLP) -> None:
        parts = [mlp.gate_proj, mlp.up_proj]
        _check_plain_linears(parts, "gate/up")
        mlp.gate_up_proj = _concatenated(parts)
        # None keeps the names' places, so that unfusing restores the released key order.
        mlp.gate_proj = mlp.up_proj = None
        mlp.__class__ = cls

    @staticmethod
    def unfuse(mlp: FusedLlamaMLP) -> None:
        fused = mlp.gate_up_proj
        half = fused.out_features // 2
        del mlp.gate_up_proj
        mlp.__class__ = LlamaMLP
        mlp.gate_proj = _rows(fused, 0, half)
        mlp.up_proj = _rows(fused, half, 2 * half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., hidden): down(act(gate(x)) * up(x)), gate and up in one product."""
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(self.act_fn(gate) * up)


def fuse_projections(model: nn.Module) -> int:
    """Fuse q/k/v and gate/up in every LLaMA decoder layer inside ``model``, in place.

    ``model``: a PixelLMForCausalLM, a LlamaForCausalLM or anything holding LLaMA layers (the
    vision tower's CLIP layers are left alone). Returns the number of modules fused (two per
    layer); layers already fused are skipped. Raises ValueError for quantised projections
    (fuse before quantising).
    """
    count = 0
    for module in list(model.modules()):
        if type(module) is LlamaAttention:
            FusedLlamaAttention.fuse(module)
            count += 1
        elif type(module) is LlamaMLP:
            FusedLlamaMLP.fuse(module)
            count += 1
    return count


def unfuse_projections(model: nn.Module) -> int:
    """Split every fused projection of ``model`` back into the released Linears (same values, same
    keys as before fusing). Returns the number of modules unfused. Raises ValueError for a fused
    Linear that was quantised since (its rows can no longer be split)."""
    count = 0
    for module in list(model.modules()):
        if isinstance(module, FusedLlamaAttention):
            _check_plain_linears([module.qkv_proj], "the fused q/k/v")
            FusedLlamaAttention.unfuse(module)
            count += 1
        elif isinstance(module, FusedLlamaMLP):
            _check_plain_linears([module.gate_up_proj], "the fused gate/up")
            FusedLlamaMLP.unfuse(module)
            count += 1
    return count


def has_fused_projections(model: nn.Module) -> bool:
    """Whether any LLaMA layer of ``model`` runs fused projections."""
    return any(isinstance(m, (FusedLlamaAttention, FusedLlamaMLP)) for m in model.modules())


def _check_plain_linears(parts: list[nn.Module], what: str) -> None:
    for part in parts:
        weight = getattr(part, "weight", None)
        if type(part) is not nn.Linear or type(weight) not in (nn.Parameter, torch.Tensor):
            raise ValueError(
                f"cannot fuse or split {what} projections of type {type(part).__name__} "
                f"(weight {type(weight).__name__}): fuse before quantising, and unfuse only unquantised models"
            )


def _concatenated(parts: list[nn.Linear]) -> nn.Linear:
    """One Linear whose output is the parts' outputs side by side: weights (and biases) stacked
    along the output dimension, the values copied unchanged."""
    first = parts[0]
    weight = torch.cat([p.weight.detach() for p in parts], dim=0)
    fused = nn.Linear(first.in_features, weight.shape[0], bias=first.bias is not None, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=first.weight.requires_grad)
    if first.bias is not None:
        bias = torch.cat([p.bias.detach() for p in parts], dim=0)
        fused.bias = nn.Parameter(bias, requires_grad=first.bias.requires_grad)
    return fused


def _rows(fused: nn.Linear, start: int, stop: int) -> nn.Linear:
    """A Linear of the fused one's output rows [start, stop), its own contiguous copy."""
    part = nn.Linear(fused.in_features, stop - start, bias=fused.bias is not None, device="meta")
    part.weight = nn.Parameter(fused.weight.detach()[start:stop].clone(), requires_grad=fused.weight.requires_grad)
    if fused.bias is not None:
        part.bias = nn.Parameter(fused.bias.detach()[start:stop].clone(), requires_grad=fused.bias.requires_grad)
    return part
