"""PixelLMEngine end to end on a tiny real model: streaming, cancel, feature cache, errors."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pytest
import torch

from pixellm_ros.engine import EngineError, InvalidInputError, PixelLMEngine
from support.engine import rgb_image, scripted

GROUP = "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]"
TWO_TARGETS = [f"Sure, the red cup {GROUP} and the blue block {GROUP}."]


@pytest.fixture()
def count_calls() -> Iterator[Callable[[torch.nn.Module], list[int]]]:
    """count_calls(module) -> a one-element list counting the module's forward calls (hooks removed after)."""
    handles = []

    def attach(module: torch.nn.Module) -> list[int]:
        calls = [0]

        def hook(*_: object) -> None:
            calls[0] += 1

        handles.append(module.register_forward_hook(hook))
        return calls

    yield attach
    for handle in handles:
        handle.remove()


def test_segment_returns_named_targets_at_the_original_size(engine: PixelLMEngine) -> None:
    instruction = "Segment the red cup and the blue block."
    eos = engine.tokenizer.eos_id
    result = engine.segment(
        rgb_image(45, 120), instruction, logits_processor=scripted(engine, instruction, [*TWO_TARGETS, eos])
    )
    assert result.text == "Sure, the red cup and the blue block."
    assert [t.name for t in result.targets] == ["the red cup", "the blue block"]
    for target in result.targets:
        assert target.mask.shape == (45, 120) and target.mask.dtype == bool
        x0, y0, x1, y1 = target.box
        assert 0 <= x0 < x1 <= 120 and 0 <= y0 < y1 <= 45
        ys, xs = np.nonzero(target.mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == target.box
        assert 0.0 <= target.score <= 1.0
    # Two targets of one answer come from different seg states: different masks.
    assert np.any(result.targets[0].mask != result.targets[1].mask)
    assert result.warnings == [] and not result.stopped
    assert set(result.timings) >= {"vision_ms", "generation_ms", "decoding_ms", "prefill_ms", "total_ms"}


def test_all_targets_are_decoded_in_one_decoder_pass(engine: PixelLMEngine, count_calls) -> None:  # type: ignore[no-untyped-def]
    calls = count_calls(engine.model.mask_decoder)
    instruction = "Segment the red cup and the blue block."
    result = engine.segment(rgb_image(40, 40), instruction, max_new_tokens=40,
                            logits_processor=scripted(engine, instruction, TWO_TARGETS))
    assert len(result.targets) == 2
    assert calls[0] == 1


def test_different_instructions_give_different_masks(engine: PixelLMEngine) -> None:
    image = rgb_image(64, 96, seed=5)
    masks = []
    for instruction in ("Segment the red cup.", "Where is the blue block on the shelf?"):
        hook = scripted(engine, instruction, [f"the thing {GROUP}", engine.tokenizer.eos_id])
        (target,) = engine.segment(image, instruction, logits_processor=hook).targets
        masks.append(target.mask)
    # Same scripted answer, same image: only the prompt differs, through the seg hidden state.
    assert np.count_nonzero(masks[0] != masks[1]) > 0


def test_incomplete_seg_group_keeps_the_complete_ones_with_a_warning(engine: PixelLMEngine) -> None:
    instruction = "Segment the cups."
    eos = engine.tokenizer.eos_id
    hook = scripted(engine, instruction, [f"the mug {GROUP} and the glass [SEG0][SEG1][SEG2]", eos])
    result = engine.segment(rgb_image(40, 60), instruction, logits_processor=hook)
    assert [t.name for t in result.targets] == ["the mug"]
    assert len(result.warnings) == 1 and "3/6" in result.warnings[0]
    assert result.text == "the mug and the glass"


def test_streamed_text_concatenates_to_the_final_text(engine: PixelLMEngine) -> None:
    instruction = "Segment the red cup and the blue block."
    pieces: list[str] = []
    # Scripted targets, then the random model's own tokens (byte pieces included) up to the limit.
    result = engine.segment(rgb_image(40, 40), instruction, max_new_tokens=60, on_text=pieces.append,
                            logits_processor=scripted(engine, instruction, TWO_TARGETS, suppress_eos=True))
    assert len(pieces) > 5
    assert "".join(pieces) == result.text
    assert result.text.startswith("Sure, the red cup and the blue block.")


def test_should_stop_ends_generation_early(engine: PixelLMEngine) -> None:
    polls = [0]

    def stop_after_four_polls() -> bool:
        polls[0] += 1
        return polls[0] > 4

    instruction = "Segment the red cup and the blue block."
    result = engine.segment(rgb_image(40, 40), instruction, max_new_tokens=60, should_stop=stop_after_four_polls,
                            logits_processor=scripted(engine, instruction, TWO_TARGETS))
    assert result.stopped and result.finish_reason == "stopped"
    assert result.generated_tokens == 4
    assert result.targets == []


def test_second_query_on_the_same_image_skips_the_vision_tower(engine: PixelLMEngine, count_calls) -> None:  # type: ignore[no-untyped-def]
    calls = count_calls(engine.model.vision_tower)
    image = rgb_image(50, 70, seed=9)
    instruction = "Segment the red cup and the blue block."
    hook = scripted(engine, instruction, TWO_TARGETS)
    first = engine.segment(image, instruction, max_new_tokens=40, logits_processor=hook)
    second = engine.segment(image.copy(), instruction, max_new_tokens=40, logits_processor=hook)
    assert len(first.targets) == 2
    assert calls[0] == 1
    assert not first.vision_cached and second.vision_cached
    assert second.timings["vision_ms"] == 0.0
    assert second.text == first.text
    for a, b in zip(first.targets, second.targets):
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.score == b.score
    # Another image runs the tower again; so does the same image after the cache is cleared.
    engine.segment(rgb_image(50, 70, seed=10), instruction, max_new_tokens=3)
    assert calls[0] == 2
    engine.clear_cache()
    engine.segment(image, instruction, max_new_tokens=3)
    assert calls[0] == 3


def test_segment_many_encodes_the_image_once(engine: PixelLMEngine, count_calls) -> None:  # type: ignore[no-untyped-def]
    calls = count_calls(engine.model.vision_tower)
    results = engine.segment_many(rgb_image(30, 30), ["find the cup", "find the bowl", "find the box"], max_new_tokens=3)
    assert len(results) == 3 and calls[0] == 1


def test_feature_cache_keeps_only_the_last_images(tiny_model, engine_tokenizer, count_calls) -> None:  # type: ignore[no-untyped-def]
    engine = PixelLMEngine(tiny_model, engine_tokenizer, feature_cache_size=2)
    calls = count_calls(tiny_model.vision_tower)
    images = [rgb_image(20, 20, seed=s) for s in range(3)]
    for image in images:
        engine.encode_image(image)
    engine.encode_image(images[2])  # cached
    engine.encode_image(images[0])  # evicted: runs again
    assert calls[0] == 4


@pytest.mark.parametrize(
    ("image", "instruction", "max_new_tokens"),
    [
        (np.zeros((20, 20, 3), dtype=np.float32), "find it", None),
        (np.zeros((20, 20), dtype=np.uint8), "find it", None),
        (np.zeros((20, 20, 4), dtype=np.uint8), "find it", None),
        ("not an image", "find it", None),
        (np.zeros((20, 20, 3), dtype=np.uint8), "", None),
        (np.zeros((20, 20, 3), dtype=np.uint8), "   ", None),
        (np.zeros((20, 20, 3), dtype=np.uint8), "find it", 0),
        (np.zeros((20, 20, 3), dtype=np.uint8), "find it", -3),
    ],
)
def test_invalid_inputs_raise_invalid_input_error(engine: PixelLMEngine, image, instruction, max_new_tokens) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError):
        engine.segment(image, instruction, max_new_tokens=max_new_tokens)


