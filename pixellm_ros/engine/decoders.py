"""The KV decoders: one small interface, ``KVDecoder``, for every way the engine runs the LLM.

A KV decoder holds the cache of the answers (rows) decoded together and runs the LLM over it:

    hidden = decoder.prefill(embeds, masks)    # the prompts of n new rows -> (n, H) last states
    hidden, logits = decoder.step(tokens)      # one token per row -> (B, H) states, (B, V) logits
    decoder.keep(rows)                         # the rows that go on (finished ones leave)
    decoder.reset()                            # forget every row

A single answer is a batch of one through the same calls. Implementations:

    DynamicKVDecoder    (here) transformers' DynamicCache, eager; rows may join a running batch
    StaticKVDecoder     (static_decoding.py) a StaticCache with explicit 4-D masks, eager; no joins
    CUDAGraphKVDecoder  (static_decoding.py) the static one with its step captured in a CUDA graph

``llm_states`` is the one place the engine calls the LLM's decoder stack (every decoder, the
research-style reference too). The states are after the final norm (what ``lm_head`` reads).

DynamicKVDecoder: every row is kept right-aligned in a ``DynamicCache`` of shape
(B, heads, L, head_dim) per layer, with a (B, L) attention mask that is 0 on the left padding and on
the image tokens that come from padded image area (the image's ``llm_mask``, as at batch 1). Each row
carries its own position ids: a row's prompt sits at positions 0..T-1 whatever the padding, and its
t-th generated token at T + t, exactly as when it runs alone. transformers builds the causal mask
from the cache column, so a right-aligned row sees exactly its own prompt and tokens.

- ``prefill`` runs the prompts of the rows that join as one left-padded batch into a cache of their
  own, then merges it below the running rows: the shorter of the two caches is left-padded (zeros,
  masked) to the longer one, so rows may join a running batch at any step boundary.
- ``keep`` drops finished rows from the cache (their K/V are gone: later steps cost what the live
  rows cost) and trims the leading columns that no row attends to any more.
- ``step`` feeds one token per row.

Measured choice (benchmarks/bench_batching.py part 2, CPU, 1 thread, 363 cached positions): keeping 4
finished rows of 8 masked costs t(8) - t(4) = 41.6 ms (float32) / 26.3 ms (bfloat16) on every later
step; dropping them copies the cache once, 73.9 / 32.6 ms (about one step's own copy: DynamicCache
grows by concatenation anyway), paid back after two steps. Rows are dropped.

Measured choice (mid-size LLaMA of bench_batching, 2 threads, ~370 cached positions): on the CPU in
bfloat16, PyTorch's SDPA with a padding mask makes a batched one-token step slow, 47.8 ms at 4 rows
against 27.5 ms with transformers' eager attention (at 1 row SDPA is the faster, 21.4 against 25.5
ms; in float32 the two are within 5% at 1-8 rows; the prefill keeps SDPA: 1.12 against 1.25 s for
4 prompts). So ``step`` runs eager attention for a batch of 2 or more rows on the CPU in a reduced
precision (``step_attention``), and SDPA (the model's own setting) everywhere else.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager, nullcontext
from typing import Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaForCausalLM
from transformers.cache_utils import Cache

from .kv_cache import GrowingCache


class KVDecoder(Protocol):
    """What the generation loop (generation.Decoding) needs of a KV decoder (see the module docstring).

    takes_joins: whether ``prefill`` may add rows while others are running.
    """

    takes_joins: bool

    def prefill(self, embeds: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """n new rows: embeds n x (T_i, H) spliced prompts, masks n x (T_i,) (0 on padded image
        tokens) -> (n, H) each row's state at its last prompt position; they follow the running rows."""
        ...

    def step(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B,) long, one per row -> states (B, H), logits (B, V)."""
        ...

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (indices of the current rows, in that order)."""
        ...

    def reset(self) -> None:
        """Forget every row."""
        ...


