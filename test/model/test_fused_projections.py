"""Fused q/k/v and gate/up projections: the same numbers as the released layers, through
transformers' own attention path (DynamicCache and StaticCache, prefill and decode), and back."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache, LlamaForCausalLM, StaticCache

from pixellm_ros.engine.static_decoding import cache_argument
from pixellm_ros.model.config import llama_text_config
from pixellm_ros.model.fused_projections import (
    FusedLlamaAttention,
    FusedLlamaMLP,
    ProjectionSlice,
    fuse_projections,
    has_fused_projections,
    unfuse_projections,
)

torch.set_num_threads(1)
TOLERANCE = 1e-6


def llama(seed: int = 0, **overrides: object) -> LlamaForCausalLM:
    """A small LLaMA with grouped-query attention and biases everywhere (the hardest layout to split)."""
    torch.manual_seed(seed)
    sizes = dict(vocab_size=120, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, attention_bias=True, mlp_bias=True, max_position_embeddings=128)
    sizes.update(overrides)
    model = LlamaForCausalLM(llama_text_config(**sizes)).eval()
    with torch.no_grad():  # biases start at zero: make them count
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(std=0.1)
    return model


def decode(lm: LlamaForCausalLM, cache_kind: str, ids: torch.Tensor, steps: int) -> tuple[list[torch.Tensor], list[int]]:
    """Greedy decoding after a prefill of ``ids``: every step's (1, V) logits and the tokens picked."""
    prompt = ids.shape[1]
    if cache_kind == "dynamic":
        cache = DynamicCache(config=lm.config)
        mask = torch.ones_like(ids)
    else:
        cache = StaticCache(config=lm.config, max_cache_len=64)
        mask = torch.ones((1, 1, prompt, 64), dtype=torch.bool).tril()  # explicit 4-D mask, as static_decoding
    kwargs = {cache_argument(lm): cache}
    logits_seen, tokens = [], []
    with torch.no_grad():
        out = lm(input_ids=ids, attention_mask=mask, use_cache=True, **kwargs)
        for step in range(steps):
            logits = out.logits[:, -1]
            logits_seen.append(logits)
            token = int(logits.argmax())
            tokens.append(token)
            position = prompt + step
            if cache_kind == "dynamic":
                mask = torch.cat([mask, mask.new_ones((1, 1))], dim=1)
                step_mask = mask
            else:
                step_mask = torch.zeros((1, 1, 1, 64), dtype=torch.bool)
                step_mask[..., : position + 1] = True
            out = lm(input_ids=torch.tensor([[token]]), attention_mask=step_mask,
                     position_ids=torch.tensor([[position]]), use_cache=True, **kwargs)
    return logits_seen, tokens


@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
def test_fused_layers_decode_like_the_released_ones(cache_kind: str) -> None:
    reference = llama()
    fused = copy.deepcopy(reference)
    assert fuse_projections(fused) == 2 * 3
    ids = torch.randint(3, 120, (1, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the prefill's every position and hidden state
        a = reference(input_ids=ids, output_hidden_states=True)
        b = fused(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(b.logits, a.logits, atol=TOLERANCE, rtol=0)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(y, x, atol=TOLERANCE, rtol=0)
    logits_a, tokens_a = decode(reference, cache_kind, ids, steps=12)
    logits_b, tokens_b = decode(fused, cache_kind, ids, steps=12)
    assert tokens_b == tokens_a
    for x, y in zip(logits_a, logits_b):
        torch.testing.assert_close(y, x, atol=TOLERANCE, rtol=0)


def test_fused_weights_are_the_released_values_side_by_side() -> None:
    model = llama()
    attention, mlp = model.model.layers[1].self_attn, model.model.layers[1].mlp
    q, k, v = (attention.q_proj.weight.clone(), attention.k_proj.weight.clone(), attention.v_proj.weight.clone())
    gate, up, v_bias = mlp.gate_proj.weight.clone(), mlp.up_proj.weight.clone(), attention.v_proj.bias.clone()
    fuse_projections(model)
    assert isinstance(attention, FusedLlamaAttention) and isinstance(mlp, FusedLlamaMLP)
    assert torch.equal(attention.qkv_proj.weight, torch.cat([q, k, v]))
    assert torch.equal(attention.qkv_proj.bias[-v_bias.shape[0] :], v_bias)
    assert torch.equal(mlp.gate_up_proj.weight, torch.cat([gate, up]))
    assert [(s.start, s.stop) for s in (attention.q_proj, attention.k_proj, attention.v_proj)] == [(0, 64), (64, 96), (96, 128)]
    assert not any(isinstance(m, torch.nn.Linear) and m.out_features == 96 and m.in_features == 64
                   for m in model.model.layers[1].modules()), "the separate gate/up Linears are gone"


def test_unfusing_gives_back_the_released_keys_and_values() -> None:
    model = llama()
    before = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    fuse_projections(model)
    assert has_fused_projections(model)
    assert any(key.endswith("qkv_proj.weight") for key in model.state_dict())
    assert fuse_projections(model) == 0  # already fused: nothing to do
    assert unfuse_projections(model) == 2 * 3
    assert not has_fused_projections(model)
    after = model.state_dict()
    assert list(after) == list(before)
    assert [key for key in before if not torch.equal(before[key], after[key])] == []
    assert all(after[key].is_contiguous() for key in after)


def test_a_traced_fused_step_has_no_graph_break() -> None:
    """torch.compile traces the fused modules whole (fullgraph), with the StaticCache the CUDA
    graph mode uses; the eager backend keeps the test fast and the numbers exact."""
    reference, fused = llama(), llama()
    fuse_projections(fused)
    outputs = []
    for lm in (reference, fused):
        cache = StaticCache(config=lm.config, max_cache_len=32)

        def step(embeds: torch.Tensor, mask: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
            return lm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=position, use_cache=True,
                            **{cache_argument(lm): cache}).last_hidden_state  # noqa: B023

        compiled = torch.compile(step, backend="eager", fullgraph=True)
        mask = torch.zeros((1, 1, 1, 32), dtype=torch.bool)
        states = []
        with torch.no_grad():
            for position, token in enumerate([5, 17, 42]):
                mask[..., position] = True
                embeds = lm.model.embed_tokens(torch.tensor([[token]]))
                states.append(compiled(embeds, mask, torch.tensor([[position]])))
        outputs.append(torch.cat(states, dim=1))
        torch._dynamo.reset()
    torch.testing.assert_close(outputs[1], outputs[0], atol=TOLERANCE, rtol=0)


def test_a_slice_outside_its_attention_is_an_error() -> None:
    model = llama()
    fuse_projections(model)
    piece = model.model.layers[0].self_attn.k_proj
    assert isinstance(piece, ProjectionSlice) and (piece.in_features, piece.out_features) == (64, 32)
    with pytest.raises(RuntimeError, match="only inside its FusedLlamaAttention"):
        piece(torch.zeros(1, 64))


def test_quantised_projections_are_not_fused() -> None:
    model = llama()
    layer = model.model.layers[0]

    class NotALinear(torch.nn.Linear):  # what a quantisation library's Linear subclass looks like
        pass

    original = layer.self_attn.k_proj
    layer.self_attn.k_proj = NotALinear(original.in_features, original.out_features)
    with pytest.raises(ValueError, match="fuse before quantising"):
        fuse_projections(model)
    assert type(layer.self_attn) is not FusedLlamaAttention
