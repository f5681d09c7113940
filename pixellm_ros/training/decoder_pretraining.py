"""Stage 1 of training the small model: teach the vision tower and the pixel decoder to segment an
object named by a prompt vector, before the LLM has to produce those vectors.

Why: trained from scratch in one stage, the decoder and the LLM wait on each other. The decoder
can only learn to pick out the named object once the LLM's seg prompts differ by target, and the
LLM's prompts only get a gradient that makes them differ once the decoder uses them; measured
here, the seg prompts of different targets start at cosine ~0.99 and masks stayed at IoU < 0.1
for 600+ steps. With a prompt that names the object directly (a learned colour vector plus a
learned shape vector, ``name_prompts.NamePrompts``), the same vision tower and decoder reach usable masks
within a few hundred steps. Stage 2 (the full model, ``Trainer``) then pulls the LLM's fused
seg prompts towards the frozen ``NamePrompts`` vector of each target's name
(``name_prompts.prompt_distillation_loss``) while the model trains on PixelLM's own losses (the vision tower
and the decoder only if ``TrainSettings.freeze_image_path`` is off).

The colour + shape sum also covers the held-out colour x shape pairs: both halves are seen in
training, only their combination is new. ``NamePrompts`` is a training aid; it is not part of
the shipped model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pixellm_ros.engine.preprocess import preprocess_image
from pixellm_ros.model.losses import LossWeights, mask_losses
from pixellm_ros.model.mask_resize import low_res_to_original
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.world.scene import sample_scene

from .metrics import mean_mask_iou
from .name_prompts import NamePrompts

# First word of the stage-1 stream's seeds (the stage-2 stream uses dataset.TRAIN_STREAM_TAG).
DECODER_STREAM_TAG = 0xDEC0DE


def decoder_parameters(model: PixelLMForCausalLM) -> list[nn.Parameter]:
    """The parameters stage 1 trains: the image path into the decoder and the decoder itself."""
    parts = (model.vision_tower, model.out_mm_projector, model.image_feature_neck, model.prompt_encoder, model.mask_decoder)
    return [p for part in parts for p in part.parameters() if p.requires_grad]


@dataclass
class DecoderPretrainSettings:
    steps: int = 400
    images_per_step: int = 8
    targets_per_image: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    image_size: int = 168
    seed: int = 0


@dataclass
class DecoderBatch:
    pixel_values: torch.Tensor  # (B, 3, S, S)
    valid_hw: list[tuple[int, int]]
    original_hw: list[tuple[int, int]]
    masks: list[torch.Tensor]  # B x (T_b, H, W) float {0, 1}
    names: list[list[str]]  # B x T_b target names


def decoder_batch(model: PixelLMForCausalLM, settings: DecoderPretrainSettings, step: int) -> DecoderBatch:
    """Step ``step``'s scenes, each with up to ``targets_per_image`` random objects as targets."""
    cfg = model.config
    pixels, valid, original, masks, names = [], [], [], [], []
    for image in range(settings.images_per_step):
        rng = np.random.default_rng([DECODER_STREAM_TAG, settings.seed, step, image])
        scene = sample_scene(rng, (settings.image_size, settings.image_size))
        rgb, instance_masks = scene.render()
        pre = preprocess_image(rgb, cfg.image_size, cfg.pixel_mean, cfg.pixel_std)
        chosen = rng.permutation(len(scene.objects))[: settings.targets_per_image]
        pixels.append(pre.pixel_values[0])
        valid.append(pre.valid_hw)
        original.append(pre.original_hw)
        masks.append(torch.from_numpy(instance_masks[chosen]).float())
        names.append([scene.objects[i].name for i in chosen])
    return DecoderBatch(torch.stack(pixels), valid, original, masks, names)


def decoder_step_losses(
    model: PixelLMForCausalLM, prompts: NamePrompts, batch: DecoderBatch, weights: LossWeights
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """PixelLM's mask losses (BCE + Dice + refinement) for name-prompted targets; also the logits/targets."""
    cfg = model.config
    device = model.mask_decoder.iou_token.weight.device
    feats = model.encode_images(batch.pixel_values.to(device), batch.valid_hw)
    predictions, targets = [], []
    for image, names in enumerate(batch.names):
        vectors = prompts(names)  # (T, D): the same prompt for every scale
        fused = vectors.unsqueeze(1).expand(-1, cfg.num_scales, -1)
        out = model.decode_masks([f[image : image + 1] for f in feats.decoder_features], fused)
        predictions.append(
            low_res_to_original(out.low_res_logits, cfg.image_size, batch.valid_hw[image], batch.original_hw[image])
        )
        targets.append(batch.masks[image].to(device))
    bce, dice, refinement, _ = mask_losses(predictions, targets, weights)
    return bce + dice + refinement, predictions, targets


def pretrain_decoder(
    model: PixelLMForCausalLM, settings: DecoderPretrainSettings, progress: bool = True
) -> tuple[NamePrompts, list[dict[str, float]]]:
    """Train the vision tower + decoder with name prompts; returns the (trained) NamePrompts and a
    per-step history ({"step", "loss", "mask_iou"}). The LLM's weights are not touched."""
    device = model.mask_decoder.iou_token.weight.device
    torch.manual_seed(settings.seed)
    prompts = NamePrompts(model.config.out_dim).to(device)
    params = decoder_parameters(model) + list(prompts.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    weights = LossWeights()
    history: list[dict[str, float]] = []
    model.train()
    bar = tqdm(range(settings.steps), desc="decoder pretraining", unit="step", disable=not progress, dynamic_ncols=True)
    for step in bar:
        batch = decoder_batch(model, settings, step)
        loss, predictions, targets = decoder_step_losses(model, prompts, batch, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        optimizer.step()
        with torch.no_grad():
            iou = mean_mask_iou(predictions, targets)
        history.append({"step": float(step + 1), "loss": float(loss.detach()), "mask_iou": iou})
        recent = history[-25:]
        bar.set_postfix(loss=f"{recent[-1]['loss']:.3f}", iou=f"{sum(r['mask_iou'] for r in recent) / len(recent):.3f}")
    prompts.requires_grad_(False)
    return prompts, history
