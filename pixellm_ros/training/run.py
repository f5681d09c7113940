"""A training run of the embedded model: scenes, stage 1, stage 2, export; resumable.

The run folder:
    scenes/          the encoded scene pool, in chunks (reused when the run resumes)
    stage1.pt        stage 1's checkpoint (parts, prompt head, optimizer, step): written every
    stage2.pt        ``checkpoint_minutes`` and at the end of the stage; a run started again with
                     ``resume`` continues from them, a finished stage is not repeated (a run given
                     ``stage1_from``, an exported model folder, takes stage 1 from it: stage 2 only)
    stage2_scenes.pt the scenes' object readings by the finished stage 1, computed once for stage 2
    model/           the exported model folder (what ships in pixellm_ros/assets/default_model),
                     with stage 1's prompt head beside it for such later runs
    log.txt          every line the run printed; history.json the losses and evaluations
    loss_curve.png   the curves (matplotlib)
    summary.json     settings, wall-clock time of each phase, the last evaluation
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from pixellm_ros.evaluation.evaluator import EvaluationReport, evaluate
from pixellm_ros.evaluation.muse_data import load_muse
from pixellm_ros.model.base_parts import ADDED_EMBEDDINGS, delta_sources
from pixellm_ros.model.bpe_tokenizer import BPETokenizer
from pixellm_ros.model.constants import added_token_names
from pixellm_ros.model.pixellm import PixelLMForCausalLM
from pixellm_ros.model.pretrained_llm import load_pretrained_llm_state, pretrained_tokenizer_files

from .embedded_config import BASE_LLM, NUM_SCALES, SEG_TOKENS_PER_SCALE, embedded_config
from .export import export_embedded
from pixellm_ros.evaluation.world_eval import world_eval_data
from .plotting import plot_loss_curve
from .scenes import ScenePool, build_pool
from .settings import TrainSettings
from .stage1 import PromptHead, draw_batch, load_stage1_parts, stage1_head_file, stage1_loss, stage1_modules
from .stage2 import (
    Stage2Scenes,
    add_adapters,
    draw_examples,
    frozen_weights_in,
    prepare_scenes,
    stage2_loss,
    stage2_parameters,
)

STAGE1_FILE = "stage1.pt"
STAGE2_FILE = "stage2.pt"
STAGE2_SCENES_FILE = "stage2_scenes.pt"  # the scenes' object readings by the finished stage 1 (prepare_scenes)
EVAL_SCENES = 40  # held-out scenes scored through the engine at the end of stage 2 (and its checkpoints)


def new_embedded_model(settings: TrainSettings, progress: bool = True) -> tuple[PixelLMForCausalLM, BPETokenizer]:
    """The embedded PixelLM before training: encoder and LLM from their packages, new parts at random
    (``settings.seed``), the object slots laid out as ``settings`` say (``embedded_config``); the added
    tokens' rows start at the mean of the base vocabulary's rows."""
    llm_config, base_state = load_pretrained_llm_state(BASE_LLM, progress)
    tokenizer_path, roles = pretrained_tokenizer_files(BASE_LLM, progress)
    tokenizer = BPETokenizer(
        Tokenizer.from_file(str(tokenizer_path)), added_token_names(SEG_TOKENS_PER_SCALE * NUM_SCALES),
        bos=roles["bos_token"], eos=roles["eos_token"], pad=roles["pad_token"], unk=roles["unk_token"],
    )
    config = embedded_config(llm_config, tokenizer, settings)
    torch.manual_seed(settings.seed)
    model = PixelLMForCausalLM(config)
    embeddings = base_state["model.embed_tokens.weight"]
    generator = torch.Generator().manual_seed(settings.seed)
    added = embeddings.mean(0) + 0.02 * torch.randn(len(tokenizer.added_tokens), embeddings.shape[1], generator=generator)
    pretrained: dict[str, torch.Tensor] = {}
    for _, source in delta_sources(config, {ADDED_EMBEDDINGS: added}, progress):
        pretrained.update({key: tensor for key, tensor, _ in source})
    places = model.state_dict().keys()  # once: each call walks every module
    missing = [k for k in pretrained if k not in places]
    if missing:
        raise RuntimeError(f"pretrained tensors with no place in the model: {missing[:5]}")
    model.load_state_dict(pretrained, strict=False)
    model.language_model.tie_weights()
    return model.train(), tokenizer


@dataclass
class RunResult:
    model_dir: Path
    model: PixelLMForCausalLM
    tokenizer: BPETokenizer
    seconds: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)


class _Clock:
    """Says when ``minutes`` have passed since the last checkpoint."""

    def __init__(self, minutes: float) -> None:
        self.period, self.last = minutes * 60.0, time.monotonic()

    def due(self) -> bool:
        if self.period > 0 and time.monotonic() - self.last >= self.period:
            self.last = time.monotonic()
            return True
        return False


def _save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def stage1_digest(state: dict[str, Any]) -> str:
    """A digest of a finished stage 1 (``{"modules": [state dicts], "prompt_head": state dict}``, as its
    checkpoint holds them): its parts' and prompt head's tensors only, not the checkpoint's bookkeeping
    (optimizer, step, the folder it was taken from), so two runs that take stage 1 from the same model
    folder, by whatever path, share it."""
    digest = hashlib.sha256()
    for index, tensors in enumerate([*state["modules"], state["prompt_head"]]):
        for name in sorted(tensors):
            tensor = tensors[name].detach().cpu().contiguous()
            digest.update(f"{index}/{name}/{tensor.dtype}/{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _stage2_scenes(out: Path, model: PixelLMForCausalLM, prompt_head: PromptHead, pool: ScenePool, stage1_key: str,
                   say: Callable[[str], None]) -> Stage2Scenes:
    """``prepare_scenes``, computed once a run and kept in ``STAGE2_SCENES_FILE``: every later invocation
    (a resume, a fresh process) reads it instead of running the detector over every scene again. It is
    a function of stage 1's finished parts, the model's config and the scenes, so it is kept under a key
    made of those (``stage1_key``: ``stage1_digest`` of the finished stage 1; another stage 1 or config
    computes it anew)."""
    key = hashlib.sha256((stage1_key
                          + json.dumps(model.config.to_dict(), sort_keys=True) + str(len(pool))).encode()).hexdigest()
    path = out / STAGE2_SCENES_FILE
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        if saved["key"] == key:
            say(f"stage 2: the scenes' object readings read from {STAGE2_SCENES_FILE}")
            return Stage2Scenes(**saved["scenes"])
    scenes = prepare_scenes(model, prompt_head, pool)
    _save(path, {"key": key, "scenes": {f.name: getattr(scenes, f.name) for f in dataclasses.fields(Stage2Scenes)}})
    return scenes


def _one_cycle(optimizer: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=max(steps, 1), pct_start=0.05)


def _restore(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.OneCycleLR,
             saved: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer and schedule. A run resumed with another step count for the
    stage (``--stage2-steps``) keeps its optimizer state and follows the new count's schedule from
    the saved step, as a run made for that count from the start would."""
    if saved["scheduler"]["total_steps"] == scheduler.total_steps:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the schedule stepped without optimizer steps, on purpose
        for _ in range(saved["step"]):
            scheduler.step()
    scheduled = [(group["lr"], group.get("betas")) for group in optimizer.param_groups]
    optimizer.load_state_dict(saved["optimizer"])
    for group, (lr, betas) in zip(optimizer.param_groups, scheduled):
        group["lr"] = lr
        if betas is not None:
            group["betas"] = betas


