"""The training forward: seg states come from the positions before [SEGk]; features shared by the
conversations about an image give the same losses as one image copy per conversation; the aids."""

from __future__ import annotations

import torch

from pixellm_ros.model import PixelLMForCausalLM
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from pixellm_ros.training.dataset import WorldSampler, collate_samples, step_rng
from pixellm_ros.training.name_prompts import NamePrompts, prompt_distillation_loss
from pixellm_ros.training.forward import (
    batch_forward,
    distinct_target_pairs,
    prompt_separation_loss,
)
from pixellm_ros.world.ontology import COLOUR_NAMES, SHAPE_NAMES


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
            batch.input_ids, feats.for_conversations(batch.image_index), attention_mask=batch.attention_mask
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
        ).losses
    for name in ("total", "token_ce", "mask_bce", "mask_dice", "target_refinement"):
        torch.testing.assert_close(getattr(ours, name), getattr(reference, name), rtol=1e-4, atol=1e-5)
    assert ours.num_masks == reference.num_masks


def test_distinct_target_pairs_tell_objects_apart_by_mask_overlap() -> None:
    masks = torch.zeros(3, 4, 4)
    masks[0, :2] = 1  # top half
    masks[1, 2:] = 1  # bottom half: a different object
    masks[2, :2] = 1  # the first object again (asked about in another question)
    pairs = distinct_target_pairs(masks)
    expected = torch.tensor([[False, True, False], [True, False, True], [False, True, False]])
    assert torch.equal(pairs, expected)


def test_prompt_separation_loss_is_mean_positive_cosine_of_different_objects() -> None:
    masks = torch.zeros(3, 4, 4)
    masks[0, :2] = 1
    masks[1, 2:] = 1
    masks[2, :2] = 1
    # L = 1 scale, D = 2: target 0 and 2 (same object) identical, target 1 at 60 degrees from them.
    prompts = torch.tensor([[[1.0, 0.0]], [[0.5, 0.75**0.5]], [[2.0, 0.0]]])
    loss = prompt_separation_loss(prompts, masks)
    assert loss is not None
    # pairs (0,1), (1,0), (1,2), (2,1): cosine 0.5 each; the same-object pairs (0,2) do not count
    assert abs(float(loss) - 0.5) < 1e-6
    opposite = torch.tensor([[[1.0, 0.0]], [[-1.0, 0.0]], [[1.0, 0.0]]])
    assert float(prompt_separation_loss(opposite, masks)) == 0.0  # type: ignore[arg-type]
    assert prompt_separation_loss(prompts[:1], masks[:1]) is None  # one target: nothing to separate


def test_prompt_separation_reaches_the_language_model(
    sampler: WorldSampler, config, world_tokenizer: PixelLMTokenizer  # type: ignore[no-untyped-def]
) -> None:
    torch.manual_seed(0)
    model = PixelLMForCausalLM(config)
    batch = _batch(sampler, config, images=3)
    seg_ids = world_tokenizer.seg_token_ids
    plain = batch_forward(model, batch, seg_ids).losses
    assert plain.prompt_aids is not None and float(plain.prompt_aids.detach()) == 0.0
    out = batch_forward(model, batch, seg_ids, separation_weight=1.0).losses
    assert out.prompt_aids is not None and float(out.prompt_aids.detach()) > 0.0
    torch.testing.assert_close(out.total, plain.total + out.prompt_aids)
    model.zero_grad()
    out.prompt_aids.backward()
    llm_grad = model.language_model.model.layers[-1].self_attn.q_proj.weight.grad
    assert llm_grad is not None and float(llm_grad.abs().sum()) > 0.0


def test_prompt_distillation_loss_is_the_mean_squared_distance_to_the_name_vectors() -> None:
    torch.manual_seed(0)
    name_prompts = NamePrompts(dim=4).requires_grad_(False)
    names = ["red ball", "blue box"]
    target = name_prompts(names)  # (2, 4): colour vector + shape vector
    torch.testing.assert_close(
        target[0], name_prompts.colours.weight[COLOUR_NAMES.index("red")] + name_prompts.shapes.weight[SHAPE_NAMES.index("ball")]
    )
    exact = target.unsqueeze(1).expand(-1, 2, -1)  # L = 2 scales, each the name vector
    assert float(prompt_distillation_loss(exact, names, name_prompts)) == 0.0
    off = exact + 0.5
    assert abs(float(prompt_distillation_loss(off, names, name_prompts)) - 0.25) < 1e-6


def test_distillation_pulls_the_language_model_towards_the_name_vectors(
    sampler: WorldSampler, config, world_tokenizer: PixelLMTokenizer  # type: ignore[no-untyped-def]
) -> None:
    torch.manual_seed(0)
    model = PixelLMForCausalLM(config)
    name_prompts = NamePrompts(config.out_dim).requires_grad_(False)
    batch = _batch(sampler, config, images=3)
    seg_ids = world_tokenizer.seg_token_ids
    out = batch_forward(model, batch, seg_ids, name_prompts=name_prompts, distillation_weight=1.0).losses
    plain = batch_forward(model, batch, seg_ids).losses
    assert out.prompt_aids is not None and float(out.prompt_aids.detach()) > 0.0
    torch.testing.assert_close(out.total, plain.total + out.prompt_aids)
    model.zero_grad()
    out.prompt_aids.backward()
    assert float(model.language_model.model.layers[-1].mlp.down_proj.weight.grad.abs().sum()) > 0.0
    assert name_prompts.colours.weight.grad is None  # the name vectors stay fixed


def test_batches_carry_the_target_names_of_their_answers(sampler: WorldSampler, config) -> None:  # type: ignore[no-untyped-def]
    batch = _batch(sampler, config, images=3)
    assert len(batch.target_names) == batch.num_conversations
    for names, masks in zip(batch.target_names, batch.gt_masks):
        assert len(names) == masks.shape[0]
    assert any(batch.target_names)  # the fixture's scenes have targets
    for names in batch.target_names:
        for name in names:
            colour, shape = name.split(" ")
            assert colour and shape


def test_all_images_in_one_decoder_pass_give_the_same_losses_and_gradients(
    sampler: WorldSampler, config, world_tokenizer: PixelLMTokenizer  # type: ignore[no-untyped-def]
) -> None:
    """The GPU's way (every image's targets in one decoder pass) and the CPU's (image by image)."""
    torch.manual_seed(2)
    model = PixelLMForCausalLM(config)
    batch = _batch(sampler, config, images=3)
    kwargs = dict(
        pixel_values=batch.pixel_values, valid_hw=batch.valid_hw, input_ids=batch.input_ids, labels=batch.labels,
        gt_masks=batch.gt_masks, seg_token_ids=world_tokenizer.seg_token_ids, attention_mask=batch.attention_mask,
        original_hw=batch.original_hw, image_index=batch.image_index,
    )
    results = []
    for per_pass in (1, 2, 100):
        model.zero_grad()
        out = model.compute_losses(**kwargs, images_per_pass=per_pass)
        out.losses.total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (one, one_grads), *others = results
    assert one.losses.num_masks > 0
    for out, grads in others:
        for name in ("total", "mask_bce", "mask_dice", "target_refinement"):
            torch.testing.assert_close(getattr(out.losses, name), getattr(one.losses, name), rtol=1e-5, atol=1e-6)
        assert [p.image for p in out.seg_prompts] == [p.image for p in one.seg_prompts]
        for a, b in zip(out.mask_logits, one.mask_logits):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        for key, grad in one_grads.items():
            torch.testing.assert_close(grads[key], grad, rtol=1e-3, atol=1e-6, msg=key)
