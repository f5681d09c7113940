"""Training the small PixelLM on the tabletop world: AdamW, warmup + cosine, clipping, checkpoints.

Two stages. Stage 1 (``decoder_pretraining``) trains the vision tower and the pixel decoder to
segment objects named by a colour + shape prompt vector; stage 2 trains the model on PixelLM's
losses over conversations, with the LLM's seg prompts pulled towards those name vectors (the
trainer's ``prompt_distillation`` aid) so that the decoder's stage-1 skill is usable at once. By
default (``freeze_image_path``) stage 2 leaves the vision tower and the decoder as stage 1 made them.

A run lives in one output folder::

    out/tokenizer/            the world tokenizer (trained once, reused on resume)
    out/checkpoints/last.pt   model + optimizer + scheduler + step + RNG (resumable)
    out/checkpoints/name_prompts.pt  stage 1's name vectors and its per-step history
    out/history.json          per-step losses of both stages and the held-out evaluations
    out/loss_curve.png        the curves (stage 1's in a panel of its own)
    out/settings.json         the settings of the run
    out/model/                the final model (save_pixellm: config + model.safetensors + tokenizer)

CPU by default when no GPU is present, CUDA otherwise (bf16 autocast there); the thread count
for CPU math is a setting, since the machines this trains on share their cores. Scenes are
rendered in DataLoader workers when ``num_workers`` says so (-1: one per core but two,
``loading``). Each stage may have a wall-clock budget (``schedule``): it then ends when its
budget or its steps run out, its learning rate decaying over whichever runs out first. The named
presets of these settings (the CPU recipe, the GPU recipe) are ``recipes``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

from pixellm_ros.model.config import PixelLMConfig
from pixellm_ros.model.load_options import resolve_device
from pixellm_ros.model.losses import LossWeights
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.model.tokenizer import PixelLMTokenizer

from .batch import TrainingBatch
from .checkpointing import CHECKPOINT_NAME, TrainingState, load_checkpoint, save_checkpoint
from .curriculum import Curriculum
from .dataset import StepBatches, WorldSampler, collate_samples, step_rng
from .decoder_pretraining import DecoderPretrainSettings, decoder_parameters, pretrain_decoder
from .demo_config import MODEL_CONFIGS
from .export import export_model
from .forward import batch_forward
from .loading import step_loader
from .name_prompts import NamePrompts
from .plotting import plot_loss_curve
from .schedule import ProgressSchedule, StageClock
from .teacher_forced import evaluate_batches
from .tokenizer_corpus import DEFAULT_CORPUS_SCENES, DEFAULT_VOCAB_SIZE, train_world_tokenizer

ConfigBuilder = Callable[[int], PixelLMConfig]
EVAL_STREAM = 2**31 - 1  # the "step" index of the held-out batches' generators: never a training step


@dataclass
class TrainSettings:
    """Everything that defines a run (saved as out/settings.json)."""

    out_dir: str
    recipe: str = "cpu"  # the named preset (recipes.RECIPES) the run started from; a record, not a switch
    model: str = "demo"  # the model size and tower (demo_config.MODEL_CONFIGS)
    steps: int = 1000
    images_per_step: int = 6  # more scenes per step, fewer questions each: the decoder learns from the images
    questions_per_image: int = 2
    # 1.6e-3 against 8e-4, same stage 1, 60 held-out scenes: gIoU 0.335 vs 0.324, cIoU 0.277 vs 0.233;
    # 3.2e-3 broke the seg prompts (teacher-forced held-out mask IoU 0.30 against 0.45).
    lr: float = 1.6e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda", "cuda:N"
    threads: int | None = None  # torch.set_num_threads on CPU; None keeps torch's default
    num_workers: int = 0  # DataLoader workers rendering scenes, both stages (0: in the training process; -1: auto)
    eval_every: int = 250
    eval_images: int = 8
    checkpoint_every: int = 250
    image_sizes: list[tuple[int, int]] = field(default_factory=lambda: [(168, 168), (126, 168)])
    size_weights: list[float] = field(default_factory=lambda: [0.75, 0.25])
    none_rate: float = 0.15
    curriculum: bool = True
    # The steps over which the curriculum's mix moves to the world's own (0: ``steps``). A
    # budgeted stage 2 sets ``steps`` far beyond what its budget allows, so it names its own.
    curriculum_steps: int = 0
    vocab_size: int = DEFAULT_VOCAB_SIZE
    tokenizer_scenes: int = DEFAULT_CORPUS_SCENES
    # "" trains the world tokenizer into out/tokenizer; a model folder (or "shipped": the embedded
    # model) lends its tokenizer instead (copied to out/tokenizer).
    tokenizer_from: str = ""
    export_dtype: str = "float16"  # weights of the final model folder (see export.py)
    amp: bool = True  # bf16 autocast on CUDA (CPU always trains in float32)
    # Loss schedule: token CE off for the first mask_first_steps, then ramped in over ce_ramp_steps
    # (see loss_weights_at). 0 / 0 = PixelLM's weights from the first step.
    mask_first_steps: int = 0
    ce_ramp_steps: int = 0
    # Stage 1 (decoder_pretraining): vision tower + decoder learn to segment name-prompted objects
    # for this many steps before the full model trains (0 = no stage 1, no distillation).
    decoder_pretrain_steps: int = 650
    decoder_pretrain_images: int = 8
    decoder_pretrain_lr: float = 1e-3
    decoder_pretrain_schedule: str = "constant"  # or "cosine" (warm-up, then decay over the stage's progress)
    decoder_pretrain_warmup_steps: int = 0
    decoder_pretrain_min_lr_ratio: float = 0.1
    # Wall-clock budgets of the two stages in seconds (0: none; see schedule.StageClock). With a
    # stage-2 budget its learning rate follows schedule.ProgressSchedule instead of the step count.
    decoder_pretrain_budget_s: float = 0.0
    stage_two_budget_s: float = 0.0
    # Stage 1's attribute heads (attribute_heads: colour and shape read from the tower's last
    # layer, per object and per patch), weight of their loss next to the mask losses (0: off).
    attribute_weight: float = 0.0
    # After stage 1, keep the vision tower and the pixel decoder (decoder_pretraining's
    # decoder_parameters) as stage 1 left them: stage 2 then teaches the LLM to answer and to
    # point with them (its mask losses still reach the LLM through the frozen decoder). Why: with
    # 7 px patches a stage-2 step costs 2.35 s with the image path trainable and 1.40 s frozen
    # (2 CPU cores); the time saved pays for a longer stage 1, where the masks are learned.
    freeze_image_path: bool = True
    # Training aids on the seg prompts, on top of PixelLM's losses (0 = off): the pull of each
    # target's fused prompts towards its stage-1 name vector, and the push between the prompts of
    # different objects (forward.prompt_separation_loss).
    prompt_distillation: float = 1.0
    prompt_separation: float = 0.0
    progress: bool = True
    # After training (`pixellm-ros train`, final_eval.evaluate_run): the exported model through the
    # engine on this many held-out scenes of the world exported with final_eval_seed (1: the
    # 200-scene set of docs/embedded_model_experiments.md), in final_eval_workers processes
    # (-1: auto), paired against compare_with ("shipped": the embedded model, or a model folder;
    # "": no comparison). 0 scenes: none.
    final_eval_scenes: int = 0
    final_eval_seed: int = 1
    final_eval_workers: int = 0
    compare_with: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in payload.items() if k in known}
        if "image_sizes" in data:
            data["image_sizes"] = [tuple(size) for size in data["image_sizes"]]
        return cls(**data)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and convolution kernels only (not on norms, biases, embeddings' 1-D bits)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and "norm" not in name else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def loss_weights_at(step: int, mask_first_steps: int, ce_ramp_steps: int) -> LossWeights:
    """PixelLM's loss weights, with the token CE scaled by a warm-up factor at ``step`` (0-based).

    Why: trained from scratch, the LLM's states before the seg tokens are pulled by the CE towards
    one fixed "predict [SEGk+1]" vector per k, the same for every target, before the mask loss has
    taught them which object they stand for; the decoder then learns one prompt-independent mask.
    With the CE off at first, those states are shaped by the masks only; the CE then comes in.
    """
    base = LossWeights()
    if step < mask_first_steps:
        factor = 0.0
    elif ce_ramp_steps > 0 and step < mask_first_steps + ce_ramp_steps:
        factor = (step - mask_first_steps + 1) / (ce_ramp_steps + 1)
    else:
        factor = 1.0
    return dataclasses.replace(base, ce=base.ce * factor)


@dataclass
class TrainResult:
    steps: int
    final_train: dict[str, float]
    final_eval: dict[str, float]
    seconds_per_step: float
    model_dir: Path | None
    stage_one_steps: int = 0
    stage_one_seconds: float = 0.0
    stage_two_seconds: float = 0.0


class Trainer:
    """Builds (or resumes) a run in ``settings.out_dir`` and trains it to ``settings.steps``.

    tokenizer: use this one instead of training/loading out/tokenizer (tests).
    config_builder: vocab size -> PixelLMConfig (default: ``MODEL_CONFIGS[settings.model]``).
    """

    def __init__(
        self,
        settings: TrainSettings,
        tokenizer: PixelLMTokenizer | None = None,
        config_builder: ConfigBuilder | None = None,
        resume: bool = False,
    ) -> None:
        self.settings = settings
        self.out_dir = Path(settings.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(settings.device)  # the loader's rule: LoadOptionError if absent
        if settings.threads is not None and self.device.type == "cpu":
            torch.set_num_threads(int(settings.threads))
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if config_builder is None:
            if settings.model not in MODEL_CONFIGS:
                raise ValueError(f"model must be one of {sorted(MODEL_CONFIGS)}, got {settings.model!r}")
            config_builder = MODEL_CONFIGS[settings.model]

        self.tokenizer = tokenizer if tokenizer is not None else self._world_tokenizer()
        self.config = config_builder(len(self.tokenizer))
        torch.manual_seed(settings.seed)
        self.model = PixelLMForCausalLM(self.config).to(self.device)
        self.model.train()
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, settings.weight_decay), lr=settings.lr, betas=(0.9, 0.98), eps=1e-8
        )
        if settings.stage_two_budget_s > 0:
            self.scheduler: torch.optim.lr_scheduler.LRScheduler = ProgressSchedule(
                self.optimizer, settings.warmup_steps, settings.min_lr_ratio
            )
        else:
            self.scheduler = get_cosine_with_min_lr_schedule_with_warmup(
                self.optimizer, settings.warmup_steps, settings.steps, min_lr_rate=settings.min_lr_ratio
            )
        self.state = TrainingState()
        if resume and self.checkpoint_path.is_file():
            self.state, _ = load_checkpoint(
                self.checkpoint_path, self.model, self.optimizer, self.scheduler, map_location=self.device
            )
        self.seg_token_ids = self.tokenizer.seg_token_ids
        self.name_prompts: NamePrompts | None = None
        self.stage_one_history: list[dict[str, float]] = []
        if resume and self.name_prompts_path.is_file():
            self.name_prompts = self._load_name_prompts()
        self._eval_batches: list[TrainingBatch] | None = None
        (self.out_dir / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2) + "\n")

    # ------------------------------------------------------------------ paths and parts
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / CHECKPOINT_NAME

    @property
    def name_prompts_path(self) -> Path:
        return self.out_dir / "checkpoints" / "name_prompts.pt"

    @property
    def step(self) -> int:
        return self.state.step

    def _world_tokenizer(self) -> PixelLMTokenizer:
        folder = self.out_dir / "tokenizer"
        if (folder / "tokenizer.model").is_file():
            return PixelLMTokenizer.from_pretrained(folder)
        if self.settings.tokenizer_from:
            source = self.settings.tokenizer_from
            if source == "shipped":
                from pixellm_ros.engine.engine import DEFAULT_MODEL_DIR

                source = str(DEFAULT_MODEL_DIR)
            borrowed = PixelLMTokenizer.from_pretrained(source)
            borrowed.save_pretrained(folder)
            return PixelLMTokenizer.from_pretrained(folder)
        num_seg = 6  # N * L of the released layout, which demo_config keeps
        return train_world_tokenizer(
            folder, num_seg, self.settings.vocab_size, self.settings.tokenizer_scenes, progress=self.settings.progress
        )

    def sampler(self, split: str = "train") -> WorldSampler:
        s = self.settings
        return WorldSampler(
            tokenizer=self.tokenizer,
            use_im_start_end=self.config.use_im_start_end,
            split=split,  # type: ignore[arg-type]
            image_sizes=[tuple(size) for size in s.image_sizes],  # type: ignore[misc]
            size_weights=s.size_weights,
            questions_per_image=s.questions_per_image,
            none_rate=s.none_rate,
            curriculum=Curriculum() if (s.curriculum and split == "train") else None,
        )

    def stream(self, start_step: int) -> StepBatches:
        s = self.settings
        return StepBatches(
            self.sampler("train"), s.images_per_step, s.steps, seed=s.seed, start_step=start_step,
            curriculum_steps=s.curriculum_steps,
        )

    def batches(self, start_step: int) -> Iterator[TrainingBatch]:
        """Training batches from ``start_step`` on (rendered in DataLoader workers when configured)."""
        collate = partial(collate_samples, config=self.config, pad_id=self.tokenizer.pad_id)
        return iter(step_loader(self.stream(start_step), collate, self.settings.num_workers, self.device.type == "cuda"))

    def eval_batches(self) -> list[TrainingBatch]:
        """Fixed held-out batches (held-out colour x shape pairs, full question mix)."""
        if self._eval_batches is None:
            s = self.settings
            sampler = self.sampler("heldout")
            samples = [
                sampler.sample(step_rng(s.seed, EVAL_STREAM, i), progress=1.0)
                for i in range(s.eval_images)
            ]
            per_batch = max(1, s.images_per_step)
            self._eval_batches = [
                collate_samples(samples[i : i + per_batch], self.config, self.tokenizer.pad_id)
                for i in range(0, len(samples), per_batch)
            ]
        return self._eval_batches

    # ------------------------------------------------------------------ steps
    def _autocast(self) -> Any:
        if self.device.type == "cuda" and self.settings.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return torch.autocast(device_type="cpu", enabled=False)

    def train_step(self, batch: TrainingBatch) -> dict[str, float]:
        """One optimizer step on ``batch``; returns the step's losses, lr and gradient norm."""
        self.model.train()
        batch = batch.to(self.device, non_blocking=True)
        weights = loss_weights_at(self.state.step, self.settings.mask_first_steps, self.settings.ce_ramp_steps)
        with self._autocast():
            losses = batch_forward(
                self.model, batch, self.seg_token_ids, weights, self.settings.prompt_separation,
                self.name_prompts, self.settings.prompt_distillation,
            ).losses
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1
        row = {"step": float(self.state.step), **losses.as_floats(), "lr": float(lr), "grad_norm": float(grad_norm)}
        self.state.train_history.append(row)
        return row

    def evaluate(self) -> dict[str, float]:
        with self._autocast():
            metrics = evaluate_batches(self.model, self.eval_batches(), self.seg_token_ids, self.device)
        row = {"step": float(self.state.step), **metrics}
        self.state.eval_history.append(row)
        return row

    def save_checkpoint(self) -> Path:
        return save_checkpoint(
            self.checkpoint_path, self.model, self.optimizer, self.scheduler, self.state,
            extra={"settings": self.settings.to_dict(), "config": self.config.to_dict()},
        )

    def write_history(self) -> None:
        payload = {"stage_one": self.stage_one_history, "train": self.state.train_history, "eval": self.state.eval_history}
        (self.out_dir / "history.json").write_text(json.dumps(payload) + "\n")
        plot_loss_curve(
            self.state.train_history, self.state.eval_history, self.out_dir / "loss_curve.png", self.stage_one_history
        )

    # ------------------------------------------------------------------ stage 1
    def pretrain_decoder(self) -> NamePrompts:
        """Stage 1 (see decoder_pretraining); saves the name prompts and a step-0 checkpoint."""
        s = self.settings
        stage = DecoderPretrainSettings(
            steps=s.decoder_pretrain_steps, images_per_step=s.decoder_pretrain_images,
            image_size=self.config.image_size, seed=s.seed, lr=s.decoder_pretrain_lr,
            schedule=s.decoder_pretrain_schedule, warmup_steps=s.decoder_pretrain_warmup_steps,
            min_lr_ratio=s.decoder_pretrain_min_lr_ratio, budget_s=s.decoder_pretrain_budget_s,
            workers=s.num_workers, attribute_weight=s.attribute_weight, amp=s.amp,
        )
        self.name_prompts, history = pretrain_decoder(self.model, stage, progress=s.progress)
        self.stage_one_history = history
        self.name_prompts_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": self.name_prompts.state_dict(), "history": history}, self.name_prompts_path)
        self.save_checkpoint()
        return self.name_prompts

    def freeze_image_path(self) -> None:
        """Stop training the vision tower and the decoder (AdamW skips parameters with no grad)."""
        for param in decoder_parameters(self.model):
            param.requires_grad_(False)

    def _load_name_prompts(self) -> NamePrompts:
        payload = torch.load(self.name_prompts_path, map_location=self.device, weights_only=True)
        prompts = NamePrompts(self.config.out_dim).to(self.device)
        prompts.load_state_dict(payload["state_dict"])
        self.stage_one_history = list(payload.get("history", []))
        return prompts.requires_grad_(False)

    # ------------------------------------------------------------------ the run
    def run(self, save_model: bool = True) -> TrainResult:
        """Stage 1 if due, then train from the current step to ``settings.steps`` (or to the end
        of ``settings.stage_two_budget_s``); checkpoint, evaluate, plot, save the model."""
        s = self.settings
        stage_one_began = time.monotonic()
        if self.state.step == 0 and s.decoder_pretrain_steps > 0 and self.name_prompts is None:
            self.pretrain_decoder()
        stage_one_seconds = time.monotonic() - stage_one_began
        if s.freeze_image_path and self.name_prompts is not None:
            self.freeze_image_path()
        start = self.state.step
        timings: list[float] = []
        last: dict[str, float] = {}
        bar = tqdm(total=s.steps, initial=start, desc="train", unit="step", disable=not s.progress, dynamic_ncols=True)
        clock = StageClock(s.steps, s.stage_two_budget_s)
        batches = self.batches(start)
        try:
            while not clock.done(self.state.step):
                began = time.perf_counter()
                batch = next(batches)
                if isinstance(self.scheduler, ProgressSchedule):
                    self.scheduler.set_progress(clock.progress(self.state.step + 1))  # the lr of the next step
                last = self.train_step(batch)
                timings.append(time.perf_counter() - began)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{last['total']:.3f}", ce=f"{last['token_ce']:.3f}",
                    bce=f"{last['mask_bce']:.3f}", dice=f"{last['mask_dice']:.3f}", lr=f"{last['lr']:.1e}",
                )
                step = self.state.step
                if s.eval_every > 0 and (step % s.eval_every == 0 or step == s.steps):
                    self._evaluate_and_report(bar)
                if s.checkpoint_every > 0 and (step % s.checkpoint_every == 0 or step == s.steps):
                    self.save_checkpoint()
                    self.write_history()
        finally:
            bar.close()
            del batches  # stops the loader's workers now
        stage_two_seconds = clock.elapsed_s
        if self.state.step > start:
            evaluated = self.state.eval_history and self.state.eval_history[-1]["step"] == float(self.state.step)
            if s.eval_every > 0 and not evaluated:  # the budget ended the stage between evaluations
                self._evaluate_and_report(None)
            self.save_checkpoint()
            self.write_history()
        model_dir = self.save_model() if save_model else None
        return TrainResult(
            steps=self.state.step,
            final_train=last,
            final_eval=self.state.eval_history[-1] if self.state.eval_history else {},
            seconds_per_step=float(np.median(timings)) if timings else math.nan,
            model_dir=model_dir,
            stage_one_steps=len(self.stage_one_history),
            stage_one_seconds=stage_one_seconds,
            stage_two_seconds=stage_two_seconds,
        )

    def _evaluate_and_report(self, bar: Any) -> None:
        metrics = self.evaluate()
        line = (
            f"step {self.state.step}: held-out loss {metrics['total']:.3f}  mask IoU {metrics['mask_iou']:.3f}  "
            f"answer token acc {metrics['answer_token_accuracy']:.3f}"
        )
        (bar.write if bar is not None else print)(line)

    def save_model(self, folder: str | Path | None = None) -> Path:
        """The trained model in our folder layout (config + model.safetensors + tokenizer)."""
        target = Path(folder) if folder is not None else self.out_dir / "model"
        return export_model(self.model, self.tokenizer, target, self.settings.export_dtype)
