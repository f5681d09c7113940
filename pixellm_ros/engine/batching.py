"""Batched generation: several requests (images, instructions, limits) decoded in one KV-cached batch.

A ``BatchSession`` holds the rows of one batch (engine/batch_decoding.py keeps their cache):

    session = engine.batch_session(max_batch=8)
    ticket = session.add(BatchRequest(image, instruction, on_text=..., should_stop=...))
    while not session.idle:
        for ticket, outcome in session.step():   # SegmentationResult or the request's exception
            ...
        # new requests may be added between steps: they join the running batch (continuous batching)

One ``step()``: the requests added since the last step are admitted (their distinct, uncached images
through the vision tower in one pass, their prompts prefilled as one left-padded batch, merged into
the running cache, their first token picked); then every running row's ``should_stop`` is polled and
one token is decoded for all rows in one forward pass. Each row stops on its own (end of sequence,
its own max_new_tokens, its should_stop, an exception from its own callbacks or logits hook) and
leaves the cache at once; the others go on undisturbed. At the end of a step the rows that finished
in it get their masks in ONE decoder pass (every target of every such row, each on its own image's
features), then are post-processed to their own image size.

Errors stay per request: ``add`` validates the request (image, instruction, limit) and raises
InvalidInputError for it alone, before it touches the batch; an exception from a request's
on_text / should_stop is that request's outcome, unchanged; a failure of the model itself answers
every request of the session with an EngineError and leaves the session empty and usable.

Continuous batching, measured (benchmarks/bench_batching.py part 3, CPU, mid-size model, 12 requests
arriving at 4 per single-answer time): joining the running batch at the next step against starting
a new batch when the current one ends gives 1.14-1.17x the throughput and 0.84-0.93x the p90 latency,
at 1.05-1.09x the mean latency (a joining request's prefill, compute bound on a CPU, stalls the
running rows for ~15 steps). Not a clear win on the CPU; kept, since it costs one merge in the
cache and the worker chooses: add only while ``idle`` for static batches, any time to join.

The cache follows the engine's decode_mode. "dynamic": a DynamicCache (BatchKVCache), rows join
and leave. "static", "cuda_graph", "compiled": ``segment_batch`` runs a STATIC batch (a session made
with ``static=True``: every request added before the first step, none joining) on a StaticKVDecoder
of as many rows as the next power of two (StaticBatchKVCache; one captured graph per row count and
cache size), so on a GPU a batch replays one graph per token as batch 1 does; a batch of one runs
``segment``'s own path. A session that lets requests join (``engine.batch_session``) decodes on the
dynamic cache in every mode and says so in each result's warnings.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np
import torch

from .answer import parse_answer
from .callbacks import CallbackFailed, guard
from .errors import EngineError
from .batch_decoding import BatchKVCache, StaticBatchKVCache
from .generation import FinishReason, LogitsProcessor, _TokenSink
from .postprocess import postprocess_masks
from .result import SegmentationResult, Target

from .features import EncodedImage

# The engine (engine.PixelLMEngine) is only passed in: batching.py must not import engine.py, which
# imports batching.py (the import-graph test counts TYPE_CHECKING imports too).
PixelLMEngine = Any

BatchOutcome = Union[SegmentationResult, BaseException]


@dataclass
class BatchRequest:
    """One request of a batch: what ``PixelLMEngine.segment`` takes, as one object.

    image: (H, W, 3) uint8 RGB; instruction: str; max_new_tokens: None = the engine's default.
    on_text: gets this request's answer text piece by piece (the pieces concatenate to its text).
    should_stop: polled before each forward pass that would include this request; True ends it alone
        (result.stopped, the text so far kept, complete seg groups still get masks).
    logits_processor: this request's logits hook (default: the engine's), called with its own
        (1, P + t) ids and (1, V) scores exactly as at batch 1.
    """

    image: np.ndarray
    instruction: str
    max_new_tokens: int | None = None
    on_text: Callable[[str], None] | None = None
    should_stop: Callable[[], bool] | None = None
    logits_processor: LogitsProcessor | None = None


class _Row:
    """One request's state while it is in the session."""

    def __init__(self, ticket: int, request: BatchRequest, image: np.ndarray, prompt_ids: list[int],
                 sink: _TokenSink, warnings: list[str], added: float, limit: int) -> None:
        self.ticket = ticket
        self.limit = limit
        self.image = image
        self.prompt_ids = prompt_ids
        self.sink = sink
        self.should_stop = guard(request.should_stop)
        self.warnings = warnings
        self.added = added
        self.cancelled = False
        self.encoded: EncodedImage | None = None
        self.vision_cached = False
        self.vision_ms = 0.0
        self.generation_start = 0.0
        self.first_token_s = 0.0
        self.generation_s = 0.0
        self.seg_states: list[torch.Tensor] = []
        self.token: int | None = None  # picked, not yet fed to the model
        self.reason: FinishReason | None = None
        self.error: BaseException | None = None
        self.max_rows = 0

    def poll_stop(self) -> bool:
        """Cancelled, or its should_stop says so (a raising should_stop ends the row with its error)."""
        if self.cancelled:
            return True
        if self.should_stop is None:
            return False
        try:
            return bool(self.should_stop())
        except CallbackFailed as failed:
            self.error = failed.original
            return True

    def take(self, hidden: torch.Tensor, logits: torch.Tensor) -> None:
        """Pick and record this row's next token from its (1, H) state and (1, V) logits."""
        try:
            token = self.sink.pick(logits)
        except Exception as exc:  # this request's own logits hook
            self.error = EngineError(f"the model failed: logits_processor raised {type(exc).__name__}: {exc}")
            return
        if token in self.sink.seg_ids:
            self.seg_states.append(hidden[0])  # the state that predicted this seg token
        try:
            self.reason = self.sink.accept(token)
        except CallbackFailed as failed:
            self.error = failed.original
            return
        self.token = token

    @property
    def done(self) -> bool:
        return self.reason is not None or self.error is not None

    def end_generation(self) -> None:
        self.generation_s = time.perf_counter() - self.generation_start if self.generation_start else 0.0
        if self.error is None:
            try:
                self.sink.finish()
            except CallbackFailed as failed:
                self.error = failed.original


