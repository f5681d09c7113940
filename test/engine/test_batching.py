"""Batched generation against batch 1 (fp32, tiny real model): tokens, logits, masks, stops, errors.

Every comparison is with the same request run alone through ``segment``: the generated tokens and
the texts are equal exactly; the raw logits of every step and the mask decoder's low-res logits
agree within 1e-5 (absolute, plus 1e-5 relative for the mask logits; padding, per-row positions and batched matmuls change float rounding only).
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pytest
import torch

from support.engine import rgb_image, scripted
from support.tiny_models import build_tiny_model
from pixellm_ros.engine import (
    EngineError,
    InvalidImageError,
    InvalidInputError,
    InvalidInstructionError,
    InvalidOptionError,
    PixelLMEngine,
    SegmentationResult,
)
from pixellm_ros.engine.decoders import DynamicKVDecoder, step_attention
from pixellm_ros.engine.batching import BatchRequest, BatchSession

GROUP = "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]"
TOLERANCE = 1e-5


class Recorder:
    """A logits hook that records the raw scores of every step and the token finally chosen,
    around an inner hook (the scripted answer)."""

    def __init__(self, inner: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.inner = inner
        self.scores: list[torch.Tensor] = []
        self.tokens: list[int] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.scores.append(scores[0].clone())
        out = self.inner(input_ids, scores) if self.inner is not None else scores
        self.tokens.append(int(out.argmax(dim=-1)))
        return out


@pytest.fixture()
def decoder_logits(engine: PixelLMEngine) -> Iterator[list[torch.Tensor]]:
    """The low-res logits of every mask-decoder pass, in call order."""
    calls: list[torch.Tensor] = []
    handle = engine.model.mask_decoder.register_forward_hook(lambda _m, _i, out: calls.append(out[0].detach().clone()))
    yield calls
    handle.remove()


def mixed_requests(engine: PixelLMEngine) -> list[tuple[str, list, int, np.ndarray]]:
    """Prompts of different lengths, answers ending at different steps (eos at 3 points, two
    max_new_tokens limits, the model's own tokens), three images, one of them shared."""
    eos = engine.tokenizer.eos_id
    shared = rgb_image(45, 120, seed=1)
    return [
        ("Segment the red cup and the blue block on the table, please.",
         [f"Sure, the red cup {GROUP} and the blue block {GROUP}.", eos], 60, shared),
        ("Where?", ["the apple", GROUP, eos], 40, rgb_image(60, 40, seed=2)),
        ("find every bottle on the shelf", [f"the bottle {GROUP} and"], 13, rgb_image(30, 30, seed=3)),
        ("Show me the tools.", [], 20, shared),  # the random model's own tokens up to the limit
        ("What can I use to drink hot coffee?", ["the mug", eos], 40, rgb_image(50, 70, seed=4)),
    ]


def requests_with_recorders(engine: PixelLMEngine, cases) -> tuple[list[BatchRequest], list[Recorder]]:  # type: ignore[no-untyped-def]
    recorders = [Recorder(scripted(engine, instruction, script)) for instruction, script, _, _ in cases]
    requests = [
        BatchRequest(image, instruction, limit, logits_processor=recorder)
        for (instruction, _, limit, image), recorder in zip(cases, recorders)
    ]
    return requests, recorders


def alone(engine: PixelLMEngine, request: BatchRequest, **kwargs: object) -> SegmentationResult:
    return engine.segment(request.image, request.instruction, request.max_new_tokens,
                          logits_processor=request.logits_processor, **kwargs)  # type: ignore[arg-type]


def assert_same_answer(single: SegmentationResult, batched: SegmentationResult) -> None:
    assert isinstance(batched, SegmentationResult), batched
    assert batched.text == single.text
    assert batched.generated_tokens == single.generated_tokens
    assert batched.finish_reason == single.finish_reason and batched.stopped == single.stopped
    assert [t.name for t in batched.targets] == [t.name for t in single.targets]
    for a, b in zip(single.targets, batched.targets):
        assert a.mask.shape == b.mask.shape == single.image_hw
        # thresholded at 0: a pixel whose logit sits within float noise of 0 may flip
        assert np.count_nonzero(a.mask != b.mask) <= 2
        assert b.score == pytest.approx(a.score, abs=TOLERANCE)


def assert_same_steps(single: Recorder, batched: Recorder) -> None:
    assert batched.tokens == single.tokens
    assert len(batched.scores) == len(single.scores)
    for a, b in zip(single.scores, batched.scores):
        torch.testing.assert_close(b, a, atol=TOLERANCE, rtol=0)


def test_batch_equals_batch_one_for_mixed_prompts_and_answer_lengths(engine: PixelLMEngine, decoder_logits) -> None:  # type: ignore[no-untyped-def]
    cases = mixed_requests(engine)
    single_requests, single_recorders = requests_with_recorders(engine, cases)
    singles = [alone(engine, request) for request in single_requests]
    single_passes = list(decoder_logits)
    decoder_logits.clear()
    engine.clear_cache()

    batch_requests, batch_recorders = requests_with_recorders(engine, cases)
    batched = engine.segment_batch(batch_requests)

    assert len({len(engine.prompt_ids(c[0])) for c in cases}) == len(cases)  # prompts of different lengths
    assert len({r.generated_tokens for r in singles}) >= 4  # the answers end at different steps
    assert {r.finish_reason for r in singles} == {"eos", "length"}
    for single, result, a, b in zip(singles, batched, single_recorders, batch_recorders):
        assert_same_answer(single, result)
        assert_same_steps(a, b)
        assert result.timings["batch_rows"] == len(cases)
    # All targets of the batch in ONE decoder pass, each on its own image, equal to batch 1's logits.
    assert len(decoder_logits) == 1
    expected = torch.cat([p for p in single_passes])
    assert decoder_logits[0].shape == expected.shape == (4, *expected.shape[1:])
    torch.testing.assert_close(decoder_logits[0], expected, atol=TOLERANCE, rtol=TOLERANCE)


def test_the_distinct_uncached_images_of_a_batch_go_through_the_vision_tower_once(engine: PixelLMEngine) -> None:
    calls: list[int] = []
    handle = engine.model.vision_tower.register_forward_hook(lambda _m, inputs, _o: calls.append(int(inputs[0].shape[0])))
    try:
        cached = rgb_image(40, 40, seed=7)
        engine.segment(cached, "find it", max_new_tokens=2)
        new, other = rgb_image(40, 60, seed=8), rgb_image(20, 40, seed=9)
        results = engine.segment_batch([BatchRequest(img, "find it", 3) for img in (new, cached, new.copy(), other)])
    finally:
        handle.remove()
    assert calls == [1, 2]  # the single query, then one pass over the batch's two new images
    assert [r.vision_cached for r in results] == [False, True, False, False]
    assert [r.image_hw for r in results] == [(40, 60), (40, 40), (40, 60), (20, 40)]


def test_a_cancelled_row_leaves_the_batch_and_the_others_go_on_undisturbed(engine: PixelLMEngine) -> None:
    cases = mixed_requests(engine)[:3]
    single_requests, single_recorders = requests_with_recorders(engine, cases)
    singles = [alone(engine, request) for request in single_requests]
    stopped_alone = alone(engine, requests_with_recorders(engine, cases)[0][0], should_stop=_stop_after(4))

    batch_requests, batch_recorders = requests_with_recorders(engine, cases)
    batch_requests[0].should_stop = _stop_after(4)
    batched = engine.segment_batch(batch_requests)

    first = batched[0]
    assert first.stopped and first.finish_reason == "stopped" and first.generated_tokens == 4
    assert first.text == stopped_alone.text and singles[0].text.startswith(first.text) and first.text
    assert first.targets == []
    for single, result, a, b in zip(singles[1:], batched[1:], single_recorders[1:], batch_recorders[1:]):
        assert_same_answer(single, result)
        assert_same_steps(a, b)


def _stop_after(polls: int) -> Callable[[], bool]:
    count = [0]

    def should_stop() -> bool:
        count[0] += 1
        return count[0] > polls

    return should_stop


def test_a_bad_request_is_refused_alone_before_the_batch_runs(engine: PixelLMEngine) -> None:
    good = mixed_requests(engine)[1]
    request, recorder = requests_with_recorders(engine, [good])
    single = alone(engine, request[0])
    engine.clear_cache()
    batch_requests, batch_recorders = requests_with_recorders(engine, [good, good])
    bad = [
        BatchRequest(np.zeros((20, 20, 4), dtype=np.uint8), "find it"),
        BatchRequest(rgb_image(20, 20), "   "),
        BatchRequest(rgb_image(20, 20), "find it", max_new_tokens=0),
    ]
    calls: list[int] = []
    handle = engine.model.vision_tower.register_forward_hook(lambda _m, inputs, _o: calls.append(int(inputs[0].shape[0])))
    try:
        outcomes = engine.segment_batch([bad[0], batch_requests[0], bad[1], bad[2], batch_requests[1]])
    finally:
        handle.remove()
    kinds = [InvalidImageError, SegmentationResult, InvalidInstructionError, InvalidOptionError, SegmentationResult]
    assert [type(o) for o in outcomes] == kinds  # each bad request with the exception of its own kind
    assert "shape" in str(outcomes[0]) and "empty" in str(outcomes[2]) and "max_new_tokens" in str(outcomes[3])
    assert calls == [1]  # only the good requests' (one shared) image was encoded
    for result, rec in zip((outcomes[1], outcomes[4]), batch_recorders):
        assert_same_answer(single, result)
        assert_same_steps(recorder[0], rec)


def test_on_text_streams_per_row_and_each_concatenates_to_its_own_text(engine: PixelLMEngine) -> None:
    cases = mixed_requests(engine)
    requests, _ = requests_with_recorders(engine, cases)
    pieces: list[list[str]] = [[] for _ in requests]
    for request, sink in zip(requests, pieces):
        request.on_text = sink.append
    results = engine.segment_batch(requests)
    assert len({r.text for r in results}) == len(results)
    for result, sink in zip(results, pieces):
        assert "".join(sink) == result.text
    assert all(len(sink) >= 2 for sink in pieces)


def test_a_callback_exception_is_that_requests_outcome_only(engine: PixelLMEngine) -> None:
    class Boom(Exception):
        pass

    def explode(_: str) -> None:
        raise Boom("from on_text")

    cases = mixed_requests(engine)[:3]
    single_requests, _ = requests_with_recorders(engine, cases)
    singles = [alone(engine, request) for request in single_requests]
    requests, _ = requests_with_recorders(engine, cases)
    requests[1].on_text = explode
    requests[2].should_stop = lambda: 1 / 0 > 0  # type: ignore[assignment, operator]
    outcomes = engine.segment_batch(requests)
    assert isinstance(outcomes[1], Boom) and isinstance(outcomes[2], ZeroDivisionError)
    assert_same_answer(singles[0], outcomes[0])  # type: ignore[arg-type]


def test_a_model_failure_answers_every_request_of_the_batch_and_the_engine_goes_on(engine_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model = build_tiny_model(len(engine_tokenizer), seed=3)
    engine = PixelLMEngine(model, engine_tokenizer)
    requests = [BatchRequest(rgb_image(30, 30, seed=s), "find the cup", 5) for s in range(3)]
    requests.append(BatchRequest(rgb_image(30, 30), ""))  # refused alone, whatever the model does
    mlp = model.language_model.model.layers[1].mlp
    weight = mlp.down_proj.weight
    mlp.down_proj.weight = torch.nn.Parameter(torch.zeros(3, 3))  # a real shape error inside the model
    try:
        outcomes = engine.segment_batch(requests)
    finally:
        mlp.down_proj.weight = weight
    assert [type(o) for o in outcomes[:3]] == [EngineError] * 3
    assert all("the model failed" in str(o) for o in outcomes[:3])
    assert isinstance(outcomes[3], InvalidInputError)
    again = engine.segment_batch(requests[:3])
    assert all(isinstance(o, SegmentationResult) and o.generated_tokens == 5 for o in again)


def test_requests_joining_a_running_batch_get_their_batch_one_answers(engine: PixelLMEngine) -> None:
    """Continuous batching: rows added between steps are merged into the running cache (left
    padding to the longer of the two), rows that finish leave it; every answer is batch 1's."""
    cases = mixed_requests(engine)
    single_requests, single_recorders = requests_with_recorders(engine, cases)
    singles = [alone(engine, request) for request in single_requests]
    engine.clear_cache()

    requests, recorders = requests_with_recorders(engine, cases)
    session = engine.batch_session(max_batch=3)
    tickets = {session.add(requests[0]): 0, session.add(requests[1]): 1}
    outcomes: dict[int, object] = {}
    joined_at: dict[int, int] = {}
    step = 0
    waiting = [2, 3, 4]
    while not session.idle or waiting:
        # the third joins at step 5; the others as soon as a slot is free
        while waiting and session.free_slots and (step >= 5 or waiting[0] != 2):
            index = waiting.pop(0)
            tickets[session.add(requests[index])] = index
            joined_at[index] = step
        if session.idle:
            step += 1
            continue
        for ticket, outcome in session.step():
            outcomes[tickets[ticket]] = outcome
        assert len(session) <= 3
        step += 1
    assert joined_at[2] == 5 and joined_at[3] > 5
    for index, single in enumerate(singles):
        assert_same_answer(single, outcomes[index])  # type: ignore[arg-type]
        assert_same_steps(single_recorders[index], recorders[index])
    with pytest.raises(RuntimeError, match="max_batch"):
        full = engine.batch_session(max_batch=1)
        full.add(requests[0])
        full.add(requests[1])


def test_session_cancel_by_ticket(engine: PixelLMEngine) -> None:
    session = engine.batch_session()
    keep = session.add(BatchRequest(rgb_image(30, 30), "find the cup", 6))
    drop = session.add(BatchRequest(rgb_image(30, 30, seed=1), "find the bowl", 6))
    outcomes = dict(session.step())  # prefill (first token) and one decode step: 2 tokens each
    session.cancel(drop)
    while not session.idle:
        outcomes.update(session.step())
    assert outcomes[drop].stopped and outcomes[drop].generated_tokens == 2  # type: ignore[union-attr]
    assert outcomes[keep].generated_tokens == 6 and not outcomes[keep].stopped  # type: ignore[union-attr]


@pytest.mark.parametrize("count", [2, 5])  # 5 rows run on a decoder of 8: three idle rows
def test_a_static_mode_batch_runs_on_a_static_decoder_and_equals_batch_one(  # type: ignore[no-untyped-def]
    tiny_model, engine_tokenizer, count: int
) -> None:
    dynamic = PixelLMEngine(tiny_model, engine_tokenizer)
    static = PixelLMEngine(tiny_model, engine_tokenizer, decode_mode="static")
    cases = mixed_requests(dynamic)[:count]
    single_requests, single_recorders = requests_with_recorders(dynamic, cases)
    singles = [alone(dynamic, request) for request in single_requests]
    batch_requests, batch_recorders = requests_with_recorders(static, cases)
    batched = static.segment_batch(batch_requests)
    for single, result, a, b in zip(singles, batched, single_recorders, batch_recorders):
        assert_same_answer(single, result)
        assert_same_steps(a, b)
        assert result.warnings == single.warnings  # no "ran on the dynamic cache" warning
    (size, rows), decoder = next(reversed(static._static_decoders.items()))
    assert rows == decoder.rows == (2 if count == 2 else 8) and decoder.cache.layers[0].keys.shape[0] == rows
    (one,) = static.segment_batch(batch_requests[:1])  # a batch of one: segment()'s static path
    assert one.text == singles[0].text
    static.static_batch_rows = 4  # as a node with max_batch 4 sets it: batches of 2-4 on 4 rows
    if count == 2:
        again, _ = requests_with_recorders(static, cases)
        for single, result in zip(singles, static.segment_batch(again)):
            assert_same_answer(single, result)
        (size, rows), decoder = next(reversed(static._static_decoders.items()))
        assert rows == decoder.rows == 4


def test_a_static_batch_lets_a_row_stop_early_and_takes_no_joins(tiny_model, engine_tokenizer) -> None:  # type: ignore[no-untyped-def]
    static = PixelLMEngine(tiny_model, engine_tokenizer, decode_mode="static")
    dynamic = PixelLMEngine(tiny_model, engine_tokenizer)
    cases = mixed_requests(dynamic)[:3]
    requests, _ = requests_with_recorders(static, cases)
    polls = {"n": 0}

    def stop_at_third_poll() -> bool:
        polls["n"] += 1
        return polls["n"] >= 3

    requests[1] = BatchRequest(requests[1].image, requests[1].instruction, requests[1].max_new_tokens,
                               logits_processor=requests[1].logits_processor, should_stop=stop_at_third_poll)
    results = static.segment_batch(requests)
    assert results[1].stopped and results[1].generated_tokens <= 3
    others, _ = requests_with_recorders(dynamic, cases)
    for index in (0, 2):
        assert_same_answer(alone(dynamic, others[index]), results[index])
    session = BatchSession(static, max_batch=4, static=True)
    session.add(requests[0])
    session.step()
    with pytest.raises(RuntimeError, match="only while it is idle"):
        session.add(requests[2])
    joining = static.batch_session(max_batch=2)  # a session requests join: the dynamic cache, said
    joining.add(requests[0])
    while not joining.idle:
        outcomes = joining.step()
    assert any("dynamic cache" in w for w in outcomes[0][1].warnings)


def test_decode_masks_on_several_images_equals_one_image_at_a_time(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """The model side: targets of several answers, each on its own image's features, in one pass."""
    torch.manual_seed(0)
    size = tiny_model.config.image_size
    pixels = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        feats = tiny_model.encode_images(pixels, [(size, size), (size // 2, size)])
        seg = torch.randn(5 * tiny_model.config.seg_tokens_per_target, tiny_model.config.hidden_size)
        index = torch.tensor([1, 0, 1, 1, 0])
        together = tiny_model.masks_from_hidden_states(seg, feats.decoder_features, index)
        prompts = tiny_model.seg_prompts(seg)
        for image in (0, 1):
            rows = (index == image).nonzero()[:, 0]
            alone_out = tiny_model.decode_masks(feats.sample(image).decoder_features, prompts[rows])
            torch.testing.assert_close(together.low_res_logits[rows], alone_out.low_res_logits, atol=TOLERANCE, rtol=0)
            torch.testing.assert_close(together.iou_scores[rows], alone_out.iou_scores, atol=TOLERANCE, rtol=0)


def test_rows_that_end_at_their_first_token_leave_before_the_first_step(engine: PixelLMEngine) -> None:
    eos = engine.tokenizer.eos_id
    cases = [("find it", [], 1, rgb_image(30, 30, seed=1)),  # max_new_tokens 1
             ("Where is the cup?", [eos], 20, rgb_image(30, 30, seed=2)),  # end of sequence first
             *mixed_requests(engine)[:2]]
    single_requests, single_recorders = requests_with_recorders(engine, cases)
    singles = [alone(engine, request) for request in single_requests]
    requests, recorders = requests_with_recorders(engine, cases)
    batched = engine.segment_batch(requests)
    assert [r.generated_tokens for r in batched[:2]] == [1, 1]
    assert batched[0].finish_reason == "length" and batched[1].finish_reason == "eos" and batched[1].text == ""
    for single, result, a, b in zip(singles, batched, single_recorders, recorders):
        assert_same_answer(single, result)
        assert_same_steps(a, b)


def test_an_image_too_thin_to_resize_is_refused_alone_not_failing_the_batch(engine: PixelLMEngine) -> None:
    good = rgb_image(48, 64, seed=1)
    thin = np.zeros((1, 4000, 3), dtype=np.uint8)
    outcomes = engine.segment_batch([BatchRequest(thin, "segment the cup", max_new_tokens=8),
                                     BatchRequest(good, "segment the cup", max_new_tokens=8)])
    assert isinstance(outcomes[0], InvalidImageError) and "too thin" in str(outcomes[0])
    assert isinstance(outcomes[1], SegmentationResult)


def test_a_batched_bfloat16_step_on_the_cpu_runs_eager_attention_and_agrees_with_each_row_alone() -> None:
    assert step_attention(torch.device("cpu"), torch.bfloat16, 4) == "eager"
    assert step_attention(torch.device("cpu"), torch.bfloat16, 1) is None  # one row: SDPA is faster
    assert step_attention(torch.device("cpu"), torch.float32, 4) is None  # float32: no difference measured
    assert step_attention(torch.device("cuda"), torch.bfloat16, 4) is None
    lm = build_tiny_model(vocab_size=64).to(torch.bfloat16).language_model
    assert lm.config._attn_implementation == "sdpa"
    seen: list[str] = []
    handle = lm.model.layers[0].self_attn.register_forward_pre_hook(
        lambda module, _args: seen.append(module.config._attn_implementation))
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randn(n, lm.config.hidden_size, generator=generator).to(torch.bfloat16) for n in (9, 5, 7)]
    masks = [torch.ones(9, dtype=torch.long), torch.ones(5, dtype=torch.long), torch.tensor([1, 1, 0, 0, 1, 1, 1])]
    tokens = torch.tensor([3, 4, 5])
    with torch.inference_mode():
        batch = DynamicKVDecoder(lm)
        batch.prefill(prompts, masks)
        _, together = batch.step(tokens)
        assert seen == ["sdpa", "eager"] and lm.config._attn_implementation == "sdpa"  # set back after the step
        for row in range(3):  # each row alone: one row, SDPA (the model's own)
            single = DynamicKVDecoder(lm)
            single.prefill([prompts[row]], [masks[row]])
            _, alone_logits = single.step(tokens[row : row + 1])
            torch.testing.assert_close(together[row].float(), alone_logits[0].float(), atol=0.05, rtol=0.02)
    assert seen[2:] == ["sdpa", "sdpa"] * 3
    handle.remove()
