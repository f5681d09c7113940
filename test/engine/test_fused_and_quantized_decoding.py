"""The engine on fused projections and on torchao's weight-only int8 (the CPU can run both):
fused answers are the unfused ones; int8 answers stay close to float32; what the CPU cannot
run (int4) is refused with a clear error."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pixellm_ros.engine import EngineError, PixelLMEngine
from pixellm_ros.engine.generation import generate_greedy
from pixellm_ros.engine.static_decoding import StaticKVDecoder
from pixellm_ros.model import PixelLMForCausalLM
from pixellm_ros.model.checkpoint import finish_loading, save_pixellm
from pixellm_ros.model.fused_projections import has_fused_projections
from pixellm_ros.model.load_options import LoadOptionError, resolve_load_options
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from support.engine import rgb_image, scripted

GROUP = "[SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]"
# (instruction, scripted answer start, max_new_tokens): forced seg groups, then the model's own tokens.
CASES = [
    ("Segment the red cup.", [f"the red cup {GROUP} and the bowl {GROUP}"], 36),
    ("find every bottle", [], 16),  # the random model's own greedy tokens throughout
]


def prepared(model: PixelLMForCausalLM, fuse: bool, load_in: str | None = None) -> PixelLMForCausalLM:
    """A copy of ``model`` through the loader's last step (fuse, quantise) on the CPU, in float32."""
    return finish_loading(copy.deepcopy(model), resolve_load_options("cpu", "float32", load_in), fuse_projections=fuse)


def answers(model: PixelLMForCausalLM, tokenizer: PixelLMTokenizer, decode_mode: str) -> list:
    """The GenerationOutput of each case, on one image, through the given cache."""
    engine = PixelLMEngine(model, tokenizer, decode_mode=decode_mode)
    encoded, _ = engine.encode_image(rgb_image(60, 90, seed=5))
    outputs = []
    for instruction, script, limit in CASES:
        decoder = StaticKVDecoder(model.language_model, max_len=256) if decode_mode == "static" else None
        outputs.append(generate_greedy(model, tokenizer, engine.prompt_ids(instruction), encoded.features, limit,
                                       scripted(engine, instruction, script), decoder=decoder))
    return outputs


@pytest.mark.parametrize("decode_mode", ["dynamic", "static"])
def test_fused_projections_answer_exactly_as_the_released_layers(
    tiny_model: PixelLMForCausalLM, engine_tokenizer: PixelLMTokenizer, decode_mode: str
) -> None:
    fused = prepared(tiny_model, fuse=True)
    assert has_fused_projections(fused) and not has_fused_projections(tiny_model)
    for a, b in zip(answers(tiny_model, engine_tokenizer, decode_mode), answers(fused, engine_tokenizer, decode_mode)):
        assert b.token_ids == a.token_ids and b.finish_reason == a.finish_reason
        assert b.seg_positions == a.seg_positions
        torch.testing.assert_close(b.seg_hidden, a.seg_hidden, atol=1e-6, rtol=0)


def test_fused_engine_masks_are_the_unfused_ones(tiny_model: PixelLMForCausalLM, engine_tokenizer: PixelLMTokenizer) -> None:
    plain = PixelLMEngine(tiny_model, engine_tokenizer, decode_mode="static")
    fused = PixelLMEngine(prepared(tiny_model, fuse=True), engine_tokenizer, decode_mode="static")
    instruction, script, limit = CASES[0]
    image = rgb_image(48, 64, seed=6)
    a = plain.segment(image, instruction, max_new_tokens=limit, logits_processor=scripted(plain, instruction, script))
    b = fused.segment(image, instruction, max_new_tokens=limit, logits_processor=scripted(fused, instruction, script))
    assert b.text == a.text and len(b.targets) == len(a.targets) == 2
    for x, y in zip(a.targets, b.targets):
        assert np.array_equal(x.mask, y.mask) and y.score == pytest.approx(x.score, abs=1e-6)


def test_int8_weights_fused_or_not_give_the_same_answer(
    tiny_model: PixelLMForCausalLM, engine_tokenizer: PixelLMTokenizer
) -> None:
    """Per-row int8 of the fused Linear is the per-row int8 of its parts: same tokens either way."""
    pytest.importorskip("torchao")
    separate = prepared(tiny_model, fuse=False, load_in="int8_weight")
    fused = prepared(tiny_model, fuse=True, load_in="int8_weight")
    layer = separate.language_model.model.layers[0]
    assert type(layer.self_attn.q_proj.weight).__name__ == "Int8Tensor"
    assert layer.self_attn.q_proj.weight.qdata.dtype == torch.int8
    assert type(fused.language_model.model.layers[0].self_attn.qkv_proj.weight).__name__ == "Int8Tensor"
    assert type(fused.language_model.lm_head.weight) is torch.nn.Parameter  # lm_head stays in the dtype
    for a, b in zip(answers(separate, engine_tokenizer, "static"), answers(fused, engine_tokenizer, "static")):
        assert b.token_ids == a.token_ids
        torch.testing.assert_close(b.seg_hidden, a.seg_hidden, atol=1e-5, rtol=0)


def test_int8_weights_stay_close_to_float32(tiny_model: PixelLMForCausalLM, engine_tokenizer: PixelLMTokenizer) -> None:
    pytest.importorskip("torchao")
    quantized = prepared(tiny_model, fuse=True, load_in="int8_weight")
    reference = answers(tiny_model, engine_tokenizer, "dynamic")[0]
    ours = answers(quantized, engine_tokenizer, "dynamic")[0]
    assert ours.seg_positions == reference.seg_positions  # forced: the same seg tokens
    error = (ours.seg_hidden - reference.seg_hidden).norm() / reference.seg_hidden.norm()
    assert 0 < float(error) < 0.02, float(error)  # quantised (not a copy) and still the same states


def test_from_pretrained_fuses_and_quantises_on_request(
    tiny_model: PixelLMForCausalLM, engine_tokenizer: PixelLMTokenizer, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torchao")
    save_pixellm(tiny_model, engine_tokenizer, tmp_path)
    default = PixelLMEngine.from_pretrained(tmp_path)
    assert not has_fused_projections(default.model)  # the default fuses on CUDA only
    engine = PixelLMEngine.from_pretrained(tmp_path, load_in="int8_weight", fuse_projections=True, decode_mode="static")
    assert has_fused_projections(engine.model)
    instruction, script, limit = CASES[0]
    result = engine.segment(rgb_image(40, 40), instruction, max_new_tokens=limit,
                            logits_processor=scripted(engine, instruction, script))
    assert [t.name for t in result.targets] == ["the red cup", "the bowl"]


def test_what_the_cpu_cannot_run_is_refused(tiny_model: PixelLMForCausalLM, engine_tokenizer: PixelLMTokenizer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    save_pixellm(tiny_model, engine_tokenizer, tmp_path)
    with pytest.raises(EngineError, match="int4_weight.*needs torchao on a CUDA device"):
        PixelLMEngine.from_pretrained(tmp_path, load_in="int4_weight", dtype="bfloat16")
    with pytest.raises(LoadOptionError, match="needs bitsandbytes on a CUDA device"):
        resolve_load_options("cpu", "bfloat16", "4bit")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the int4 dtype rule is checked where int4 can run")
def test_int4_needs_bfloat16() -> None:
    pytest.importorskip("torchao")
    with pytest.raises(LoadOptionError, match="set dtype to bfloat16, not float16"):
        resolve_load_options("cuda", "float16", "int4_weight")