def test_too_many_new_tokens_are_cut_to_the_model_positions(engine: PixelLMEngine) -> None:
    instruction = "find it"
    hook = scripted(engine, instruction, ["the cup", engine.tokenizer.eos_id])
    result = engine.segment(rgb_image(20, 20), instruction, max_new_tokens=100_000, logits_processor=hook)
    assert any("cut to" in w for w in result.warnings)
    assert result.text == "the cup"


def test_callback_exceptions_reach_the_caller_unchanged(engine: PixelLMEngine) -> None:
    class Boom(Exception):
        pass

    def explode(_: str) -> None:
        raise Boom("from on_text")

    with pytest.raises(Boom):
        engine.segment(rgb_image(20, 20), "find it", max_new_tokens=5, on_text=explode,
                       logits_processor=scripted(engine, "find it", ["the cup"]))


def test_released_engine_refuses_work(tiny_model, engine_tokenizer) -> None:  # type: ignore[no-untyped-def]
    engine = PixelLMEngine(tiny_model, engine_tokenizer)
    engine.release()
    with pytest.raises(EngineError):
        engine.segment(rgb_image(20, 20), "find it")


def test_default_model_loads_and_a_missing_folder_is_a_clear_engine_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = PixelLMEngine.from_pretrained()  # the embedded model shipped in the package
    try:
        assert engine.model.config.seg_tokens_per_target == len(engine.tokenizer.seg_token_ids) == 2  # N = 1 seg token x L = 2 scales
    finally:
        engine.release()
    with pytest.raises(EngineError, match="does not exist"):
        PixelLMEngine.from_pretrained(tmp_path / "no_such_model")


