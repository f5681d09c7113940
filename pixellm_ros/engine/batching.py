"""Requests decoded together in one KV-cached batch: the engine's one way to answer.

``PixelLMEngine.segment`` is ``segment_batch`` of one request, and ``segment_batch`` runs a
``BatchSession`` until it is idle (SAM's ``predict`` -> ``predict_torch``). A session holds the
requests of one batch and drives one generation loop over them (generation.Decoding):

    session = engine.batch_session(max_batch=8)
    ticket = session.add(BatchRequest(image, instruction, on_text=..., should_stop=...))
    while not session.idle:
        for ticket, outcome in session.step():   # SegmentationResult or the request's exception
            ...
        # new requests may be added between steps: they join the running batch (continuous batching)

One ``step()``: the requests added since the last step are admitted (their should_stop polled; their
distinct, uncached images through the vision tower in one pass; their prompts prefilled as one
left-padded batch, merged into the running cache, their first token picked); then every running
row's ``should_stop`` is polled and one token is decoded for all rows in one forward pass. Each row
stops on its own (end of sequence, its own max_new_tokens, its should_stop, an exception from its
own callbacks or logits hook) and leaves the cache at once; the others go on undisturbed. At the
end of a step the rows that finished in it get their results (engine.finish: every target of every
such row in ONE decoder pass, each on its own image's features, post-processed to its own size).

Errors stay per request: ``add`` validates the request (image, instruction, limit) and raises
InvalidInputError for it alone, before it touches the batch; an exception from a request's
on_text / on_token / should_stop is that request's outcome, unchanged; a failure of the model itself
answers every request of the session with an EngineError and leaves the session empty and usable.

Continuous batching, measured (benchmarks/bench_batching.py part 3, CPU, mid-size model, 12 requests
arriving at 4 per single-answer time): joining the running batch at the next step against starting
a new batch when the current one ends gives 1.14-1.17x the throughput and 0.84-0.93x the p90 latency,
at 1.05-1.09x the mean latency (a joining request's prefill, compute bound on a CPU, stalls the
running rows for ~15 steps). Not a clear win on the CPU; kept, since it costs one merge in the
cache and the worker chooses: add only while ``idle`` for static batches, any time to join.

The KV decoder (decoders.py) follows the engine's decode_mode. "dynamic": a DynamicKVDecoder, rows
join and leave. "static", "cuda_graph", "compiled": a session made with ``static=True`` (what
``segment`` and ``segment_batch`` run: every request added before the first step, none joining)
decodes each batch on the engine's kept static decoder of its row count and cache size (rows = the
next power of two; one captured graph per row count and cache size), so on a GPU a batch of any
size, one included, replays one graph per token. A session that lets requests join
(``engine.batch_session``) decodes on the dynamic cache in every mode and says so in each result's
warnings.
"""

from __future__ import annotations

import itertools
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np
import torch

from .decoders import KVDecoder
from .errors import model_failure
from .features import EncodedImage
from .finishing import Answer, BatchOutcome, synchronize
from .generation import Decoding, LogitsProcessor, TokenStream

if TYPE_CHECKING:
    from pixellm_ros.model import PixelLMForCausalLM


@dataclass
class BatchRequest:
    """One request: what ``PixelLMEngine.segment`` takes, as one object.

    image: (H, W, 3) uint8 RGB; instruction: str; max_new_tokens: None = the engine's default.
    on_text: gets this request's answer text piece by piece (the pieces concatenate to its text).
    should_stop: polled before each forward pass that would include this request; True ends it alone
        (result.stopped, the text so far kept, complete seg groups still get masks).
    logits_processor: this request's logits hook (default: the engine's), called with its own
        (1, P + t) ids and (1, V) scores exactly as at batch 1.
    on_token: called once per generated token with the number generated so far (end of sequence
        included), before that token's text goes to on_text.
    """

    image: np.ndarray
    instruction: str
    max_new_tokens: int | None = None
    on_text: Callable[[str], None] | None = None
    should_stop: Callable[[], bool] | None = None
    logits_processor: LogitsProcessor | None = None
    on_token: Callable[[int], None] | None = None


