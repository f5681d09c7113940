"""GrowingCache: the same keys, values and logits as transformers' DynamicCache, without a copy per token."""

from __future__ import annotations

import torch

from support.tiny_models import build_tiny_model
from pixellm_ros.engine.decoders import DynamicKVDecoder
from pixellm_ros.engine.kv_cache import MIN_RESERVE, GrowingLayer, reserve_for


def test_a_layer_holds_what_concatenation_holds_and_regrows_only_when_full() -> None:
    layer = GrowingLayer()
    generator = torch.Generator().manual_seed(0)
    prompt_k, prompt_v = torch.randn(2, 3, 10, 4, generator=generator), torch.randn(2, 3, 10, 4, generator=generator)
    keys, values = layer.update(prompt_k, prompt_v)
    expected_k, expected_v = prompt_k, prompt_v
    buffer = layer.keys.data_ptr()
    regrows = 0
    for _ in range(10 + MIN_RESERVE + 5):  # past the first buffer's room
        k, v = torch.randn(2, 3, 1, 4, generator=generator), torch.randn(2, 3, 1, 4, generator=generator)
        keys, values = layer.update(k, v)
        expected_k, expected_v = torch.cat([expected_k, k], dim=-2), torch.cat([expected_v, v], dim=-2)
        if layer.keys.data_ptr() != buffer:
            regrows += 1
            buffer = layer.keys.data_ptr()
        assert torch.equal(keys, expected_k) and torch.equal(values, expected_v)
    assert regrows == 1 and layer.get_seq_length() == expected_k.shape[-2]
    assert layer._key_buffer.shape[-2] > layer.get_seq_length()  # room to spare again
    assert reserve_for(10) == MIN_RESERVE and reserve_for(4000) == 1000


def test_keys_replaced_from_outside_are_taken_over_at_the_next_update() -> None:
    layer = GrowingLayer()
    layer.update(torch.arange(24.0).view(2, 1, 3, 4), torch.zeros(2, 1, 3, 4))
    layer.batch_select_indices(torch.tensor([1]))  # transformers replaces keys / values
    layer.crop(-1)
    keys, _ = layer.update(torch.full((1, 1, 1, 4), -1.0), torch.zeros(1, 1, 1, 4))
    expected = torch.cat([torch.arange(12.0, 20.0).view(1, 1, 2, 4), torch.full((1, 1, 1, 4), -1.0)], dim=-2)
    assert torch.equal(keys, expected)


def test_a_batch_on_a_growing_cache_decodes_exactly_as_on_a_dynamic_cache() -> None:
    lm = build_tiny_model(vocab_size=64).language_model
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randn(n, lm.config.hidden_size, generator=generator) for n in (9, 5, 7)]
    masks = [torch.ones(9, dtype=torch.long), torch.ones(5, dtype=torch.long), torch.tensor([1, 1, 0, 0, 1, 1, 1])]
    late = [torch.randn(12, lm.config.hidden_size, generator=generator)]
    runs = {}
    with torch.inference_mode():
        for growing in (False, True):
            cache = DynamicKVDecoder(lm, growing=growing)
            states = [cache.prefill(prompts, masks)]
            logits = []
            tokens = torch.tensor([3, 4, 5])
            for step in range(MIN_RESERVE + 6):  # across a regrow
                if step == 4:
                    cache.keep([0, 2])  # a row leaves
                    tokens = tokens[[0, 2]]
                if step == 8:
                    states.append(cache.prefill(late, [torch.ones(12, dtype=torch.long)]))  # a row joins
                    tokens = torch.cat([tokens, torch.tensor([6])])
                _, out = cache.step(tokens)
                logits.append(out)
                tokens = out.argmax(dim=-1)
            runs[growing] = (states, logits)
    for a, b in zip(runs[False][0] + runs[False][1], runs[True][0] + runs[True][1]):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