def test_mismatched_tokenizer_is_refused(tiny_model, engine_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from pixellm_ros.model.tokenizer import PixelLMTokenizer

    one_seg = PixelLMTokenizer(engine_tokenizer._sp_model_proto, ["[SEG]", "<im_start>", "<im_end>"])
    with pytest.raises(EngineError, match="seg tokens"):
        PixelLMEngine(tiny_model, one_seg)


# ------------------------------------------------------------------ one unit, one path
@pytest.mark.parametrize("probability", [0.2, 0.5, 0.9])
def test_mask_threshold_is_a_probability_compared_as_its_logit(engine: PixelLMEngine, probability: float) -> None:
    """The masks are the pixels whose probability is above mask_threshold: the upsampled logits above
    log(p / (1 - p)), computed here from the decoder's own low-res logits."""
    import math

    from pixellm_ros.engine.postprocess import postprocess_masks

    low_res: list[torch.Tensor] = []
    handle = engine.model.mask_decoder.register_forward_hook(lambda _m, _i, out: low_res.append(out[0].detach().clone()))
    image, instruction = rgb_image(45, 70, seed=3), "Segment the red cup and the blue block."
    engine.mask_threshold = probability
    try:
        result = engine.segment(image, instruction, max_new_tokens=40,
                                logits_processor=scripted(engine, instruction, TWO_TARGETS))
    finally:
        handle.remove()
    encoded, _ = engine.encode_image(image)
    size = engine.model.config.image_size
    expected = postprocess_masks(low_res[0], size, encoded.valid_hw, encoded.original_hw,
                                 math.log(probability / (1 - probability)))
    assert len(result.targets) == len(expected) == 2
    for target, want in zip(result.targets, expected):
        np.testing.assert_array_equal(target.mask, want.mask)
        assert 0 < target.mask.sum() < target.mask.size  # an informative mask: the threshold matters
    if probability == 0.5:  # the released rule: logit > 0
        zero = postprocess_masks(low_res[0], size, encoded.valid_hw, encoded.original_hw, 0.0)
        assert all(np.array_equal(t.mask, z.mask) for t, z in zip(result.targets, zero))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 2.0, float("nan")])
def test_a_mask_threshold_outside_0_1_is_refused(tiny_model, engine_tokenizer, bad: float) -> None:  # type: ignore[no-untyped-def]
    from pixellm_ros.engine import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="mask_threshold is a probability"):
        PixelLMEngine(tiny_model, engine_tokenizer, mask_threshold=bad)
    engine = PixelLMEngine(tiny_model, engine_tokenizer, mask_threshold=0.3)
    with pytest.raises(InvalidOptionError):
        engine.mask_threshold = bad
    assert engine.mask_threshold == 0.3


