"""Greedy answer generation, KV-cached, collecting the hidden states that predict seg tokens.

The one loop (gpt-fast's ``generate`` over ``prefill`` / ``decode_one_token``, the batch just a
dimension) is ``Decoding``: it runs the answers (``TokenStream``) decoded together on one KV
decoder (decoders.py: dynamic, static or CUDA graph):

    decoding = Decoding(lm, decoder)
    ended = decoding.prefill(streams, embeds, masks)   # their prompts; each picks its first token
    ended += decoding.decode_one_token()               # every running answer gets one token

Each answer stops on its own (end of sequence, its max_new_tokens, its should_stop, an exception of
its own callbacks or logits hook) and leaves the decoder at once; the others go on undisturbed. A
single answer is a batch of one through the same loop (``generate_greedy``; the engine's
``segment`` runs the BatchSession of batching.py, which drives a Decoding).

The embedding of a seg token ``[SEGk]`` is the LLM's last-layer hidden state (after the final
norm) at the position just before it, i.e. the state whose argmax *was* ``[SEGk]``. In a KV-cached
loop that is simply the state of the step that produced the token, so we keep it as we go and
never run the sequence again.

``generate_research_style`` is the released code's way, kept as the reference for tests and the
benchmark: no cache, and the whole sequence, vision tower included, recomputed at every step; the
seg states are read from the last step's full pass. Both share TokenStream (the logits hook and
stop rules), so they must produce the same tokens.

Logits hook: ``logits_processor(input_ids, scores) -> scores`` with transformers' LogitsProcessor
signature, so a ``transformers.LogitsProcessorList`` works. ``input_ids`` is (1, P + t): the P
prompt ids (the image placeholder replaced by the pad id, so every id indexes the vocabulary)
followed by the t tokens generated so far; ``scores`` is (1, V) float32.

The caller's callbacks: ``on_token(n)`` once per generated token with the number generated so far
(end of sequence included), ``on_text(piece)`` with the text the token adds (added tokens skipped,
through the tokenizer's streaming detokenizer), ``should_stop()`` polled before every forward pass
that would include the answer. An exception one of them raises ends that answer alone and becomes
its ``error``, unchanged; one of the logits hook is a model failure (errors.model_failure).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Sequence

import torch
from transformers import LlamaForCausalLM

from pixellm_ros.model.constants import IMAGE_TOKEN_INDEX

from .decoders import DynamicKVDecoder, KVDecoder, llm_states
from .errors import model_failure

if TYPE_CHECKING:
    from pixellm_ros.model import ImageFeatures, PixelLMForCausalLM
    from pixellm_ros.model.tokenizer import PixelLMTokenizer

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FinishReason = Literal["eos", "length", "stopped"]


def processor_ids(prompt_ids: Sequence[int], pad_id: int, device: torch.device) -> torch.Tensor:
    """(1, P) prompt ids for the logits hook: the image placeholder replaced by ``pad_id``."""
    ids = [pad_id if t == IMAGE_TOKEN_INDEX else int(t) for t in prompt_ids]
    return torch.tensor([ids], dtype=torch.long, device=device)


class TokenStream:
    """One answer as it is generated: stop rules, logits hook, the caller's callbacks, the tokens
    and the seg states. Every decoding route (a batch row, batch 1, the research reference) runs one.

    tokens: generated ids, end of sequence excluded; seg_positions: the index in ``tokens`` of each
    seg token; seg_states: the (H,) state that predicted each of them. num_generated: tokens the
    model produced (the end of sequence included). reason: why it ended (None while it runs);
    error: the exception that ended it (its callbacks', unchanged, or a model failure).
    first_token_s / total_s: from the start of its prefill to its first token / to its end.
    batch_rows: the most rows it was decoded with.
    """

    def __init__(
        self,
        tokenizer: PixelLMTokenizer,
        prompt_ids: Sequence[int],
        device: torch.device,
        max_new_tokens: int,
        logits_processor: LogitsProcessor | None = None,
        on_text: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_token: Callable[[int], None] | None = None,
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.eos_id = tokenizer.eos_id
        self.seg_ids = frozenset(tokenizer.seg_token_ids)
        self.max_new_tokens = max_new_tokens
        self.logits_processor = logits_processor
        self.on_text = on_text
        self.should_stop = should_stop
        self.on_token = on_token
        self.detokenizer = tokenizer.streaming_detokenizer(skip_special=True) if on_text is not None else None
        self.history = processor_ids(prompt_ids, tokenizer.pad_id, device) if logits_processor is not None else None
        self.tokens: list[int] = []
        self.seg_positions: list[int] = []
        self.seg_states: list[torch.Tensor] = []
        self.num_generated = 0
        self.token: int | None = None  # picked, not yet fed to the model
        self.reason: FinishReason | None = None
        self.error: BaseException | None = None
        self.stop_asked = False  # by its should_stop, or by BatchSession.cancel
        self.started = 0.0
        self.first_token_s = 0.0
        self.total_s = 0.0
        self.batch_rows = 0

    @property
    def done(self) -> bool:
        return self.reason is not None or self.error is not None

    def poll_stop(self) -> bool:
        """Cancelled, or its should_stop says so (then it ends as "stopped"; a should_stop that
        raises ends it with that error)."""
        if not self.stop_asked and self.should_stop is not None:
            try:
                self.stop_asked = bool(self.should_stop())
            except Exception as exc:  # noqa: BLE001 - the caller's, handed back as this answer's outcome
                self.error = exc
                return True
        if self.stop_asked:
            self.reason = self.reason or "stopped"
        return self.stop_asked

    def take(self, logits: torch.Tensor, hidden: torch.Tensor | None = None) -> None:
        """Pick and record the next token from (1, V) logits; ``hidden`` (1, H) is the state that
        predicted it (kept when it is a seg token; None: the caller collects the states itself)."""
        try:
            scores = logits.float()
            if self.logits_processor is not None:
                scores = self.logits_processor(self.history, scores)
            token = int(scores.argmax(dim=-1).item())
        except Exception as exc:  # noqa: BLE001 - this answer's own logits hook
            self.error = model_failure(exc, "the logits_processor raised ")
            return
        if hidden is not None and token in self.seg_ids:
            self.seg_states.append(hidden[0])
        self.num_generated += 1
        self.token = token
        try:
            if self.on_token is not None:
                self.on_token(self.num_generated)
            self.reason = self._accept(token)
        except Exception as exc:  # noqa: BLE001 - the caller's on_token / on_text
            self.error = exc

    def _accept(self, token: int) -> FinishReason | None:
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

    def end(self) -> None:
        """Generation is over: the time it took, and the text the detokenizer still held."""
        self.total_s = time.perf_counter() - self.started if self.started else 0.0
        if self.error is None and self.detokenizer is not None:
            try:
                rest = self.detokenizer.flush()
                if rest:
                    self.on_text(rest)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - the caller's on_text
                self.error = exc


class Decoding:
    """Answers generated together on one KV decoder: their prefill, then one token for all per step.

    running: the streams being decoded, in the decoder's row order.
    """

    def __init__(self, lm: LlamaForCausalLM, decoder: KVDecoder) -> None:
        self.lm = lm
        self.decoder = decoder
        self.device = lm.lm_head.weight.device
        self.running: list[TokenStream] = []

    def prefill(self, streams: Sequence[TokenStream], embeds: Sequence[torch.Tensor],
                masks: Sequence[torch.Tensor]) -> list[TokenStream]:
        """Start ``streams`` (their spliced prompts embeds n x (T_i, H), masks n x (T_i,)): one prefill,
        each picks its first token. Returns those that ended at it (the others run on)."""
        if self.running and not self.decoder.takes_joins:
            raise RuntimeError("this decoder takes no rows once a batch runs")
        start = time.perf_counter()
        hidden = self.decoder.prefill(embeds, masks)
        logits = self.lm.lm_head(hidden)
        for index, stream in enumerate(streams):
            stream.started = start
            stream.batch_rows = max(stream.batch_rows, len(streams))
            stream.take(logits[index : index + 1], hidden[index : index + 1])
            stream.first_token_s = time.perf_counter() - start
        self.running.extend(streams)
        return self._drop_done()

    def decode_one_token(self) -> list[TokenStream]:
        """Poll every running answer's stop, then one forward pass: one token each. Returns the
        answers that ended in this step."""
        stopped = [stream for stream in self.running if stream.poll_stop()]
        ended = self._drop_done() if stopped else []
        if not self.running:
            return ended
        rows = len(self.running)
        tokens = torch.tensor([stream.token for stream in self.running], dtype=torch.long, device=self.device)
        hidden, logits = self.decoder.step(tokens)
        for index, stream in enumerate(self.running):
            stream.batch_rows = max(stream.batch_rows, rows)
            if rows == 1:
                stream.take(logits, hidden)
            else:
                stream.take(logits[index : index + 1], hidden[index : index + 1])
        return ended + self._drop_done()

    def reset(self) -> None:
        """Forget every running answer (after a failure of the model)."""
        self.running = []
        self.decoder.reset()

    def _drop_done(self) -> list[TokenStream]:
        done = [stream for stream in self.running if stream.done]
        if not done:
            return []
        keep = [index for index, stream in enumerate(self.running) if not stream.done]
        self.decoder.keep(keep)
        self.running = [self.running[index] for index in keep]
        for stream in done:
            stream.end()
        return done


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

    @classmethod
    def of(cls, stream: TokenStream, hidden_size: int, device: torch.device) -> GenerationOutput:
        """The output of an ended stream; its error (a callback's, or a model failure) is raised."""
        if stream.error is not None:
            raise stream.error
        states = stream.seg_states
        seg_hidden = torch.stack(states) if states else torch.zeros((0, hidden_size), device=device)
        return cls(stream.tokens, seg_hidden, stream.seg_positions, stream.reason or "stopped",
                   stream.num_generated, stream.first_token_s, stream.total_s)


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
    decoder: KVDecoder | None = None,
) -> GenerationOutput:
    """One answer, greedy and KV-cached: a batch of one through ``Decoding``.

    prompt_ids: P ids with exactly one IMAGE_TOKEN_INDEX; feats: the image's features (batch 1).
    decoder: the KV decoder to use (default: a fresh DynamicKVDecoder; a static one is cleared by
    its prefill, so one can serve many answers).
    """
    lm = model.language_model
    device = lm.lm_head.weight.device
    stream = TokenStream(tokenizer, prompt_ids, device, max_new_tokens, logits_processor, on_text, should_stop)
    decoding = Decoding(lm, decoder if decoder is not None else DynamicKVDecoder(lm))
    stream.started = time.perf_counter()
    if stream.poll_stop():  # polled before the prefill too
        stream.end()
    else:
        ids = torch.tensor([stream.prompt_ids], dtype=torch.long, device=device)
        embeds, attention = model.embed_prompt(ids, feats)
        ended = decoding.prefill([stream], [embeds[0]], [attention[0]])
        while not ended:
            ended = decoding.decode_one_token()
    return GenerationOutput.of(stream, lm.config.hidden_size, device)


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
    """
    lm = model.language_model
    device = lm.lm_head.weight.device
    stream = TokenStream(tokenizer, prompt_ids, device, max_new_tokens, logits_processor)
    features = decode_research_style(model, stream, pixel_values, valid_hw)
    return GenerationOutput.of(stream, lm.config.hidden_size, device), features


def decode_research_style(
    model: PixelLMForCausalLM, stream: TokenStream, pixel_values: torch.Tensor, valid_hw: tuple[int, int]
) -> ImageFeatures:
    """Run ``stream`` the released code's way (see generate_research_style): its tokens, and its
    seg states taken from the last step's full pass at the positions just before each seg token,
    as the released code does. Returns the image features of the last step."""
    stream.started = time.perf_counter()
    lm = model.language_model
    device = lm.lm_head.weight.device
    hidden = None
    feats = None
    while not stream.done:
        feats = model.encode_images(pixel_values, [valid_hw])
        ids = torch.tensor([stream.prompt_ids + stream.tokens], dtype=torch.long, device=device)
        embeds, attention = model.embed_prompt(ids, feats)
        hidden = llm_states(lm, embeds, attention)
        stream.take(lm.lm_head(hidden[:, -1]))
        if stream.num_generated == 1:
            stream.first_token_s = time.perf_counter() - stream.started
    assert hidden is not None and feats is not None
    stream.end()
    # Generated token j sits at spliced position P' + j; the state predicting it at P' + j - 1.
    spliced_prompt = hidden.shape[1] - (len(stream.tokens) - (0 if stream.reason == "eos" else 1))
    stream.seg_states = [hidden[0, spliced_prompt + j - 1] for j in stream.seg_positions]
    return feats
