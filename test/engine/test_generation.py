"""KV-cached generation against the research-style reference (no cache, everything recomputed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixellm_ros.engine.engine import PixelLMEngine
from pixellm_ros.engine.generation import generate_greedy, generate_research_style
from pixellm_ros.engine.static_decoding import StaticKVDecoder
from pixellm_ros.model.codebook import seg_state_mask
from support.engine import rgb_image, scripted

GROUP = "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]"

# (instruction, scripted answer start, max_new_tokens): seg groups, eos, and free model choices.
CASES = [
    ("Segment the red cup.", [f"the red cup {GROUP} and the bowl {GROUP}"], 40),  # script, then the model
    ("Where is the apple?", ["Sure, it is the apple", GROUP, "."], 40),
    ("find every bottle", [], 12),  # the random model's own tokens throughout
]


@pytest.mark.parametrize(("instruction", "script", "limit"), CASES)
def test_cached_generation_equals_research_recomputation(
    engine: PixelLMEngine, instruction: str, script: list, limit: int
) -> None:
    image = rgb_image(60, 90, seed=1)
    model, tok = engine.model, engine.tokenizer
    prompt = engine.prompt_ids(instruction)
    hook = scripted(engine, instruction, script)
    encoded, _ = engine.encode_image(image)
    prepared = engine._preprocess(image)
    cached = generate_greedy(model, tok, prompt, encoded.features, limit, hook)
    reference, _ = generate_research_style(model, tok, prompt, prepared.pixel_values, prepared.valid_hw, limit, hook)
    assert cached.token_ids == reference.token_ids
    assert cached.finish_reason == reference.finish_reason
    assert cached.seg_positions == reference.seg_positions
    assert cached.seg_hidden.shape == reference.seg_hidden.shape
    torch.testing.assert_close(cached.seg_hidden, reference.seg_hidden, atol=2e-5, rtol=1e-4)
    if script:
        forced = hook.tokens
        assert cached.token_ids[: len(forced)] == forced


def test_scripted_eos_stops_generation(engine: PixelLMEngine) -> None:
    instruction = "Where is the apple?"
    eos = engine.tokenizer.eos_id
    hook = scripted(engine, instruction, ["the apple", GROUP, eos])
    result = engine.segment(rgb_image(40, 40), instruction, max_new_tokens=50, logits_processor=hook)
    assert result.finish_reason == "eos"
    assert result.generated_tokens == len(hook.tokens)  # the eos counts as generated
    assert result.text == "the apple"
    assert [t.name for t in result.targets] == ["the apple"]


def test_max_new_tokens_limits_the_answer(engine: PixelLMEngine) -> None:
    instruction = "find every bottle"
    hook = scripted(engine, instruction, [], suppress_eos=True)
    result = engine.segment(rgb_image(40, 40), instruction, max_new_tokens=7, logits_processor=hook)
    assert result.finish_reason == "length"
    assert result.generated_tokens == 7


@pytest.mark.parametrize(("instruction", "script", "limit"), CASES)
def test_engine_results_equal_research_style_results(
    engine: PixelLMEngine, instruction: str, script: list, limit: int
) -> None:
    image = rgb_image(50, 80, seed=2)
    hook = scripted(engine, instruction, script)
    ours = engine.segment(image, instruction, max_new_tokens=limit, logits_processor=hook)
    reference = engine.segment_research_style(image, instruction, max_new_tokens=limit, logits_processor=hook)
    assert ours.text == reference.text
    assert ours.generated_tokens == reference.generated_tokens
    assert [t.name for t in ours.targets] == [t.name for t in reference.targets]
    assert len(ours.targets) == "".join(s for s in script if isinstance(s, str)).count(GROUP)
    for a, b in zip(ours.targets, reference.targets):
        # Thresholded at 0: allow the odd pixel whose logit sits within float noise of 0.
        assert np.count_nonzero(a.mask != b.mask) <= 2
        assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.mark.parametrize(("instruction", "script", "limit"), CASES)
def test_static_cache_decoding_equals_dynamic_cache_decoding(
    engine: PixelLMEngine, instruction: str, script: list, limit: int
) -> None:
    """The StaticCache path (explicit 4-D masks, fixed buffers: what the CUDA graph replays)."""
    image = rgb_image(60, 90, seed=3)
    model, tok = engine.model, engine.tokenizer
    prompt = engine.prompt_ids(instruction)
    hook = scripted(engine, instruction, script)
    encoded, _ = engine.encode_image(image)
    dynamic = generate_greedy(model, tok, prompt, encoded.features, limit, hook)
    static_decoder = StaticKVDecoder(model.language_model, max_len=512)
    for _ in range(2):  # the decoder is reset by each prefill and serves answer after answer
        static = generate_greedy(model, tok, prompt, encoded.features, limit, hook, decoder=static_decoder)
        assert static.token_ids == dynamic.token_ids
        assert static.finish_reason == dynamic.finish_reason
        torch.testing.assert_close(static.seg_hidden, dynamic.seg_hidden, atol=2e-5, rtol=1e-4)


def test_engine_static_mode_matches_dynamic_mode(tiny_model, engine_tokenizer) -> None:  # type: ignore[no-untyped-def]
    dynamic = PixelLMEngine(tiny_model, engine_tokenizer)
    static = PixelLMEngine(tiny_model, engine_tokenizer, decode_mode="static")
    instruction = "Segment the red cup."
    hook = scripted(dynamic, instruction, [f"the red cup {GROUP} and the bowl {GROUP}"])
    image = rgb_image(40, 40)
    a = dynamic.segment(image, instruction, max_new_tokens=30, logits_processor=hook)
    b = static.segment(image, instruction, max_new_tokens=30, logits_processor=hook)
    assert a.text == b.text and len(a.targets) == len(b.targets) == 2
    for x, y in zip(a.targets, b.targets):
        assert np.count_nonzero(x.mask != y.mask) <= 2


def test_seg_states_are_the_final_norm_states_the_training_code_selects(engine: PixelLMEngine) -> None:
    """Cross-check against transformers' own output and the codebook's training-time rule:
    out.hidden_states[-1] of one full pass, at the positions seg_state_mask marks (just before
    each seg token)."""
    instruction = "Segment the red cup."
    model, tok = engine.model, engine.tokenizer
    prompt = engine.prompt_ids(instruction)
    hook = scripted(engine, instruction, [f"the red cup {GROUP} and the bowl {GROUP}", tok.eos_id])
    encoded, _ = engine.encode_image(rgb_image(30, 50))
    generated = generate_greedy(model, tok, prompt, encoded.features, 40, hook)
    ids = torch.tensor([prompt + generated.token_ids])
    spliced = model.splice_image(ids, encoded.features)
    out = model.language_model(
        inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask, output_hidden_states=True
    )
    selected = out.hidden_states[-1][seg_state_mask(spliced.token_ids, tok.seg_token_ids)]
    assert selected.shape == (12, model.config.hidden_size)
    torch.testing.assert_close(generated.seg_hidden, selected, atol=2e-5, rtol=1e-4)


def test_research_style_runs_the_vision_tower_at_every_step(engine: PixelLMEngine) -> None:
    calls = [0]
    handle = engine.model.vision_tower.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        result = engine.segment_research_style(rgb_image(30, 30), "find it", max_new_tokens=5,
                                               logits_processor=scripted(engine, "find it", [], suppress_eos=True))
    finally:
        handle.remove()
    assert result.generated_tokens == 5 and calls[0] == 5
