"""Greedy answer generation, KV-cached, collecting the hidden states that predict seg tokens.

The embedding of a seg token ``[SEGk]`` is the LLM's last-layer hidden state (after the final
norm) at the position just before it, i.e. the state whose argmax *was* ``[SEGk]``. In a KV-cached
loop that is simply the state of the step that produced the token, so we keep it as we go and
never run the sequence again.

``generate_research_style`` is the released code's way, kept as the reference for tests and the
benchmark: no cache, and the whole sequence, vision tower included, recomputed at every step; the
seg states are read from the last step's full pass. Both share the logits hook and stop rules, so
they must produce the same tokens.

Logits hook: ``logits_processor(input_ids, scores) -> scores`` with transformers' LogitsProcessor
signature, so a ``transformers.LogitsProcessorList`` works. ``input_ids`` is (1, P + t): the P
prompt ids (the image placeholder replaced by the pad id, so every id indexes the vocabulary)
followed by the t tokens generated so far; ``scores`` is (1, V) float32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Sequence

import torch
from transformers import DynamicCache, LlamaForCausalLM

from pixellm_ros.model.constants import IMAGE_TOKEN_INDEX

from .static_decoding import StaticKVDecoder, cache_argument

if TYPE_CHECKING:
    from pixellm_ros.model import ImageFeatures, PixelLMForCausalLM
    from pixellm_ros.model.tokenizer import PixelLMTokenizer

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FinishReason = Literal["eos", "length", "stopped"]


@dataclass
class GenerationOutput:
    """What one answer's generation produced.

    token_ids: generated ids, end-of-sequence excluded.
    seg_hidden: (K, H) the last-layer states that predicted the K seg tokens, in order.
    seg_positions: the index in ``token_ids`` of each of the K seg tokens.
    finish_reason: "eos", "length" (max_new_tokens reached) or "stopped" (should_stop fired).
    num_generated: tokens produced by the model, the end-of-sequence token included.
    first_token_s: seconds from the start to the first token (the prefill).
    total_s: seconds for the whole generation.
    """

    token_ids: list[int]
    seg_hidden: torch.Tensor
    seg_positions: list[int]
    finish_reason: FinishReason
    num_generated: int
    first_token_s: float
    total_s: float


def processor_ids(prompt_ids: Sequence[int], pad_id: int, device: torch.device) -> torch.Tensor:
    """(1, P) prompt ids for the logits hook: the image placeholder replaced by ``pad_id``."""
    ids = [pad_id if t == IMAGE_TOKEN_INDEX else int(t) for t in prompt_ids]
    return torch.tensor([ids], dtype=torch.long, device=device)


class _TokenSink:
    """Shared bookkeeping of both loops: stop rules, the logits hook, streaming text."""

    def __init__(
        self,
        tokenizer: PixelLMTokenizer,
        prompt_ids: Sequence[int],
        device: torch.device,
        max_new_tokens: int,
        logits_processor: LogitsProcessor | None,
        on_text: Callable[[str], None] | None,
    ) -> None:
        self.eos_id = tokenizer.eos_id
        self.seg_ids = frozenset(tokenizer.seg_token_ids)
        self.max_new_tokens = max_new_tokens
        self.logits_processor = logits_processor
        self.on_text = on_text
        self.detokenizer = tokenizer.streaming_detokenizer(skip_special=True) if on_text is not None else None
        self.history = processor_ids(prompt_ids, tokenizer.pad_id, device) if logits_processor is not None else None
        self.tokens: list[int] = []
        self.seg_positions: list[int] = []
        self.num_generated = 0

    def pick(self, last_logits: torch.Tensor) -> int:
        """Greedy choice from (1, V) logits, after the hook."""
        scores = last_logits.float()
        if self.logits_processor is not None:
            scores = self.logits_processor(self.history, scores)
        return int(scores.argmax(dim=-1).item())

    def accept(self, token: int) -> FinishReason | None:
        """Record a picked token; return why to stop, or None to go on."""
        self.num_generated += 1
        if token == self.eos_id:
            return "eos"
        if token in self.seg_ids:
            self.seg_positions.append(len(self.tokens))
        self.tokens.append(token)
        if self.history is not None:
            self.history = torch.cat([self.history, self.history.new_tensor([[token]])], dim=1)
        if self.detokenizer is not None:
            delta = self.detokenizer.push(token)
            if delta:
                self.on_text(delta)  # type: ignore[misc]
        if len(self.tokens) >= self.max_new_tokens:
            return "length"
        return None

    def finish(self) -> None:
        if self.detokenizer is not None:
            rest = self.detokenizer.flush()
            if rest:
                self.on_text(rest)  # type: ignore[misc]


class DynamicKVDecoder:
    """transformers' DynamicCache, grown token by token; eager. The default on any device.

    Same interface as StaticKVDecoder: ``prefill`` then ``step`` per generated token.
    """

    def __init__(self, lm: LlamaForCausalLM) -> None:
        self.lm = lm
        self.cache = DynamicCache(config=lm.config)
        self.cache_kwarg = {cache_argument(lm): self.cache}
        self.attention: torch.Tensor | None = None

    def prefill(self, embeds: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """embeds (1, P, H), attention (1, P) -> (1, H) state of the last prompt position."""
        self.attention = attention
        positions = torch.arange(embeds.shape[1], device=embeds.device)[None]
        return self.lm.model(
            inputs_embeds=embeds, attention_mask=attention, position_ids=positions, use_cache=True, **self.cache_kwarg
        ).last_hidden_state[:, -1]

    def step(self, token: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed ``token`` at ``position`` -> (1, H) state after the final norm, (1, V) logits."""
        assert self.attention is not None, "prefill first"
        device = self.attention.device
        self.attention = torch.cat([self.attention, self.attention.new_ones((1, 1))], dim=1)
        embeds = self.lm.get_input_embeddings()(torch.tensor([[token]], device=device))
        hidden = self.lm.model(
            inputs_embeds=embeds,
            attention_mask=self.attention,
            position_ids=torch.tensor([[position]], device=device),
            use_cache=True,
            **self.cache_kwarg,
        ).last_hidden_state[:, -1]
        return hidden, self.lm.lm_head(hidden)