class BatchSession:
    """Rows decoded together; requests may join between steps. Not thread-safe: one thread (the
    node's worker) calls add / step; each step holds the engine's lock.

    max_batch: the most requests in the session at once (waiting for admission + running).
    defer_masks: keep finished rows until ``flush()`` and decode all their masks in one pass
        (segment_batch does this); otherwise each step decodes the rows that finished in it.
    static: in a static / CUDA-graph decode_mode, decode on the engine's static batch decoder:
        requests are added only while the session is idle (a static batch takes no joins).
    """

    def __init__(self, engine: PixelLMEngine, max_batch: int = 8, defer_masks: bool = False,
                 static: bool = False) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
        self._engine = engine
        self.max_batch = max_batch
        self.defer_masks = defer_masks
        self.static = static and engine.decode_mode != "dynamic"
        self._cache: BatchKVCache | StaticBatchKVCache = BatchKVCache(engine.model.language_model)
        self._pending: list[_Row] = []
        self._running: list[_Row] = []  # in cache row order
        self._ended: list[_Row] = []  # generation ended in this step
        self._finished: list[_Row] = []  # generation ended, result not handed out yet
        self._rows: dict[int, _Row] = {}  # every request not answered yet, by ticket
        self._tickets = itertools.count()

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        """Requests in the session: waiting for the next step or being decoded (not finished)."""
        return len(self._pending) + len(self._running)

    @property
    def free_slots(self) -> int:
        return self.max_batch - len(self)

    @property
    def idle(self) -> bool:
        """Nothing to decode and no finished row waiting for ``flush()``."""
        return not self._pending and not self._running and not self._finished

    @property
    def tickets(self) -> list[int]:
        """Tickets of the requests in the session (waiting or running), in order of admission."""
        return [row.ticket for row in self._running + self._pending]

    # ------------------------------------------------------------------ API
    def add(self, request: BatchRequest) -> int:
        """Validate ``request`` and queue it for the next step; returns its ticket.

        Raises InvalidInputError (bad image, instruction or limit: nothing is queued), EngineError
        (the engine was released) or RuntimeError when the session already holds max_batch requests.
        """
        if self.free_slots < 1:
            raise RuntimeError(f"the batch session holds its max_batch={self.max_batch} requests; step() first")
        if self.static and (self._running or self._finished):
            raise RuntimeError("a static batch session takes requests only while it is idle")
        engine = self._engine
        image, prompt_ids, limit, warnings = engine._validated(request.image, request.instruction, request.max_new_tokens)
        if engine.decode_mode != "dynamic" and not self.static:
            warnings.append(f"decode_mode {engine.decode_mode!r}: a batch that requests join runs on the dynamic cache")
        processor = request.logits_processor if request.logits_processor is not None else engine.logits_processor
        sink = _TokenSink(engine.tokenizer, prompt_ids, engine.device, limit, processor, guard(request.on_text))
        row = _Row(next(self._tickets), request, image, prompt_ids, sink, warnings, time.perf_counter(), limit)
        self._pending.append(row)
        self._rows[row.ticket] = row
        return row.ticket

    def cancel(self, ticket: int) -> None:
        """Stop a request at its next poll (as its should_stop would); unknown tickets are ignored."""
        for row in self._pending + self._running:
            if row.ticket == ticket:
                row.cancelled = True

    def step(self) -> list[tuple[int, BatchOutcome]]:
        """Admit the added requests, decode one token for every running row; return the requests
        that ended in this step as (ticket, SegmentationResult or exception), in admission order."""
        engine = self._engine
        outcomes: list[tuple[int, BatchOutcome]] = []
        with engine._lock:
            try:
                with torch.inference_mode():
                    self._admit()
                    self._decode_one()
                    for row in self._ended:
                        row.end_generation()
                    self._finished.extend(self._ended)
                    self._ended = []
                    if not self.defer_masks:
                        outcomes.extend(self._complete(self._finished))
                        self._finished = []
                    else:
                        outcomes.extend((row.ticket, row.error) for row in self._finished if row.error is not None)
                        self._finished = [row for row in self._finished if row.error is None]
            except Exception as exc:  # the model failed: every request of the session gets the error
                outcomes.extend(self._fail_all(exc))
        for ticket, _ in outcomes:
            self._rows.pop(ticket, None)
        return outcomes

    def flush(self) -> list[tuple[int, BatchOutcome]]:
        """Masks for every finished row held back by ``defer_masks``, in one decoder pass."""
        with self._engine._lock:
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
    def _admit(self) -> None:
        rows, self._pending = self._pending, []
        if not rows:
            return
        engine = self._engine
        model = engine.model
        now = time.perf_counter()
        joining: list[_Row] = []
        for row in rows:
            row.generation_start = now
            if row.poll_stop():  # polled before the prefill, as at batch 1
                row.reason = "stopped"
                self._ended.append(row)
            else:
                joining.append(row)
        if not joining:
            return
        vision_start = time.perf_counter()
        encoded = engine.encode_images([row.image for row in joining])
        engine._sync()
        vision_ms = (time.perf_counter() - vision_start) * 1e3
        embeds, masks = [], []
        for row, (features, cached) in zip(joining, encoded):
            row.encoded, row.vision_cached = features, cached
            row.vision_ms = 0.0 if cached else vision_ms
            ids = torch.tensor([row.prompt_ids], dtype=torch.long, device=engine.device)
            spliced, attention = model.embed_prompt(ids, features.features)
            embeds.append(spliced[0])
            masks.append(attention[0])
        prefill_start = time.perf_counter()
        if self.static:  # a fresh static batch: the decoder for its row count and cache size
            width = max(int(e.shape[0]) for e in embeds)
            rows = max(len(joining), engine.static_batch_rows or 0) if len(joining) > 1 else 1
            decoder = engine._static_decoder(width + max(row.limit for row in joining), rows=rows)
            self._cache = StaticBatchKVCache(decoder)
        hidden = self._cache.prefill(embeds, masks)
        logits = model.language_model.lm_head(hidden)
        rows_now = self._cache.rows
        for index, row in enumerate(joining):
            row.generation_start = prefill_start
            row.max_rows = max(row.max_rows, len(joining))
            row.take(hidden[index : index + 1], logits[index : index + 1])
            row.first_token_s = time.perf_counter() - prefill_start
        assert rows_now == len(self._running) + len(joining)
        self._running.extend(joining)

    def _decode_one(self) -> None:
        for row in self._running:
            if not row.done and row.poll_stop():
                row.reason = row.reason or "stopped"
        self._drop_done()
        if not self._running:
            return
        tokens = torch.tensor([row.token for row in self._running], dtype=torch.long, device=self._engine.device)
        hidden, logits = self._cache.step(tokens)
        for index, row in enumerate(self._running):
            row.max_rows = max(row.max_rows, len(self._running))
            row.take(hidden[index : index + 1], logits[index : index + 1])
        self._drop_done()

    def _drop_done(self) -> None:
        done = [row for row in self._running if row.done]
        if not done:
            return
        self._ended.extend(done)
        keep = [index for index, row in enumerate(self._running) if not row.done]
        self._cache.keep(keep)
        self._running = [self._running[index] for index in keep]

    def _complete(self, rows: list[_Row]) -> list[tuple[int, BatchOutcome]]:
        """Parse, decode every target of ``rows`` in one pass, post-process each to its image size."""
        engine = self._engine
        model, tokenizer = engine.model, engine.tokenizer
        rows = sorted(rows, key=lambda row: row.ticket)  # admission order, whatever order they ended in
        outcomes: dict[int, BatchOutcome] = {row.ticket: row.error for row in rows if row.error is not None}
        good = [row for row in rows if row.error is None]
        parsed = {row.ticket: parse_answer(row.sink.tokens, tokenizer) for row in good}

        # One decoder pass: every complete group of every row, on its own image's features.
        images: dict[int, int] = {}
        feature_list: list[EncodedImage] = []
        hidden_rows: list[torch.Tensor] = []
        image_index: list[int] = []
        counts: dict[int, int] = {}
        for row in good:
            answer = parsed[row.ticket]
            counts[row.ticket] = len(answer.groups)
            if not answer.groups:
                continue
            assert row.encoded is not None
            key = id(row.encoded)
            if key not in images:
                images[key] = len(feature_list)
                feature_list.append(row.encoded)
            state_of = {position: k for k, position in enumerate(row.sink.seg_positions)}
            for group in answer.groups:
                hidden_rows.extend(row.seg_states[state_of[p]] for p in group.positions)
                image_index.append(images[key])
        decode_start = time.perf_counter()
        logits_all = None
        if hidden_rows:
            features = [
                torch.cat([encoded.features.decoder_features[level] for encoded in feature_list])
                for level in range(model.config.num_scales)
            ]
            index = torch.tensor(image_index, dtype=torch.long, device=features[0].device)
            logits_all = model.masks_from_hidden_states(torch.stack(hidden_rows), features, index).low_res_logits
        engine._sync()
        decoding_ms = (time.perf_counter() - decode_start) * 1e3

        offset = 0
        for row in good:
            answer = parsed[row.ticket]
            count = counts[row.ticket]
            post_start = time.perf_counter()
            if count:
                assert row.encoded is not None and logits_all is not None
                masks = postprocess_masks(logits_all[offset : offset + count], model.config.image_size,
                                          row.encoded.valid_hw, row.encoded.original_hw, engine.mask_threshold)
            else:
                masks = []
            offset += count
            postprocess_ms = (time.perf_counter() - post_start) * 1e3
            sink = row.sink
            decode_steps = sink.num_generated - 1
            decode_s = row.generation_s - row.first_token_s
            timings = {
                "vision_ms": row.vision_ms,
                "prefill_ms": row.first_token_s * 1e3,
                "first_token_ms": row.vision_ms + row.first_token_s * 1e3,
                "generation_ms": row.generation_s * 1e3,
                "decode_tokens_per_s": decode_steps / decode_s if decode_steps > 0 and decode_s > 0 else 0.0,
                "decoding_ms": decoding_ms if count else 0.0,
                "postprocess_ms": postprocess_ms,
                "total_ms": (time.perf_counter() - row.added) * 1e3,
                "batch_rows": float(row.max_rows),
            }
            outcomes[row.ticket] = SegmentationResult(
                text=answer.text,
                targets=[Target(name=name, mask=m.mask, box=m.box, score=m.score) for name, m in zip(answer.names, masks)],
                timings=timings,
                generated_tokens=sink.num_generated,
                warnings=row.warnings + answer.warnings,
                stopped=row.reason == "stopped",
                finish_reason=row.reason or "stopped",
                image_hw=(int(row.image.shape[0]), int(row.image.shape[1])),
                vision_cached=row.vision_cached,
            )
        return [(row.ticket, outcomes[row.ticket]) for row in rows]

    def _fail_all(self, exc: Exception) -> list[tuple[int, BatchOutcome]]:
        error = _model_error(exc)
        rows = list(self._rows.values())
        self._finished, self._ended, self._running, self._pending = [], [], [], []
        self._cache.reset()
        return [(row.ticket, row.error if row.error is not None else error) for row in rows]


def _model_error(exc: Exception) -> EngineError:
    if isinstance(exc, EngineError):
        return exc
    error = EngineError(f"the model failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
