"""A dynamic KV cache that grows in place: transformers' DynamicCache without a copy per token.

transformers' ``DynamicLayer.update`` concatenates: every decode step allocates each layer's keys
and values anew and copies the whole cache into them, so a step reads and writes the cache once
more than attention needs. At batch 8 on the 7B shapes that is ~2.9 GB a step, as much again as
half the weights. ``GrowingLayer`` keeps each layer in a buffer with room to spare
(``reserve_for(n)`` positions past the n it holds) and writes a new token into its slot; the
keys / values it hands to attention are views of the first n positions (B, heads, n, head_dim),
strided in the heads dimension, which matmul and SDPA read as they are. It regrows (one copy)
only when the room runs out. Anything that replaces ``keys`` / ``values`` (transformers' crop,
batch selection, our own ``BatchKVCache.keep``) is noticed at the next update, which rebuilds the
buffer from the new tensors, so every DynamicCache operation keeps its meaning.

Opt-in (``BatchKVCache(lm, growing=True)``); the engine keeps DynamicCache until a GPU run says
otherwise. Measured (bench_batching part 2, one run each, this 2-core CPU, mid-size LLaMA, 363
cached positions), one decode step against DynamicCache at B = 1 / 2 / 4 / 8 rows:
float32 0.97 / 0.97 / 0.94 / 0.82x; bfloat16 0.95 / 0.90 / 1.04 / 1.33x: a batched bfloat16 step
runs eager attention on the CPU (batch_decoding.step_attention), and oneDNN's bfloat16 matmul
copies a strided key view (727 against 159 us for q @ k^T at 4 x 16 heads x 380 positions), which
costs more than the concatenation it saves. On a GPU the views go to SDPA as they are; part 2 of
``bench_batching.py --gpu`` prints both caches.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import Cache, DynamicLayer

# Room a (re)allocated buffer keeps past the positions it holds: at least MIN_RESERVE, or a
# quarter of them, so a regrow (one copy of the layer) comes at most every MIN_RESERVE tokens.
MIN_RESERVE = 128
RESERVE_FRACTION = 0.25


def reserve_for(length: int) -> int:
    """Spare positions a buffer holding ``length`` positions is allocated with."""
    return max(MIN_RESERVE, int(length * RESERVE_FRACTION))


class GrowingLayer(DynamicLayer):
    """One decoder layer's keys and values, (B, heads, n, head_dim), in a buffer grown in place."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def _holds_current(self) -> bool:
        """Whether keys / values are still the views of our buffers (nothing replaced them)."""
        buffer, keys = self._key_buffer, self.keys
        return (
            buffer is not None
            and keys is not None
            and keys.numel() > 0
            and keys.data_ptr() == buffer.data_ptr()
            and keys.shape[:2] == buffer.shape[:2]
            and keys.shape[-1] == buffer.shape[-1]
            and keys.stride() == buffer.stride()
        )

    def _allocate(self, length: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        capacity = length + reserve_for(length)
        shape = (*like.shape[:2], capacity, like.shape[-1])
        return like.new_empty(shape), like.new_empty(shape)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append key_states / value_states (B, heads, m, head_dim); return all (B, heads, n + m, head_dim)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held = self.get_seq_length()
        added = key_states.shape[-2]
        total = held + added
        if not self._holds_current() or total > self._key_buffer.shape[-2]:  # type: ignore[union-attr]
            keys, values = self._allocate(total, key_states)
            if held:
                keys[..., :held, :] = self.keys
                values[..., :held, :] = self.values
            self._key_buffer, self._value_buffer = keys, values
        assert self._key_buffer is not None and self._value_buffer is not None
        self._key_buffer[..., held:total, :] = key_states
        self._value_buffer[..., held:total, :] = value_states
        self.keys = self._key_buffer[..., :total, :]
        self.values = self._value_buffer[..., :total, :]
        return self.keys, self.values

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        super().reset()


class GrowingCache(DynamicCache):
    """A DynamicCache of GrowingLayers, one per decoder layer of ``config``; optionally filled with
    ``data``, one (keys, values) pair per layer."""

    def __init__(
        self, config: PretrainedConfig, data: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> None:
        layers = [GrowingLayer() for _ in range(config.get_text_config(decoder=True).num_hidden_layers)]
        Cache.__init__(self, layers=layers)
        for layer, (keys, values) in zip(layers, data or []):
            layer.update(keys, values)