@dataclass
class _StageRecord:
    """What ``_run_stage`` says of a stage: where it was taken from when its checkpoint says it was not
    trained here ("from"), else None, and the seconds it trained over every invocation of the run."""

    origin: str | None
    seconds: float


@dataclass
class _Stage:
    """One stage of the run: ``step_losses(step)`` gives the step's loss and its logged parts;
    ``load`` / ``state`` restore / give the stage's own tensors in its checkpoint ``path``."""

    name: str  # "stage1" / "stage2": the history's key and what ``stop_requested`` is told
    path: Path
    steps: int
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    lr: float
    step_losses: Callable[[int], tuple[torch.Tensor, dict[str, float]]]
    load: Callable[[dict[str, Any]], object]
    state: Callable[[], dict[str, Any]]
    log_every: int
    postfix: tuple[str, ...]  # the logged parts the progress bar shows


def _run_stage(stage: _Stage, settings: TrainSettings, history: dict[str, list[dict[str, float]]], out: Path,
               say: Callable[[str], None], progress: bool, stop_requested: Callable[[str, int], bool]) -> _StageRecord:
    """Train ``stage`` to its step count from its checkpoint, if any (a finished stage given more steps goes on):
    clipped AdamW steps on the one-cycle schedule, a checkpoint every ``checkpoint_minutes`` and at the end.
    Each checkpoint keeps the seconds the stage has trained, over every invocation of the run."""
    label = stage.name.replace("stage", "stage ")
    scheduler = _one_cycle(stage.optimizer, stage.lr, stage.steps)
    step, done, origin, before = 0, False, None, 0.0
    if stage.path.is_file():
        saved = torch.load(stage.path, weights_only=False)
        stage.load(saved)
        _restore(stage.optimizer, scheduler, saved)
        step = saved["step"]
        done = saved["done"] and step >= stage.steps
        origin = saved.get("from")
        before = float(saved.get("seconds", 0.0))  # a checkpoint written before the count: its own time unknown
        say(f"{label}: resumed at step {step}{' (done)' if done else ''}")

    def save(finished: bool) -> None:
        _save(stage.path, {**stage.state(), "optimizer": stage.optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "step": step, "done": finished,
                           "seconds": before + time.monotonic() - began})
        (out / "history.json").write_text(json.dumps(history))

    clock = _Clock(settings.checkpoint_minutes)
    began = time.monotonic()
    bar = tqdm(total=stage.steps, initial=step, desc=label, unit="step", disable=not progress or done)
    while not done and step < stage.steps:
        if stop_requested(stage.name, step):
            save(False)
            raise KeyboardInterrupt(f"stopped in {label} at step {step} (checkpoint written: run again with resume)")
        total, parts = stage.step_losses(step)
        stage.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(stage.params, 1.0)
        stage.optimizer.step()
        scheduler.step()
        step += 1
        entry = {"step": step, "total": float(total.detach()), **parts}
        history[stage.name].append(entry)
        bar.update(1)
        bar.set_postfix({key: f"{entry[key]:.3f}" for key in stage.postfix})
        if step % stage.log_every == 0:
            say(f"{label} " + " ".join(f"{k} {v:.4g}" for k, v in entry.items()))
        if clock.due():
            save(False)
            say(f"{label}: checkpoint at step {step}")
    bar.close()
    if done:
        return _StageRecord(origin, before)
    save(True)
    return _StageRecord(origin, before + time.monotonic() - began)


