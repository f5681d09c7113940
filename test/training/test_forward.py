"""The training forward: seg states come from the positions before [SEGk]; shared image features
give the same losses as the model's own one-image-per-conversation compute_losses."""

from __future__ import annotations

import torch

from pixellm_ros.model import PixelLMForCausalLM
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from pixellm_ros.training.dataset import WorldSampler, collate_samples, step_rng
from pixellm_ros.training.forward import batch_forward, conversation_features


def _batch(sampler: WorldSampler, config, images: int = 2):  # type: ignore[no-untyped-def]
    samples = [sampler.sample(step_rng(11, 0, i)) for i in range(images)]
    return collate_samples(samples, config, pad_id=0)


def test_seg_states_are_the_hidden_states_before_each_seg_token(
    sampler: WorldSampler, config, world_tokenizer: PixelLMTokenizer  # type: ignore[no-untyped-def]
) -> None:
    torch.manual_seed(0)
    model = PixelLMForCausalLM(config).eval()
    batch = _batch(sampler, config)
    seg_ids = world_tokenizer.seg_token_ids

    captured: list[torch.Tensor] = []
    hook = model.text_hidden_fcs[0].register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach()))
    with torch.no_grad():
        out = batch_forward(model, batch, seg_ids)
    hook.remove()

    # Recompute the last hidden states independently and pick positions p with token p+1 a seg token.
    with torch.no_grad():
        feats = model.encode_images(batch.pixel_values, batch.valid_hw)
        spliced = model.splice_image(
            batch.input_ids, conversation_features(feats, batch.image_index), attention_mask=batch.attention_mask
        )
        hidden = model.language_model.model(
            inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask
        ).last_hidden_state
    expected_before, at_seg = [], []
    for image in range(batch.num_images):  # the forward decodes per image, conversations in order
        for row in (r for r, owner in enumerate(batch.image_index.tolist()) if owner == image):
            ids = spliced.token_ids[row].tolist()
            for p in range(len(ids) - 1):
                if ids[p + 1] in seg_ids:
                    expected_before.append(hidden[row, p])
                    at_seg.append(hidden[row, p + 1])
    got = torch.cat(captured)
    total_targets = sum(m.shape[0] for m in batch.gt_masks)
    assert total_targets > 0
    assert got.shape[0] == len(expected_before) == total_targets * len(seg_ids)
    torch.testing.assert_close(got, torch.stack(expected_before), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, torch.stack(at_seg))  # not the states AT the seg tokens
    assert out.losses.num_masks == total_targets


def test_shared_image_features_match_compute_losses(
    sampler: WorldSampler, config, world_tokenizer: PixelLMTokenizer  # type: ignore[no-untyped-def]
) -> None:
    torch.manual_seed(1)
    model = PixelLMForCausalLM(config).eval()
    batch = _batch(sampler, config)
    index = batch.image_index
    with torch.no_grad():
        ours = batch_forward(model, batch, world_tokenizer.seg_token_ids).losses
        reference = model.compute_losses(
            pixel_values=batch.pixel_values[index],
            valid_hw=[batch.valid_hw[i] for i in index.tolist()],
            input_ids=batch.input_ids,
            labels=batch.labels,
            gt_masks=batch.gt_masks,
            seg_token_ids=world_tokenizer.seg_token_ids,
            attention_mask=batch.attention_mask,
            original_hw=[batch.original_hw[i] for i in index.tolist()],
        )
    for name in ("total", "token_ce", "mask_bce", "mask_dice", "target_refinement"):
        torch.testing.assert_close(getattr(ours, name), getattr(reference, name), rtol=1e-4, atol=1e-5)
    assert ours.num_masks == reference.num_masks