@torch.inference_mode()
def generate_greedy(
    model: PixelLMForCausalLM,
    tokenizer: PixelLMTokenizer,
    prompt_ids: Sequence[int],
    feats: ImageFeatures,
    max_new_tokens: int,
    logits_processor: LogitsProcessor | None = None,
    on_text: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    decoder: DynamicKVDecoder | StaticKVDecoder | None = None,
) -> GenerationOutput:
    """Greedy decoding with a KV cache: one prefill, then one token per step.

    prompt_ids: P ids with exactly one IMAGE_TOKEN_INDEX; feats: the image's features (batch 1).
    decoder: the KV cache and step to use (default: a fresh DynamicKVDecoder; a StaticKVDecoder
    is reset by its prefill, so one can serve many answers).
    ``should_stop`` is polled before every forward pass; ``on_text`` gets the answer text as it
    grows (added tokens skipped), through the tokenizer's streaming detokenizer.
    """
    start = time.perf_counter()
    lm = model.language_model
    device = lm.lm_head.weight.device
    sink = _TokenSink(tokenizer, prompt_ids, device, max_new_tokens, logits_processor, on_text)
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
    embeds, attention = model.embed_prompt(ids, feats)
    decoder = decoder if decoder is not None else DynamicKVDecoder(lm)
    seg_states: list[torch.Tensor] = []
    first_token_s = 0.0
    reason: FinishReason | None = None
    position = embeds.shape[1]  # where the next token goes

    if should_stop is not None and should_stop():
        reason = "stopped"
    else:
        hidden = decoder.prefill(embeds, attention)
        logits = lm.lm_head(hidden)
    while reason is None:
        token = sink.pick(logits)
        if sink.num_generated == 0:
            first_token_s = time.perf_counter() - start
        if token in sink.seg_ids:
            seg_states.append(hidden[0])  # the state that predicted this seg token
        reason = sink.accept(token)
        if reason is not None:
            break
        if should_stop is not None and should_stop():
            reason = "stopped"
            break
        hidden, logits = decoder.step(token, position)
        position += 1
    sink.finish()
    return _output(sink, seg_states, reason, lm.config.hidden_size, device, first_token_s, start)


@torch.inference_mode()
def generate_research_style(
    model: PixelLMForCausalLM,
    tokenizer: PixelLMTokenizer,
    prompt_ids: Sequence[int],
    pixel_values: torch.Tensor,
    valid_hw: tuple[int, int],
    max_new_tokens: int,
    logits_processor: LogitsProcessor | None = None,
) -> tuple[GenerationOutput, ImageFeatures]:
    """The reference: every step re-encodes the image and re-runs the whole sequence, no cache.

    Returns the generation and the image features of the last step (for the mask decoder).
    The seg states are taken from the last step's full pass at the positions just before each
    seg token, as the released code does.
    """
    start = time.perf_counter()
    lm = model.language_model
    device = lm.lm_head.weight.device
    sink = _TokenSink(tokenizer, prompt_ids, device, max_new_tokens, logits_processor, None)
    first_token_s = 0.0
    reason: FinishReason | None = None
    hidden = None
    feats = None
    while reason is None:
        feats = model.encode_images(pixel_values, [valid_hw])
        ids = torch.tensor([list(prompt_ids) + sink.tokens], dtype=torch.long, device=device)
        embeds, attention = model.embed_prompt(ids, feats)
        hidden = lm.model(inputs_embeds=embeds, attention_mask=attention, use_cache=False).last_hidden_state
        token = sink.pick(lm.lm_head(hidden[:, -1]))
        if sink.num_generated == 0:
            first_token_s = time.perf_counter() - start
        reason = sink.accept(token)
    assert hidden is not None and feats is not None
    # Generated token j sits at spliced position P' + j; the state predicting it at P' + j - 1.
    spliced_prompt = hidden.shape[1] - (len(sink.tokens) - (0 if reason == "eos" else 1))
    rows = [spliced_prompt + j - 1 for j in sink.seg_positions]
    seg_states = [hidden[0, r] for r in rows]
    return _output(sink, seg_states, reason, lm.config.hidden_size, device, first_token_s, start), feats


def _output(
    sink: _TokenSink,
    seg_states: list[torch.Tensor],
    reason: FinishReason,
    hidden_size: int,
    device: torch.device,
    first_token_s: float,
    start: float,
) -> GenerationOutput:
    seg_hidden = torch.stack(seg_states) if seg_states else torch.zeros((0, hidden_size), device=device)
    return GenerationOutput(
        token_ids=sink.tokens,
        seg_hidden=seg_hidden,
        seg_positions=sink.seg_positions,
        finish_reason=reason,
        num_generated=sink.num_generated,
        first_token_s=first_token_s,
        total_s=time.perf_counter() - start,
    )