def engine_report(model: PixelLMForCausalLM, tokenizer: BPETokenizer, data: Path, limit: int | None = None) -> EvaluationReport:
    """The model (in memory) through the real engine on a MUSE export's questions."""
    from pixellm_ros.engine import PixelLMEngine

    engine = PixelLMEngine(model.eval(), tokenizer)
    report = evaluate(load_muse(data, data.parent / "images"), lambda image, text: [t.mask for t in engine.segment(image, text).targets],
                      limit=limit, progress=False)
    model.train()
    return report


def train(out_dir: str | os.PathLike[str], settings: TrainSettings, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] | None = None,
          stop_requested: Callable[[str, int], bool] = lambda stage, step: False,
          stage1_from: str | os.PathLike[str] | None = None) -> RunResult:
    """Train the embedded model into ``out_dir`` (see the module docstring). ``stop_requested(stage,
    step)`` is polled before every step ("stage1" / "stage2", steps done): when it says so, the stage's checkpoint is written and the run ends
    with KeyboardInterrupt (the CLI sets it on SIGINT / SIGTERM); ``resume`` continues from there.
    ``stage1_from`` (a model folder this function exported) gives stage 1's parts and prompt head
    instead of training them: the run's stage 1 checkpoint is written from it, done."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    def say(line: str) -> None:
        stamped = f"[{time.strftime('%H:%M:%S')}] {line}"
        with (out / "log.txt").open("a", encoding="utf-8") as log_file:
            log_file.write(stamped + "\n")
        (log or tqdm.write)(stamped)

    if not resume and any((out / name).exists() for name in (STAGE1_FILE, STAGE2_FILE)):
        raise FileExistsError(f"{out} holds a run already: pass resume to continue it, or use another folder")
    if stage1_from is not None:
        stage1_head_file(stage1_from)  # before the scenes: a folder that cannot give stage 1 fails at once
    torch.set_num_threads(settings.threads)
    history: dict[str, list[dict[str, float]]] = {"stage1": [], "stage2": [], "eval": []}
    if (out / "history.json").is_file() and resume:
        history = json.loads((out / "history.json").read_text())
    seconds: dict[str, float] = {}
    began = time.monotonic()
    say(f"settings: {json.dumps(asdict(settings))}")

    model, tokenizer = new_embedded_model(settings, progress)
    prompt_head = PromptHead.for_model(model)
    pool = build_pool(model, settings.train_scenes, "train", settings.seed, settings.wide_scene_share, out / "scenes",
                      progress=progress)
    seconds["scenes"] = time.monotonic() - began

    # ------------------------------------------------------------------ stage 1
    modules = stage1_modules(model)
    params = [p for m in modules for p in m.parameters()] + list(prompt_head.parameters())
    generator = torch.Generator().manual_seed(settings.seed)
    stage1_optimizer = torch.optim.AdamW(params, lr=settings.stage1_lr, weight_decay=0.01)

    def stage1_state() -> dict[str, Any]:
        return {"modules": [m.state_dict() for m in modules], "prompt_head": prompt_head.state_dict()}

    if stage1_from is not None and not (out / STAGE1_FILE).is_file():
        loaded = load_stage1_parts(stage1_from, model, prompt_head)
        _save(out / STAGE1_FILE, {**stage1_state(), "optimizer": stage1_optimizer.state_dict(),
                                  "scheduler": _one_cycle(stage1_optimizer, settings.stage1_lr, settings.stage1_steps).state_dict(),
                                  "step": settings.stage1_steps, "done": True, "from": str(stage1_from)})
        say(f"stage 1: taken from {stage1_from} ({loaded} tensors), not trained")

    def stage1_step(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        generator.manual_seed(settings.seed * 100_003 + step)
        losses = stage1_loss(model, prompt_head, pool, draw_batch(len(pool), settings.stage1_batch, settings.seed, step),
                             settings.stage1_masks_per_scene, generator)
        return losses.total, {"heat": losses.heat, "box": losses.box, "attributes": losses.attributes,
                              "mask_bce": losses.mask_bce, "mask_dice": losses.mask_dice}

    def stage1_load(saved: dict[str, Any]) -> None:
        for module, state in zip(modules, saved["modules"]):
            module.load_state_dict(state)
        prompt_head.load_state_dict(saved["prompt_head"])

    stage1 = _run_stage(_Stage("stage1", out / STAGE1_FILE, settings.stage1_steps, params,
                               stage1_optimizer, settings.stage1_lr,
                               stage1_step, stage1_load, stage1_state,
                               log_every=50, postfix=("total", "mask_dice")),
                        settings, history, out, say, progress, stop_requested)
    seconds["stage1"] = stage1.seconds
    stage1_key = stage1_digest(stage1_state())  # the tensors its checkpoint holds, read from memory
    for module in modules:
        module.requires_grad_(False)
    prompt_head.requires_grad_(False)

    # ------------------------------------------------------------------ stage 2
    mark = time.monotonic()
    add_adapters(model, tokenizer, settings.lora_rank)
    scenes = _stage2_scenes(out, model, prompt_head, pool, stage1_key, say)
    seconds["stage2_setup"] = time.monotonic() - mark
    params = stage2_parameters(model)
    trainable = {name for name, p in model.named_parameters() if any(p is q for q in params)}

    kind_weights = settings.kind_weights  # parsed once, not each step

    def stage2_step(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        groups = draw_examples(scenes, pool, settings.stage2_batch, settings.seed, step, settings.phrasing_rate,
                               settings.none_rate, settings.typo_rate, settings.questions_per_scene,
                               settings.list_rate, settings.rewrite_rate, kind_weights)
        losses = stage2_loss(model, tokenizer, scenes, groups, settings.prompt_distillation)
        return losses.total, {"token_ce": losses.token_ce, "distillation": losses.distillation}

    with frozen_weights_in(model):
        stage2 = _run_stage(_Stage("stage2", out / STAGE2_FILE, settings.stage2_steps, params,
                                   torch.optim.AdamW(params, lr=settings.stage2_lr, weight_decay=0.0), settings.stage2_lr,
                                   stage2_step, lambda saved: model.load_state_dict(saved["trainable"], strict=False),
                                   lambda: {"trainable": {k: v for k, v in model.state_dict().items() if k in trainable}},
                                   log_every=25, postfix=("token_ce", "distillation")),
                            settings, history, out, say, progress, stop_requested)
    seconds["stage2"] = stage2.seconds

    # ------------------------------------------------------------------ export and a first look
    mark = time.monotonic()
    model_dir = export_embedded(model, tokenizer, out / "model", prompt_head=prompt_head)
    seconds["export"] = time.monotonic() - mark
    # the stages' seconds are every invocation's (their checkpoints keep the count), the rest this one's
    seconds["total"] = sum(seconds[key] for key in ("scenes", "stage1", "stage2_setup", "stage2", "export"))
    seconds["this_invocation"] = time.monotonic() - began
    mark = time.monotonic()
    evaluation: dict[str, Any] = {}
    if settings.eval_questions > 0:
        data = world_eval_data(out / "eval_data", "heldout", EVAL_SCENES)
        report = engine_report(model, tokenizer, data, limit=settings.eval_questions)
        evaluation = {"scenes": EVAL_SCENES, **report.overall}
        history["eval"].append({"step": settings.stage2_steps,
                                **{k: v for k, v in report.overall.items() if isinstance(v, int | float)}})
        say("held-out look (engine): " + " ".join(f"{k} {v}" for k, v in report.overall.items()))
    seconds["evaluation"] = time.monotonic() - mark
    (out / "history.json").write_text(json.dumps(history))
    plot_loss_curve(history, out / "loss_curve.png", untrained={} if stage1.origin is None else {"stage1": stage1.origin})
    summary = {"settings": asdict(settings), "stage1_from": stage1.origin,
               "seconds": seconds, "evaluation": evaluation,
               "model_bytes": sum(p.stat().st_size for p in model_dir.iterdir())}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"done: {model_dir} in {seconds['total'] / 60:.1f} min of training (stage 1 {seconds['stage1'] / 60:.1f}, "
        f"stage 2 {seconds['stage2'] / 60:.1f} over every invocation; this invocation {seconds['this_invocation'] / 60:.1f})")
    return RunResult(model_dir, model, tokenizer, seconds, evaluation)
