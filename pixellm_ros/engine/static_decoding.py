"""Fixed-size KV decoders: a StaticCache (eager) and the same with its step in a CUDA graph.

Eager transformers decoding launches a few hundred small kernels per token from Python; for a 7B
model on a GPU that launch overhead, not the weight reads, sets the pace. Capturing the step once
and replaying it removes the overhead. A CUDA graph needs fixed shapes and fixed addresses, so:

- the cache is a transformers ``StaticCache`` of ``max_len`` positions and ``rows`` rows, allocated
  once and cleared in place between batches (its write position is a device tensor that advances
  inside the graph);
- the step reads its inputs from fixed buffers: the token ids, their positions and a boolean key
  mask (rows, 1, 1, max_len) that marks the columns to attend to (the prompt minus padded image
  tokens, and every generated token so far); we pass that 4-D mask ourselves, so transformers uses
  it as is;
- it writes the last-layer state (after the final norm) and the logits to fixed buffers.

Both implement ``decoders.KVDecoder``. A batch of n <= rows answers: the prompts are left-padded to
one width, so every row writes its t-th token into the same cache column (the StaticCache's one
write position) while its position id and its key mask are its own. The n rows take the first n
of the decoder's rows (the rest stay idle: an idle row costs little on a GPU, where a step reads
the weights once for all rows, and its shapes keep the captured graph). A row that finishes stays
in the cache, masked and ignored (``keep`` only narrows which rows the caller sees): rows never
move, so the graph's addresses hold. No row joins a running batch (``takes_joins`` is False).

The prefill runs eagerly through the same cache with an explicit causal 4-D mask. ``StaticKVDecoder``
runs the step eagerly on any device (the tests on the CPU check the cache and mask logic there);
``CUDAGraphKVDecoder`` replays it as a captured graph (CUDA only).
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import LlamaForCausalLM, StaticCache

from .decoders import cache_argument, left_padded_batch, llm_states


class StaticKVDecoder:
    """One StaticCache of ``max_len`` positions x ``rows`` rows and its one-token decode step (eager).

    compile: torch.compile the step first (inductor fuses the small element-wise kernels).
    rows: the cache's rows (a batch uses the first n of them). ``in_use`` while a batch runs on it.
    """

    takes_joins = False

    def __init__(self, lm: LlamaForCausalLM, max_len: int, rows: int = 1, compile: bool = False) -> None:
        self.lm = lm
        self.max_len = int(max_len)
        self.rows = int(rows)
        self.device = lm.lm_head.weight.device
        self.cache = StaticCache(config=lm.config, max_cache_len=self.max_len)
        self.cache_key = cache_argument(lm)
        self.token = torch.zeros((self.rows, 1), dtype=torch.long, device=self.device)
        self.position = torch.zeros((self.rows, 1), dtype=torch.long, device=self.device)
        self.key_mask = torch.zeros((self.rows, 1, 1, self.max_len), dtype=torch.bool, device=self.device)
        self._step_fn = torch.compile(self._step, dynamic=False) if compile else self._step
        self.active: list[int] = []  # the decoder rows the caller's rows are, in the caller's order
        self.column = 0  # the cache column the next token goes to (shared by all rows)

    @property
    def in_use(self) -> bool:
        return bool(self.active)

    def _step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row: (rows, H) last-layer states after the final norm, (rows, V) logits."""
        embeds = self.lm.get_input_embeddings()(self.token)
        hidden = llm_states(self.lm, embeds, self.key_mask, self.position, self.cache, self.cache_key)[:, -1]
        return hidden, self.lm.lm_head(hidden)

    def _run_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The step on the buffers; the outputs must not be overwritten before the caller reads them."""
        return self._step_fn()

    def _clear(self) -> None:
        """Empty the cache and the key mask, in place (a captured graph keeps their addresses)."""
        self.cache.reset()
        self.key_mask.zero_()

    def reset(self) -> None:
        self.active, self.column = [], 0

    def prefill(self, embeds: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """The batch's prompts (n <= rows; see KVDecoder.prefill). Raises RuntimeError while a batch
        runs (a static batch takes no rows once it runs: the dynamic decoder lets rows join)."""
        if self.active:
            raise RuntimeError("a static batch takes no rows once it runs; use the dynamic cache to join")
        count = len(embeds)
        if count > self.rows:
            raise ValueError(f"{count} prompts for a decoder of {self.rows} rows")
        idle = self.rows - count  # idle rows: one zero embedding at the last column, masked
        embeds = list(embeds) + [embeds[0].new_zeros((1, embeds[0].shape[1]))] * idle
        masks = list(masks) + [masks[0].new_zeros(1)] * idle
        batch_embeds, attention, positions, next_positions = left_padded_batch(embeds, masks)
        length = int(batch_embeds.shape[1])
        if length >= self.max_len:
            raise ValueError(f"prompt of {length} positions does not fit a cache of {self.max_len}")
        self._clear()
        self.key_mask[:, 0, 0, :length] = attention.bool()
        causal = torch.ones((length, self.max_len), dtype=torch.bool, device=self.device).tril()
        # (rows, 1, P, max_len): earlier, non-padded keys; and every query its own key, so that no
        # row is fully masked (a left-padding query has no key at all). PyTorch's CPU SDPA gives
        # zeros for such a row and eager attention a uniform mix, but not every attention kernel
        # promises a finite result, and a NaN there would become NaN keys in the next layers that
        # poison every query. A padding position's own key is masked for every real query, so the
        # answers do not change (the static batch tests compare them with batch 1).
        itself = torch.eye(length, self.max_len, dtype=torch.bool, device=self.device)
        mask = (causal[None, None] & self.key_mask) | itself[None, None]
        hidden = llm_states(self.lm, batch_embeds, mask, positions, self.cache, self.cache_key)[:, -1]
        self.position.copy_(next_positions.view(self.rows, 1))
        self.column, self.active = length, list(range(count))
        return hidden[:count]

    def step(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (n,) for the caller's rows -> states (n, H), logits (n, V) (copies: the buffers
        are written again at the next step)."""
        if not self.active:
            raise RuntimeError("prefill first")
        if tokens.shape != (len(self.active),):
            raise ValueError(f"{tuple(tokens.shape)} tokens for {len(self.active)} rows")
        if self.column >= self.max_len:
            raise ValueError(f"position {self.column} is past the cache of {self.max_len}")
        every_row = len(self.active) == self.rows  # batch 1 on one row, a full batch: no gather
        if every_row:
            self.token.copy_(tokens.view(self.rows, 1))
        else:
            index = torch.tensor(self.active, dtype=torch.long, device=tokens.device)
            self.token.zero_()
            self.token.index_copy_(0, index, tokens.view(-1, 1))
        self.key_mask[..., self.column] = True
        hidden, logits = self._run_step()
        self.position += 1
        self.column += 1
        if every_row:
            return hidden, logits
        return hidden.index_select(0, index), logits.index_select(0, index)

    def keep(self, rows: Sequence[int]) -> None:
        """The caller keeps only ``rows`` (its indices, in that order); the cache itself stays."""
        self.active = [self.active[row] for row in rows]
        if not self.active:
            self.reset()


class CUDAGraphKVDecoder(StaticKVDecoder):
    """The StaticKVDecoder with its one-token step captured in a CUDA graph (CUDA only) and replayed.

    compile: torch.compile the step before it is captured (decode_mode "compiled").
    """

    def __init__(self, lm: LlamaForCausalLM, max_len: int, rows: int = 1, compile: bool = False) -> None:
        super().__init__(lm, max_len, rows=rows, compile=compile)
        if self.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA model, this one is on {self.device}")
        # Warm-up on a side stream (lazy cache allocation, cuBLAS workspaces, compilation), as the
        # CUDA graph documentation asks, then capture one step; the warm-up's writes are cleared.
        self.key_mask[..., 0] = True
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._step_fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self._clear()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._hidden, self._logits = self._step_fn()
        self._clear()

    def _run_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.graph.replay()
        # The graph overwrites its output buffers at the next replay: hand out copies.
        return self._hidden.clone(), self._logits.clone()
