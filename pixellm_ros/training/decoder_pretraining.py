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

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import IterableDataset, get_worker_info
from tqdm import tqdm

from pixellm_ros.engine.preprocess import preprocess_image
from pixellm_ros.model.config import PixelLMConfig
from pixellm_ros.model.losses import LossWeights, mask_losses
from pixellm_ros.model.mask_resize import low_res_to_original_many
from pixellm_ros.model.outputs import ImageFeatures
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.world.scene import sample_scene

from .attribute_heads import AttributeHeads, ObjectLabels, object_labels
from .loading import as_is, step_loader
from .metrics import mean_mask_iou
from .name_prompts import NamePrompts
from .schedule import ProgressSchedule, StageClock

# First word of the stage-1 stream's seeds (the stage-2 stream uses dataset.TRAIN_STREAM_TAG).
DECODER_STREAM_TAG = 0xDEC0DE


def decoder_parameters(model: PixelLMForCausalLM) -> list[nn.Parameter]:
    """The parameters stage 1 trains: the image path into the decoder and the decoder itself."""
    parts = (model.vision_tower, model.out_mm_projector, model.image_feature_neck, model.prompt_encoder, model.mask_decoder)
    return [p for part in parts for p in part.parameters() if p.requires_grad]


@dataclass
class DecoderPretrainSettings:
    """Stage 1's settings. The defaults are the CPU recipe's (constant learning rate, scenes
    rendered in the training process, no budget, no attribute heads).

    budget_s: wall-clock budget of the stage (0: none; see ``schedule.StageClock``).
    schedule: "constant", or "cosine" (``schedule.ProgressSchedule``: warm-up, then a cosine to
    ``min_lr_ratio`` x lr over the stage's progress). workers: DataLoader workers (-1: auto).
    attribute_weight: weight of the attribute heads' loss (``attribute_heads``) on the tower's
    last layer, added to the mask losses (0: off). amp: bf16 autocast on CUDA.
    """

    steps: int = 400
    images_per_step: int = 8
    targets_per_image: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    image_size: int = 168
    seed: int = 0
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    budget_s: float = 0.0
    workers: int = 0
    attribute_weight: float = 0.0
    amp: bool = True


SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclass
class DecoderBatch:
    pixel_values: torch.Tensor  # (B, 3, S, S)
    valid_hw: list[tuple[int, int]]
    original_hw: list[tuple[int, int]]
    masks: list[torch.Tensor]  # B x (T_b, H, W) bool (a quarter of float's shared memory between workers)
    names: list[list[str]]  # B x T_b target names
    labels: list[ObjectLabels] = field(default_factory=list)  # every object's (for the attribute heads)

    def pin_memory(self) -> DecoderBatch:
        return DecoderBatch(
            self.pixel_values.pin_memory(), self.valid_hw, self.original_hw, [m.pin_memory() for m in self.masks],
            self.names, self.labels,
        )


def decoder_batch(config: PixelLMConfig, settings: DecoderPretrainSettings, step: int) -> DecoderBatch:
    """Step ``step``'s scenes, each with up to ``targets_per_image`` random objects as targets
    (and, with the attribute heads on, every object's patch coverage and attributes)."""
    cfg = config
    pixels, valid, original, masks, names, labels = [], [], [], [], [], []
    for image in range(settings.images_per_step):
        rng = np.random.default_rng([DECODER_STREAM_TAG, settings.seed, step, image])
        scene = sample_scene(rng, (settings.image_size, settings.image_size))
        rgb, instance_masks = scene.render()
        pre = preprocess_image(rgb, cfg.image_size, cfg.pixel_mean, cfg.pixel_std)
        chosen = rng.permutation(len(scene.objects))[: settings.targets_per_image]
        pixels.append(pre.pixel_values[0])
        valid.append(pre.valid_hw)
        original.append(pre.original_hw)
        masks.append(torch.from_numpy(instance_masks[chosen]))
        names.append([scene.objects[i].name for i in chosen])
        if settings.attribute_weight > 0:
            labels.append(object_labels(
                torch.from_numpy(instance_masks), [o.colour for o in scene.objects], [o.shape for o in scene.objects],
                pre.valid_hw, cfg.image_size, cfg.patch_size,
            ))
    return DecoderBatch(torch.stack(pixels), valid, original, masks, names, labels)


@dataclass
class DecoderBatches(IterableDataset):
    """Stage 1's stream: ``decoder_batch`` for steps start_step, start_step + 1, ... (worker k
    of n makes the steps s with s % n == k; the loader's round-robin keeps them in order)."""

    config: PixelLMConfig
    settings: DecoderPretrainSettings
    start_step: int = 0

    def __post_init__(self) -> None:
        super().__init__()

    def __iter__(self) -> Iterator[DecoderBatch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start_step, self.settings.steps):
            if step % workers == worker:
                yield decoder_batch(self.config, self.settings, step)


