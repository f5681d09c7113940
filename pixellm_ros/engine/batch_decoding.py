"""Several answers in one KV cache: left padding, per-row positions, rows that join and leave.

Every row (one answer) is kept right-aligned in a transformers ``DynamicCache`` of shape
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

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaForCausalLM

from .kv_cache import GrowingCache
from .static_decoding import StaticKVDecoder, cache_argument


def left_pad(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """Stack (T_i, ...) tensors right-aligned into (B, length, ...), zeros on the left."""
    out = rows[0].new_zeros((len(rows), length, *rows[0].shape[1:]))
    for index, row in enumerate(rows):
        out[index, length - row.shape[0] :] = row
    return out


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


class BatchKVCache:
    """The KV cache, attention mask and next positions of B answers decoded together.

    rows: B (0 before the first prefill). attention: (B, L) long. positions: (B,) long, the
    position of each row's next token.
    """

    def __init__(self, lm: LlamaForCausalLM, growing: bool = False) -> None:
        self.lm = lm
        self.cache_key = cache_argument(lm)
        self.growing = growing  # GrowingCache (engine/kv_cache.py) instead of DynamicCache: see there
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
        """Append n new rows: embeds n x (T_i, H) spliced prompts, masks n x (T_i,) (0 on padded image tokens).

        Returns (n, H): each new row's last-layer state (after the final norm) at its last prompt
        position. The new rows come after the running ones (row indices B .. B + n - 1).
        """
        batch_embeds, attention, positions, lengths = left_padded_batch(embeds, masks)
        cache = self._new_cache()
        hidden = self.lm.model(
            inputs_embeds=batch_embeds,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{self.cache_key: cache},
        ).last_hidden_state[:, -1]
        self._merge(cache, attention, lengths)
        return hidden

    def step(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one token per row: tokens (B,) long -> states (B, H) after the final norm, logits (B, V)."""
        assert self.attention is not None and self.positions is not None and self.cache is not None, "prefill first"
        if tokens.shape != (self.rows,):
            raise ValueError(f"{tuple(tokens.shape)} tokens for {self.rows} rows")
        self.attention = torch.cat([self.attention, self.attention.new_ones((self.rows, 1))], dim=1)
        embeds = self.lm.get_input_embeddings()(tokens[:, None])
        with attention_implementation(self.lm, step_attention(embeds.device, embeds.dtype, self.rows)):
            hidden = self.lm.model(
                inputs_embeds=embeds,
                attention_mask=self.attention,
                position_ids=self.positions[:, None],
                use_cache=True,
                **{self.cache_key: self.cache},
            ).last_hidden_state[:, -1]
        self.positions = self.positions + 1
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


class StaticBatchKVCache:
    """BatchKVCache's interface over a StaticKVDecoder of ``decoder.rows`` rows (static / CUDA-graph
    decode modes): one prefill of every row of the batch, then one step per token; no joins.

    The n rows of a batch take the first n of the decoder's rows (the rest stay idle: an idle row
    costs little on a GPU, where a step reads the weights once for all rows, and its shapes keep
    the captured graph). A row that finishes stays in the cache, masked and ignored (``keep``
    only narrows which rows the caller sees): rows never move, so the graph's addresses hold.
    """

    def __init__(self, decoder: StaticKVDecoder) -> None:
        self.decoder = decoder
        self.active: list[int] = []  # decoder rows the caller's rows are, in the caller's order
        self.positions: torch.Tensor | None = None  # (decoder.rows,) next position of every row
        self.column = 0  # the cache column the next token goes to (shared by all rows)
        self._started = False

    @property
    def rows(self) -> int:
        return len(self.active)

    @property
    def length(self) -> int:
        return self.column

    def reset(self) -> None:
        self.active, self.positions, self.column, self._started = [], None, 0, False

    def prefill(self, embeds: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """The batch's prompts (n <= decoder.rows): as BatchKVCache.prefill. Raises RuntimeError when
        the batch already ran (a static batch takes no new rows: the node's batches are static)."""
        if self._started:
            raise RuntimeError("a static batch takes no rows once it runs; use the dynamic cache to join")
        decoder, count = self.decoder, len(embeds)
        if count > decoder.rows:
            raise ValueError(f"{count} rows for a static decoder of {decoder.rows}")
        idle = decoder.rows - count  # idle rows: one zero embedding at the last column, masked
        embeds = list(embeds) + [embeds[0].new_zeros((1, embeds[0].shape[1]))] * idle
        masks = list(masks) + [masks[0].new_zeros(1)] * idle
        batch_embeds, attention, positions, self.positions = left_padded_batch(embeds, masks)
        hidden = decoder.prefill(batch_embeds, attention, positions)
        self.column, self.active, self._started = int(batch_embeds.shape[1]), list(range(count)), True
        return hidden[:count]

    def step(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (n,) for the caller's rows -> states (n, H), logits (n, V)."""
        assert self.positions is not None, "prefill first"
        if tokens.shape != (self.rows,):
            raise ValueError(f"{tuple(tokens.shape)} tokens for {self.rows} rows")
        index = torch.tensor(self.active, dtype=torch.long, device=tokens.device)
        every = torch.zeros(self.decoder.rows, dtype=torch.long, device=tokens.device)
        every[index] = tokens
        hidden, logits = self.decoder.step_rows(every, self.positions, self.column)
        self.positions = self.positions + 1
        self.column += 1
        return hidden.index_select(0, index), logits.index_select(0, index)

    def keep(self, rows: Sequence[int]) -> None:
        """The caller keeps only ``rows`` (its indices, in that order); the cache itself stays."""
        self.active = [self.active[row] for row in rows]
        if not self.active:
            self.reset()
