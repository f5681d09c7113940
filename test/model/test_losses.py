"""Losses: the released BCE / Dice forms, target refinement, and the full training forward."""

import pytest
import torch
import torch.nn.functional as F

from pixellm_ros.model import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    LossWeights,
    PixelLMConfig,
    PixelLMForCausalLM,
    seg_state_mask,
)
from pixellm_ros.model.losses import (
    mask_losses,
    per_mask_bce,
    per_mask_dice,
    per_mask_refinement,
    token_cross_entropy,
)

torch.set_num_threads(1)


def test_dice_by_hand():
    # one 1x2 mask: probabilities (0.5, sigmoid(0)) = (0.5, 0.5), target (1, 0)
    logits = torch.zeros(1, 1, 2)
    target = torch.tensor([[[1.0, 0.0]]])
    scale, eps = 1000.0, 1e-6
    numerator = 2 * (0.5 / scale) * 1
    denominator = (0.5 + 0.5) / scale + 1 / scale
    expected = 1 - (numerator + eps) / (denominator + eps)
    assert per_mask_dice(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_perfect_masks_cost_almost_nothing():
    target = torch.zeros(2, 8, 8)
    target[0, :4] = 1
    target[1, :, :3] = 1
    logits = (target * 2 - 1) * 30
    assert per_mask_bce(logits, target).max() < 1e-6
    assert per_mask_dice(logits, target).max() < 1e-5
    wrong = -logits
    assert per_mask_dice(wrong, target).min() > 0.99


def test_bce_is_the_per_mask_pixel_mean():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 5, 4), (torch.rand(3, 5, 4) > 0.5).float()
    expected = torch.stack([F.binary_cross_entropy_with_logits(logits[i], target[i]) for i in range(3)])
    torch.testing.assert_close(per_mask_bce(logits, target), expected)


def test_refinement_only_counts_pixels_claimed_twice():
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :, :3] = 5.0  # mask 0 claims columns 0..2
    logits[1, :, 2:] = 5.0  # mask 1 claims columns 2..3 -> column 2 is claimed twice
    target = torch.zeros(2, 4, 4)
    target[0, :, :2] = 1
    target[1, :, 2:] = 1
    logits.requires_grad_(True)
    refine = per_mask_refinement(logits, target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    expected = bce[:, :, 2].sum(dim=1) / 16
    torch.testing.assert_close(refine, expected)
    refine.sum().backward()
    grad = logits.grad
    assert grad[:, :, 2].abs().sum() > 0
    assert grad[:, :, [0, 1, 3]].abs().sum() == 0


def test_refinement_is_zero_without_overlap():
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :2] = 5.0
    logits[1, 2:] = 5.0
    assert per_mask_refinement(logits, torch.zeros(2, 4, 4)).abs().sum() == 0
    single = torch.full((1, 4, 4), 5.0)
    assert per_mask_refinement(single, torch.zeros(1, 4, 4)).abs().sum() == 0


def test_mask_losses_average_over_all_masks_and_weigh():
    torch.manual_seed(0)
    preds = [torch.randn(2, 6, 6), torch.randn(1, 5, 7)]
    gts = [(torch.rand(2, 6, 6) > 0.5).float(), (torch.rand(1, 5, 7) > 0.5).float()]
    weights = LossWeights(bce=2.0, dice=0.5, refinement=0.0)
    bce, dice, refine, count = mask_losses(preds, gts, weights)
    assert count == 3
    all_bce = torch.cat([per_mask_bce(p, g) for p, g in zip(preds, gts)])
    all_dice = torch.cat([per_mask_dice(p, g) for p, g in zip(preds, gts)])
    torch.testing.assert_close(bce, 2.0 * all_bce.mean())
    torch.testing.assert_close(dice, 0.5 * all_dice.mean())
    assert refine.item() == 0.0
    with pytest.raises(ValueError):
        mask_losses(preds, gts[:1], weights)
    with pytest.raises(ValueError):
        mask_losses([torch.zeros(1, 4, 4)], [torch.zeros(1, 4, 5)], weights)