def test_on_token_counts_each_token_as_it_is_made_before_its_text(engine: PixelLMEngine) -> None:
    instruction = "Segment the red cup and the blue block."
    events: list[tuple[str, object]] = []
    result = engine.segment(rgb_image(40, 40), instruction, max_new_tokens=30,
                            on_token=lambda n: events.append(("token", n)), on_text=lambda t: events.append(("text", t)),
                            logits_processor=scripted(engine, instruction, TWO_TARGETS))
    counts = [n for kind, n in events if kind == "token"]
    assert counts == list(range(1, result.generated_tokens + 1))
    for index, (kind, _) in enumerate(events):  # every piece of text follows the token that made it
        if kind == "text":
            assert any(k == "token" for k, _ in events[:index])
    assert "".join(str(t) for kind, t in events if kind == "text") == result.text


def test_an_on_token_exception_reaches_the_caller_unchanged(engine: PixelLMEngine) -> None:
    class Boom(Exception):
        pass

    def explode(count: int) -> None:
        if count == 3:
            raise Boom("third token")

    with pytest.raises(Boom, match="third token"):
        engine.segment(rgb_image(30, 30), "find it", max_new_tokens=10, on_token=explode)


def test_segment_is_a_batch_of_one_on_the_decode_modes_decoder(tiny_model, engine_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """segment runs segment_batch([request]): the same result; in a static mode on the static
    decoder of one row, and a second static run while that decoder is busy gets one of its own."""
    from pixellm_ros.engine import BatchRequest

    dynamic = PixelLMEngine(tiny_model, engine_tokenizer)
    static = PixelLMEngine(tiny_model, engine_tokenizer, decode_mode="static")
    instruction, image = "Segment the red cup and the blue block.", rgb_image(40, 50, seed=2)
    hook = scripted(dynamic, instruction, TWO_TARGETS)
    alone = dynamic.segment(image, instruction, max_new_tokens=40, logits_processor=hook)
    (batched,) = dynamic.segment_batch([BatchRequest(image, instruction, 40, logits_processor=hook)])
    assert alone.timings["batch_rows"] == batched.timings["batch_rows"] == 1.0
    assert batched.text == alone.text and len(batched.targets) == len(alone.targets) == 2
    for a, b in zip(alone.targets, batched.targets):
        np.testing.assert_array_equal(a.mask, b.mask)

    session = static.batch_session(max_batch=1, static=True)  # holds the kept one-row decoder
    session.add(BatchRequest(image, instruction, 40, logits_processor=hook))
    session.step()
    ((size, rows), busy), = static._static_decoders.items()
    assert rows == 1 and busy.in_use
    during = static.segment(image, instruction, max_new_tokens=40, logits_processor=hook)
    while not session.idle:
        outcomes = session.step()
    for result in (during, outcomes[0][1]):
        assert result.text == alone.text
        for a, b in zip(alone.targets, result.targets):
            assert np.count_nonzero(a.mask != b.mask) <= 2
    assert list(static._static_decoders.values()) == [busy] and not busy.in_use


def test_batching_uses_only_the_engines_public_interface() -> None:
    """batching.py reads from the engine only what SessionEngine declares, none of it private,
    and PixelLMEngine has all of it."""
    import ast
    import inspect

    from pixellm_ros.engine import batching

    tree = ast.parse(inspect.getsource(batching))
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, (ast.Name, ast.Attribute))
            and (getattr(node.value, "id", None) == "engine" or getattr(node.value, "attr", None) == "_engine")}
    declared = {name for name in vars(batching.SessionEngine) if not name.startswith("_")}
    declared |= set(batching.SessionEngine.__annotations__)
    assert used and not {name for name in used if name.startswith("_")}, used
    assert used <= declared, used - declared
    assert all(hasattr(PixelLMEngine, name) or name in ("decode_mode",) for name in declared)
