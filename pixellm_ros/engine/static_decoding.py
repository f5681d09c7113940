"""A fixed-size KV cache whose one-token step can be captured in a CUDA graph (and compiled).

Eager transformers decoding launches a few hundred small kernels per token from Python; for a 7B
model on a GPU that launch overhead, not the weight reads, sets the pace. Capturing the step once
and replaying it removes the overhead. A CUDA graph needs fixed shapes and fixed addresses, so:

- the cache is a transformers ``StaticCache`` of ``max_len`` positions, allocated once and reset in
  place between answers (its write position is a device tensor that advances inside the graph);
- the step reads its inputs from fixed buffers: the token ids, their positions and a boolean key
  mask (rows, 1, 1, max_len) that marks the columns to attend to (the prompt minus padded image
  tokens, and every generated token so far); we pass that 4-D mask ourselves, so transformers uses
  it as is;
- it writes the last-layer state (after the final norm) and the logits to fixed buffers.

``rows`` > 1 decodes that many answers together (engine/batch_decoding.py, StaticBatchKVCache): the
prompts are left-padded to one width, so every row writes its t-th token into the same cache column
(the StaticCache's one write position) while its position id and its key mask are its own.

The prefill runs eagerly through the same cache with an explicit causal 4-D mask. Without CUDA
(tests on the CPU) the same step runs eagerly, which checks the cache and mask logic everywhere.
"""

from __future__ import annotations

import inspect

import torch
from transformers import LlamaForCausalLM, StaticCache


def cache_argument(lm: LlamaForCausalLM) -> str:
    """The keyword LLaMA's forward takes its KV cache under: ``cache`` in newer transformers 5
    releases, ``past_key_values`` before (still accepted, with a deprecation warning)."""
    parameters = inspect.signature(lm.model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


class StaticKVDecoder:
    """One StaticCache of ``max_len`` positions and its one-token decode step.

    use_cuda_graph: capture the step in a CUDA graph (CUDA only).
    compile: torch.compile the step first (inductor fuses the small element-wise kernels).
    """

    def __init__(
        self, lm: LlamaForCausalLM, max_len: int, use_cuda_graph: bool = False, compile: bool = False, rows: int = 1
    ) -> None:
        self.lm = lm
        self.max_len = int(max_len)
        self.rows = int(rows)
        device = lm.lm_head.weight.device
        if use_cuda_graph and device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA model, this one is on {device}")
        self.device = device
        self.cache = StaticCache(config=lm.config, max_cache_len=self.max_len)
        self.cache_kwarg = {cache_argument(lm): self.cache}
        self.token = torch.zeros((self.rows, 1), dtype=torch.long, device=device)
        self.position = torch.zeros((self.rows, 1), dtype=torch.long, device=device)
        self.key_mask = torch.zeros((self.rows, 1, 1, self.max_len), dtype=torch.bool, device=device)
        self._step_fn = torch.compile(self._step, dynamic=False) if compile else self._step
        self.graph: torch.cuda.CUDAGraph | None = None
        self._hidden: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        if use_cuda_graph:
            self._capture()

    def _step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row: (rows, H) last-layer states after the final norm, (rows, V) logits."""
        embeds = self.lm.get_input_embeddings()(self.token)
        hidden = self.lm.model(
            inputs_embeds=embeds, attention_mask=self.key_mask, position_ids=self.position, use_cache=True, **self.cache_kwarg
        ).last_hidden_state[:, -1]
        return hidden, self.lm.lm_head(hidden)

    def _capture(self) -> None:
        # Warm-up on a side stream (lazy cache allocation, cuBLAS workspaces, compilation), as the
        # CUDA graph documentation asks, then capture one step; the warm-up's writes are reset.
        self.key_mask[..., 0] = True
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._step_fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self.reset()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._hidden, self._logits = self._step_fn()
        self.reset()

    def reset(self) -> None:
        """Empty the cache and the key mask, in place (the captured graph keeps their addresses)."""
        self.cache.reset()
        self.key_mask.zero_()

    def prefill(self, embeds: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Run the prompts: embeds (rows, P, H), attention (rows, P) (0 on padding and padded image
        tokens), positions (rows, P) (default 0..P-1, right for one unpadded row).

        Returns the (rows, H) states of the last prompt position.
        """
        length = embeds.shape[1]
        if embeds.shape[0] != self.rows:
            raise ValueError(f"{embeds.shape[0]} prompts for a decoder of {self.rows} rows")
        if length >= self.max_len:
            raise ValueError(f"prompt of {length} positions does not fit a cache of {self.max_len}")
        self.reset()
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
        if positions is None:
            positions = torch.arange(length, device=self.device)[None].expand(self.rows, length)
        return self.lm.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, **self.cache_kwarg
        ).last_hidden_state[:, -1]

    def step(self, token: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One row: feed ``token`` at ``position`` (its cache column too); returns copies of the
        (1, H) state and the (1, V) logits."""
        self.token.fill_(token)
        self.position.fill_(position)
        return self._replay(position)

    def step_rows(self, tokens: torch.Tensor, positions: torch.Tensor, column: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row: tokens (rows,) at positions (rows,), written into cache ``column`` (the
        prompt width plus the steps so far); returns copies of (rows, H) states, (rows, V) logits."""
        self.token.copy_(tokens.view(self.rows, 1))
        self.position.copy_(positions.view(self.rows, 1))
        return self._replay(column)

    def _replay(self, column: int) -> tuple[torch.Tensor, torch.Tensor]:
        if column >= self.max_len:
            raise ValueError(f"position {column} is past the cache of {self.max_len}")
        self.key_mask[..., column] = True
        if self.graph is None:
            return self._step_fn()
        self.graph.replay()
        assert self._hidden is not None and self._logits is not None
        # The graph overwrites its output buffers at the next replay: hand out copies.
        return self._hidden.clone(), self._logits.clone()