def test_token_cross_entropy_shifts_and_ignores():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 11)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, IGNORE_INDEX]])
    # position p predicts labels[p + 1]: positions 1 and 2 predict 3 and 4
    expected = F.cross_entropy(logits[0, [1, 2]], torch.tensor([3, 4]))
    torch.testing.assert_close(token_cross_entropy(logits, labels), expected)


def _training_batch(cfg: PixelLMConfig):
    base = cfg.text.vocab_size - 8
    seg = list(range(base, base + cfg.seg_tokens_per_target))
    im_start, im_end = base + 6, base + 7
    prompt = [1, 11, 12, im_start, IMAGE_TOKEN_INDEX, im_end, 13, 14]
    answer0 = [20, *seg, 21, 22, *seg, 2]  # two targets
    answer1 = [23, *seg, 2]  # one target
    row0 = prompt + answer0
    row1 = prompt + answer1
    length = max(len(row0), len(row1))
    ids = torch.zeros(2, length, dtype=torch.long)
    labels = torch.full((2, length), IGNORE_INDEX)
    attention = torch.zeros(2, length, dtype=torch.long)
    for r, (row, answer) in enumerate(((row0, answer0), (row1, answer1))):
        ids[r, : len(row)] = torch.tensor(row)
        labels[r, len(prompt) : len(row)] = torch.tensor(answer)
        attention[r, : len(row)] = 1
    gt0 = torch.zeros(2, 50, 75)
    gt0[0, 5:30, 5:40] = 1
    gt0[1, 20:45, 30:70] = 1
    gt1 = torch.zeros(1, 112, 112)
    gt1[0, 40:90, 10:60] = 1
    return dict(
        pixel_values=torch.randn(2, 3, cfg.image_size, cfg.image_size),
        valid_hw=[(75, 112), (112, 112)],
        original_hw=[(50, 75), (112, 112)],
        input_ids=ids,
        labels=labels,
        attention_mask=attention,
        gt_masks=[gt0, gt1],
        seg_token_ids=seg,
    )


def test_training_forward_gives_finite_gradients_in_every_trainable_part():
    torch.manual_seed(0)
    cfg = PixelLMConfig.tiny()
    model = PixelLMForCausalLM(cfg).train()
    model.vision_tower.requires_grad_(False)  # frozen, as in the released training
    batch = _training_batch(cfg)
    losses = model(**batch).losses
    assert losses.num_masks == 3
    for name in ("total", "token_ce", "mask_bce", "mask_dice", "target_refinement"):
        assert torch.isfinite(getattr(losses, name)), name
    assert losses.token_ce > 0 and losses.mask_bce > 0 and losses.mask_dice > 0
    torch.testing.assert_close(
        losses.total, losses.token_ce + losses.mask_bce + losses.mask_dice + losses.target_refinement
    )
    losses.total.backward()

    # parameters the released network never reads (SAM's point/box/mask prompts, the multimask
    # hypernetworks and the untrained IoU head) get no gradient; every other trainable one does
    unused = ("prompt_encoder.point_embeddings", "prompt_encoder.not_a_point_embed", "prompt_encoder.mask_downscaling",
              "mask_decoder.iou_prediction_head")
    unused += tuple(f"mask_decoder.output_hypernetworks_mlps.{k}." for k in range(1, cfg.num_mask_tokens))
    groups = ("language_model.model.embed_tokens", "language_model.model.layers", "language_model.model.norm",
              "language_model.lm_head", "mm_projector", "out_mm_projector", "image_feature_neck", "text_hidden_fcs",
              "prompt_encoder.no_mask_embed", "mask_decoder.transformer.0", "mask_decoder.transformer.1",
              "mask_decoder.iou_token", "mask_decoder.mask_tokens", "mask_decoder.output_upscaling",
              "mask_decoder.upsample_2x", "mask_decoder.output_hypernetworks_mlps.0", "mask_decoder.level_embed")
    seen = {g: 0 for g in groups}
    for name, param in model.named_parameters():
        if name.startswith("vision_tower."):
            assert param.grad is None
            continue
        if name.startswith(unused):
            assert param.grad is None, name
            continue
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        for group in groups:
            if name.startswith(group) and param.grad.abs().sum() > 0:
                seen[group] += 1
    assert all(count > 0 for count in seen.values()), seen