def decoder_step_losses(
    model: PixelLMForCausalLM, prompts: NamePrompts, batch: DecoderBatch, weights: LossWeights,
    heads: AttributeHeads | None = None, attribute_weight: float = 0.0,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], dict[str, float]]:
    """PixelLM's mask losses (BCE + Dice + refinement) for name-prompted targets, plus
    ``attribute_weight`` x the attribute heads' loss on the tower's last layer when ``heads`` is
    given; also the logits/targets and the heads' metrics."""
    cfg = model.config
    device = model.mask_decoder.iou_token.weight.device
    pixel_values = batch.pixel_values.to(device, non_blocking=True)
    if heads is None:
        feats, last_layer = model.encode_images(pixel_values, batch.valid_hw), None
    else:
        feats, last_layer = _encode_with_last_layer(model, pixel_values, batch.valid_hw)
    # the same name prompt for every scale; all images' targets in one pass on a GPU (decode_masks_per_image)
    counts = [len(names) for names in batch.names]
    vectors = prompts([name for names in batch.names for name in names])  # (T, D)
    fused = vectors.unsqueeze(1).expand(-1, cfg.num_scales, -1)
    low_res = model.decode_masks_per_image(feats.decoder_features, fused, counts, list(range(len(counts))))
    predictions = low_res_to_original_many(low_res, cfg.image_size, batch.valid_hw, batch.original_hw)
    targets = [m.to(device, non_blocking=True).float() for m in batch.masks]
    bce, dice, refinement, _ = mask_losses(predictions, targets, weights)
    loss = bce + dice + refinement
    metrics: dict[str, float] = {}
    if heads is not None and last_layer is not None:
        attribute_loss, metrics = heads(last_layer, [labels.to(device) for labels in batch.labels])
        loss = loss + attribute_weight * attribute_loss
        metrics["attribute_loss"] = float(attribute_loss.detach())
    return loss, predictions, targets, metrics


def _encode_with_last_layer(
    model: PixelLMForCausalLM, pixel_values: torch.Tensor, valid_hw: list[tuple[int, int]]
) -> tuple[ImageFeatures, torch.Tensor]:
    """``model.encode_images`` and the tower's deepest selected layer (B, G*G, C) it computed on the way."""
    captured: list[list[torch.Tensor]] = []
    handle = model.vision_tower.register_forward_hook(lambda _module, _inputs, scales: captured.append(scales))
    try:
        feats = model.encode_images(pixel_values, valid_hw)
    finally:
        handle.remove()
    indices = model.vision_tower.state_indices
    return feats, captured[0][indices.index(max(indices))]


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pretrain_decoder(
    model: PixelLMForCausalLM, settings: DecoderPretrainSettings, progress: bool = True
) -> tuple[NamePrompts, list[dict[str, float]]]:
    """Train the vision tower + decoder with name prompts; returns the (trained) NamePrompts and a
    per-step history ({"step", "loss", "mask_iou", "seconds"} + the attribute heads' metrics when
    on). The LLM's weights are not touched. Ends after ``settings.steps`` steps or
    ``settings.budget_s`` seconds, whichever comes first."""
    if settings.schedule not in SCHEDULES:
        raise ValueError(f"stage-1 schedule must be one of {SCHEDULES}, got {settings.schedule!r}")
    device = model.mask_decoder.iou_token.weight.device
    torch.manual_seed(settings.seed)
    prompts = NamePrompts(model.config.out_dim).to(device)
    params = decoder_parameters(model) + list(prompts.parameters())
    heads = None
    if settings.attribute_weight > 0:
        heads = AttributeHeads(model.vision_tower.hidden_size).to(device)
        params += list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = None
    if settings.schedule == "cosine":
        schedule = ProgressSchedule(optimizer, settings.warmup_steps, settings.min_lr_ratio)
    weights = LossWeights()
    history: list[dict[str, float]] = []
    model.train()
    clock = StageClock(settings.steps, settings.budget_s)
    loader = step_loader(DecoderBatches(model.config, settings), as_is, settings.workers, device.type == "cuda")
    bar = tqdm(total=settings.steps, desc="decoder pretraining", unit="step", disable=not progress, dynamic_ncols=True)
    batches = iter(loader)
    try:
        for step in range(settings.steps):
            if clock.done(step):
                break
            began = clock.elapsed_s
            batch = next(batches)
            if schedule is not None:
                schedule.set_progress(clock.progress(step))
            with _autocast(device, settings.amp):
                loss, predictions, targets, metrics = decoder_step_losses(
                    model, prompts, batch, weights, heads, settings.attribute_weight
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            if schedule is not None:
                schedule.step()
            with torch.no_grad():
                iou = mean_mask_iou(predictions, targets)
            row = {"step": float(step + 1), "loss": float(loss.detach()), "mask_iou": iou, "lr": float(lr)}
            row.update({k: v for k, v in metrics.items() if k != "objects"})
            row["seconds"] = clock.elapsed_s - began
            history.append(row)
            recent = history[-25:]
            bar.update(1)
            bar.set_postfix(loss=f"{recent[-1]['loss']:.3f}", iou=f"{sum(r['mask_iou'] for r in recent) / len(recent):.3f}")
    finally:
        bar.close()
        del batches  # stops the workers now, not when the loader is collected
    prompts.requires_grad_(False)
    return prompts, history