class SessionEngine(Protocol):
    """What a BatchSession uses of the engine: its public interface (``engine.PixelLMEngine``
    implements it; spelled out here because engine.py imports this module)."""

    decode_mode: str

    @property
    def model(self) -> PixelLMForCausalLM: ...

    @property
    def lock(self) -> AbstractContextManager: ...

    def prepare(self, request: BatchRequest, ticket: int = 0) -> Answer: ...

    def encode_images(self, images: Sequence[np.ndarray]) -> list[tuple[EncodedImage, bool]]: ...

    def kv_decoder(self, positions: int, rows: int = 1, static: bool = True) -> KVDecoder: ...

    def finish(self, answers: Sequence[Answer]) -> list[BatchOutcome]: ...


class BatchSession:
    """Rows decoded together; requests may join between steps. Not thread-safe: one thread (the
    node's worker) calls add / step; each step holds the engine's lock.

    max_batch: the most requests in the session at once (waiting for admission + running).
    defer_masks: keep finished rows until ``flush()`` and decode all their masks in one pass
        (segment_batch does this); otherwise each step decodes the rows that finished in it.
    static: in a static / CUDA-graph decode_mode, decode on the engine's static batch decoder:
        requests are added only while the session is idle (a static batch takes no joins).
    """

    def __init__(self, engine: SessionEngine, max_batch: int = 8, defer_masks: bool = False,
                 static: bool = False) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
        self._engine = engine
        self.max_batch = max_batch
        self.defer_masks = defer_masks
        self.static = static and engine.decode_mode != "dynamic"
        # A dynamic session keeps one decoding (rows join it); a static one starts one per batch.
        self._decoding: Decoding | None = None if self.static else self._new_decoding(0, 1)
        self._pending: list[Answer] = []
        self._answers: dict[int, Answer] = {}  # id(stream) -> its answer, while it runs
        self._finished: list[Answer] = []  # generation ended, result not handed out yet
        self._rows: dict[int, Answer] = {}  # every request not answered yet, by ticket
        self._tickets = itertools.count()

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        """Requests in the session: waiting for the next step or being decoded (not finished)."""
        return len(self._pending) + len(self._answers)

    @property
    def free_slots(self) -> int:
        return self.max_batch - len(self)

    @property
    def idle(self) -> bool:
        """Nothing to decode and no finished row waiting for ``flush()``."""
        return not self._pending and not self._answers and not self._finished

    @property
    def tickets(self) -> list[int]:
        """Tickets of the requests in the session (waiting or running), in order of admission."""
        running = [self._answers[id(stream)].ticket for stream in self._decoding.running] if self._decoding else []
        return running + [answer.ticket for answer in self._pending]

    # ------------------------------------------------------------------ API
    def add(self, request: BatchRequest) -> int:
        """Validate ``request`` and queue it for the next step; returns its ticket.

        Raises InvalidInputError (bad image, instruction or limit: nothing is queued), EngineError
        (the engine was released) or RuntimeError when the session already holds max_batch requests.
        """
        if self.free_slots < 1:
            raise RuntimeError(f"the batch session holds its max_batch={self.max_batch} requests; step() first")
        if self.static and (self._answers or self._finished):
            raise RuntimeError("a static batch session takes requests only while it is idle")
        engine = self._engine
        answer = engine.prepare(request, next(self._tickets))
        if engine.decode_mode != "dynamic" and not self.static:
            answer.warnings.append(
                f"decode_mode {engine.decode_mode!r}: a batch that requests join runs on the dynamic cache")
        self._pending.append(answer)
        self._rows[answer.ticket] = answer
        return answer.ticket

    def cancel(self, ticket: int) -> None:
        """Stop a request at its next poll (as its should_stop would); unknown tickets are ignored."""
        answer = self._rows.get(ticket)
        if answer is not None:
            answer.stream.stop_asked = True

    def step(self) -> list[tuple[int, BatchOutcome]]:
        """Admit the added requests, decode one token for every running row; return the requests
        that ended in this step as (ticket, SegmentationResult or exception), in admission order."""
        outcomes: list[tuple[int, BatchOutcome]] = []
        with self._engine.lock:
            try:
                with torch.inference_mode():
                    ended = self._admit()
                    if self._decoding is not None:
                        ended += self._decoding.decode_one_token()
                    self._finished.extend(self._answers.pop(id(stream)) for stream in ended)
                    if not self.defer_masks:
                        outcomes.extend(self._complete(self._finished))
                        self._finished = []
                    else:  # an error needs no mask: handed out at once
                        failed = [a for a in self._finished if a.stream.error is not None]
                        outcomes.extend((a.ticket, a.stream.error) for a in failed)
                        self._finished = [a for a in self._finished if a.stream.error is None]
            except Exception as exc:  # the model failed: every request of the session gets the error
                outcomes.extend(self._fail_all(exc))
        for ticket, _ in outcomes:
            self._rows.pop(ticket, None)
        return outcomes

    def flush(self) -> list[tuple[int, BatchOutcome]]:
        """Masks for every finished row held back by ``defer_masks``, in one decoder pass."""
        with self._engine.lock:
            try:
                with torch.inference_mode():
                    outcomes = self._complete(self._finished)
            except Exception as exc:
                outcomes = self._fail_all(exc)
        self._finished = []
        for ticket, _ in outcomes:
            self._rows.pop(ticket, None)
        return outcomes

    # ------------------------------------------------------------------ internals
    def _new_decoding(self, positions: int, rows: int) -> Decoding:
        decoder = self._engine.kv_decoder(positions, rows, static=self.static)
        return Decoding(self._engine.model.language_model, decoder)

    def _admit(self) -> list[TokenStream]:
        """Start the pending requests; returns the streams that ended already (stopped before
        their prefill, or at their first token)."""
        answers, self._pending = self._pending, []
        if not answers:
            return []
        engine = self._engine
        model = engine.model
        ended: list[TokenStream] = []
        joining: list[Answer] = []
        for answer in answers:
            self._answers[id(answer.stream)] = answer
            answer.stream.started = time.perf_counter()
            if answer.stream.poll_stop():  # polled before the prefill, as before every forward pass
                answer.stream.end()
                ended.append(answer.stream)
            else:
                joining.append(answer)
        if not joining:
            return ended
        vision_start = time.perf_counter()
        encoded = engine.encode_images([answer.image for answer in joining])
        synchronize(model.device)
        vision_ms = (time.perf_counter() - vision_start) * 1e3
        embeds, masks = [], []
        for answer, (features, cached) in zip(joining, encoded):
            answer.encoded, answer.vision_cached = features, cached
            answer.vision_ms = 0.0 if cached else vision_ms
            ids = torch.tensor([answer.stream.prompt_ids], dtype=torch.long, device=model.device)
            spliced, attention = model.embed_prompt(ids, features.features)
            embeds.append(spliced[0])
            masks.append(attention[0])
        if self.static:  # a fresh static batch: the decoder of its row count and cache size
            width = max(int(e.shape[0]) for e in embeds)
            self._decoding = self._new_decoding(width + max(a.stream.max_new_tokens for a in joining), len(joining))
        assert self._decoding is not None
        return ended + self._decoding.prefill([answer.stream for answer in joining], embeds, masks)

    def _complete(self, answers: list[Answer]) -> list[tuple[int, BatchOutcome]]:
        """Results of finished rows, in admission order (engine.finish: one decoder pass)."""
        answers = sorted(answers, key=lambda answer: answer.ticket)
        return list(zip((answer.ticket for answer in answers), self._engine.finish(answers)))

    def _fail_all(self, exc: Exception) -> list[tuple[int, BatchOutcome]]:
        error = model_failure(exc)
        answers = list(self._rows.values())
        self._finished, self._pending, self._answers = [], [], {}
        if self._decoding is not None:
            self._decoding.reset()
        if self.static:
            self._decoding = None
        return [(a.ticket, a.stream.error if a.stream.error is not None else error) for a in answers]