def test_training_forward_checks_the_target_count():
    torch.manual_seed(0)
    cfg = PixelLMConfig.tiny()
    model = PixelLMForCausalLM(cfg)
    batch = _training_batch(cfg)
    batch["gt_masks"] = [batch["gt_masks"][0][:1], batch["gt_masks"][1]]
    with pytest.raises(ValueError, match="ground-truth masks"):
        model(**batch)


def test_seg_hidden_states_are_taken_before_each_seg_token():
    """The state used for a seg token is the one that predicts it: it cannot see the token itself."""
    torch.manual_seed(0)
    cfg = PixelLMConfig.tiny()
    model = PixelLMForCausalLM(cfg).eval()
    batch = _training_batch(cfg)
    ids = batch["input_ids"][:1]
    seg = batch["seg_token_ids"]
    with torch.no_grad():
        feats = model.encode_images(batch["pixel_values"][:1], batch["valid_hw"][:1])
        spliced = model.splice_image(ids, feats)
        positions = seg_state_mask(spliced.token_ids, seg)[0].nonzero().flatten()
        assert positions.numel() == 2 * cfg.seg_tokens_per_target

        def masks_for(token_ids):
            embeds, attn = model.embed_prompt(token_ids, feats)
            hidden = model.language_model.model(inputs_embeds=embeds, attention_mask=attn).last_hidden_state
            return model.masks_from_hidden_states(hidden[0, positions], feats.decoder_features).low_res_logits

        base = masks_for(ids)
        assert base.shape[0] == 2
        last_seg = int((ids[0] == seg[-1]).nonzero().flatten()[-1])
        # replacing the final [SEG5] itself changes nothing: its state is taken one position earlier
        changed_self = ids.clone()
        changed_self[0, last_seg] = 30
        torch.testing.assert_close(masks_for(changed_self), base)
        # replacing the [SEG4] before it changes target 1's mask (its [SEG5] state reads it), not target 0's
        changed_before = ids.clone()
        changed_before[0, last_seg - 1] = 30
        other = masks_for(changed_before)
        assert not torch.allclose(other[1], base[1], atol=1e-6)
        torch.testing.assert_close(other[0], base[0])


def test_mask_losses_over_many_questions_are_the_per_question_losses():
    """Questions of two sizes, scored together per size: the same as each question on its own
    (the refinement still only counts overlaps within a question)."""
    torch.manual_seed(3)
    shapes = [(3, 6, 6), (2, 6, 6), (0, 6, 6), (2, 5, 7), (1, 6, 6)]
    preds = [torch.randn(*s) * 3 for s in shapes]
    gts = [(torch.rand(*s) > 0.5).float() for s in shapes]
    weights = LossWeights()
    bce, dice, refine, count = mask_losses(preds, gts, weights)
    assert count == 8
    kept = [(p, g) for p, g in zip(preds, gts) if p.shape[0]]
    torch.testing.assert_close(bce, weights.bce * torch.cat([per_mask_bce(p, g) for p, g in kept]).mean())
    torch.testing.assert_close(dice, weights.dice * torch.cat([per_mask_dice(p, g) for p, g in kept]).mean())
    expected = torch.cat([per_mask_refinement(p, g) for p, g in kept]).mean()
    torch.testing.assert_close(refine, weights.refinement * expected)
    # questions 0 and 1 share a size: counted together their masks would overlap more
    together = per_mask_refinement(torch.cat(preds[:2]), torch.cat(gts[:2])).mean()
    separate = torch.cat([per_mask_refinement(preds[0], gts[0]), per_mask_refinement(preds[1], gts[1])]).mean()
    assert not torch.allclose(together, separate)