def cache_argument(lm: LlamaForCausalLM) -> str:
    """The keyword LLaMA's forward takes its KV cache under: ``cache`` in newer transformers 5
    releases, ``past_key_values`` before (still accepted, with a deprecation warning)."""
    parameters = inspect.signature(lm.model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def llm_states(
    lm: LlamaForCausalLM,
    embeds: torch.Tensor,
    attention: torch.Tensor,
    positions: torch.Tensor | None = None,
    cache: Cache | None = None,
    cache_key: str = "past_key_values",
) -> torch.Tensor:
    """THE call of the LLM's decoder stack: embeds (B, T, H), attention (B, T) keys to attend (or a
    4-D boolean mask, used as is), positions (B, T) (None: 0..T-1), written into ``cache`` under
    the keyword ``cache_key`` (``cache_argument(lm)``, looked up once by the caller) when one is given.

    Returns (B, T, H): the last layer's states after the final norm.
    """
    cached = {cache_key: cache, "use_cache": True} if cache is not None else {"use_cache": False}
    return lm.model(inputs_embeds=embeds, attention_mask=attention, position_ids=positions, **cached).last_hidden_state


def left_pad(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """Stack (T_i, ...) tensors right-aligned into (B, length, ...), zeros on the left."""
    out = rows[0].new_zeros((len(rows), length, *rows[0].shape[1:]))
    for index, row in enumerate(rows):
        out[index, length - row.shape[0] :] = row
    return out


def left_padded_batch(
    embeds: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts embeds n x (T_i, H), masks n x (T_i,) as one right-aligned batch: embeds (n, W, H),
    attention (n, W) long (0 on the left padding too), positions (n, W) (each row's prompt at
    0..T_i-1 whatever its padding) and the lengths (n,) T_i, i.e. each row's next position."""
    lengths = torch.tensor([int(e.shape[0]) for e in embeds], device=embeds[0].device)
    width = int(lengths.max())
    positions = (torch.arange(width, device=lengths.device)[None] - (width - lengths)[:, None]).clamp_min(0)
    return left_pad(embeds, width), left_pad([m.long() for m in masks], width), positions, lengths


def step_attention(device: torch.device, dtype: torch.dtype, rows: int) -> str | None:
    """The attention implementation a decode step of ``rows`` rows should run, or None for the
    model's own (see the module docstring for the measurement)."""
    if device.type == "cpu" and rows > 1 and dtype in (torch.bfloat16, torch.float16):
        return "eager"
    return None


@contextmanager
def attention_implementation(lm: LlamaForCausalLM, name: str | None) -> Iterator[None]:
    """Run the block with ``lm``'s attention set to ``name`` (None: leave it), then set it back."""
    previous = lm.config._attn_implementation
    if name is None or name == previous:
        yield
        return
    lm.set_attn_implementation(name)
    try:
        yield
    finally:
        lm.set_attn_implementation(previous)


class DynamicKVDecoder:
    """The KV cache, attention mask and next positions of B answers decoded together, in a
    transformers DynamicCache (see the module docstring); rows join and leave at any step.

    rows: B (0 before the first prefill). attention: (B, L) long. positions: (B,) long, the
    position of each row's next token.
    growing: a GrowingCache (engine/kv_cache.py) instead of DynamicCache: see there.
    """

    takes_joins = True

    def __init__(self, lm: LlamaForCausalLM, growing: bool = False) -> None:
        self.lm = lm
        self.cache_key = cache_argument(lm)
        self.growing = growing
        self.cache: DynamicCache | None = None
        self.attention: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return 0 if self.attention is None else int(self.attention.shape[0])

    @property
    def length(self) -> int:
        """Cache columns (the longest row, padding included)."""
        return 0 if self.attention is None else int(self.attention.shape[1])

    def reset(self) -> None:
        self.cache = self.attention = self.positions = None

    def prefill(self, embeds: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Append n new rows (see KVDecoder.prefill); they get row indices B .. B + n - 1."""
        batch_embeds, attention, positions, lengths = left_padded_batch(embeds, masks)
        cache = self._new_cache()
        hidden = llm_states(self.lm, batch_embeds, attention, positions, cache, self.cache_key)[:, -1]
        self._merge(cache, attention, lengths)
        return hidden

    def step(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one token per row: tokens (B,) long -> states (B, H) after the final norm, logits (B, V)."""
        assert self.attention is not None and self.positions is not None and self.cache is not None, "prefill first"
        if tokens.shape != (self.rows,):
            raise ValueError(f"{tuple(tokens.shape)} tokens for {self.rows} rows")
        self.attention = torch.cat([self.attention, self.attention.new_ones((self.rows, 1))], dim=1)
        embeds = self.lm.get_input_embeddings()(tokens[:, None])
        attention = step_attention(embeds.device, embeds.dtype, self.rows)
        with attention_implementation(self.lm, attention) if attention is not None else nullcontext():
            states = llm_states(self.lm, embeds, self.attention, self.positions[:, None], self.cache, self.cache_key)
        hidden = states[:, -1]
        self.positions += 1  # its own tensor (prefill, merge and keep make new ones)
        return hidden, self.lm.lm_head(hidden)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order); trim the leading columns no kept row attends to."""
        if len(rows) == self.rows:
            return
        if not rows:
            self.reset()
            return
        assert self.cache is not None and self.attention is not None and self.positions is not None
        index = torch.tensor(list(rows), dtype=torch.long, device=self.attention.device)
        attention = self.attention.index_select(0, index)
        used = attention.any(dim=0)
        first = int(used.int().argmax()) if bool(used.any()) else attention.shape[1]
        layers = [
            (layer.keys.index_select(0, index)[..., first:, :], layer.values.index_select(0, index)[..., first:, :])
            for layer in self.cache.layers
        ]
        self.cache = self._new_cache(layers)
        self.attention = attention[:, first:]
        self.positions = self.positions.index_select(0, index)

    def _new_cache(self, layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> DynamicCache:
        if self.growing:
            return GrowingCache(self.lm.config, layers)
        if layers is None:
            return DynamicCache(config=self.lm.config)
        return DynamicCache(ddp_cache_data=layers, config=self.lm.config)

    def _merge(self, cache: DynamicCache, attention: torch.Tensor, positions: torch.Tensor) -> None:
        if self.cache is None:
            self.cache, self.attention, self.positions = cache, attention, positions
            return
        assert self.attention is not None and self.positions is not None
        width = max(self.length, int(attention.shape[1]))

        def pad(tensor: torch.Tensor, columns_dim: int) -> torch.Tensor:
            missing = width - tensor.shape[columns_dim]
            if missing == 0:
                return tensor
            # F.pad counts dimensions from the last one; pad on the left of the columns dimension.
            spec = [0, 0] * (tensor.ndim - 1 - columns_dim % tensor.ndim) + [missing, 0]
            return F.pad(tensor, spec)

        layers = [
            (torch.cat([pad(old.keys, -2), pad(new.keys, -2)]), torch.cat([pad(old.values, -2), pad(new.values, -2)]))
            for old, new in zip(self.cache.layers, cache.layers)
        ]
        self.cache = self._new_cache(layers)
        self.attention = torch.cat([pad(self.attention, 1), pad(attention, 1)])
        self.positions = torch.cat([self.positions, positions])
