"""The recipes, budgeted stages, the stage-1 stream and aids, the parallel final evaluation."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

from pixellm_ros.engine.engine import DEFAULT_MODEL_DIR
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from pixellm_ros.training.attribute_heads import AttributeHeads, object_labels
from pixellm_ros.training.cli import add_train_arguments, settings_from_args
from pixellm_ros.training.decoder_pretraining import (
    DecoderBatches,
    DecoderPretrainSettings,
    decoder_batch,
    pretrain_decoder,
)
from pixellm_ros.training.demo_config import MODEL_CONFIGS
from pixellm_ros.training.final_eval import AIMS, evaluate_model_folder, evaluate_run, read_aims
from pixellm_ros.training.loading import as_is, available_cores, resolve_workers, step_loader
from pixellm_ros.training.recipes import RECIPES, recipe
from pixellm_ros.training.schedule import ProgressSchedule, StageClock, progress_lr_factor
from pixellm_ros.training.trainer import Trainer, TrainSettings
from pixellm_ros.model import PixelLMForCausalLM

from support.tiny_models import TINY_IMAGE_SIZE, tiny_config, tiny_train_settings


# ---------------------------------------------------------------------------------- recipes
def test_the_cpu_recipe_is_the_default_settings() -> None:
    assert recipe("cpu").train_settings("x").to_dict() == TrainSettings(out_dir="x").to_dict()


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_valid_settings_and_builds_its_model(name: str) -> None:
    settings = recipe(name).train_settings("out")
    assert settings.recipe == name and settings.model in MODEL_CONFIGS
    config = MODEL_CONFIGS[settings.model](400)
    assert config.vision_stem == ("conv" if name.startswith("gpu") else "patch")


def test_the_gpu_recipe_is_budgeted_parallel_and_evaluated() -> None:
    gpu = recipe("gpu").train_settings("out")
    assert gpu.decoder_pretrain_budget_s + gpu.stage_two_budget_s == 420.0  # 7 minutes of training
    assert gpu.num_workers == -1 and gpu.final_eval_workers == -1 and gpu.amp
    assert gpu.final_eval_scenes == 200 and gpu.final_eval_seed == 1 and gpu.compare_with == "shipped"
    assert gpu.decoder_pretrain_images > TrainSettings(out_dir="").decoder_pretrain_images
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("tpu")


def test_cli_recipe_and_overrides(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    gpu = settings_from_args(parser.parse_args(["--out", str(tmp_path), "--recipe", "gpu"]))
    assert gpu.recipe == "gpu" and gpu.model == "demo_conv" and not gpu.progress
    changed = settings_from_args(parser.parse_args(
        ["--out", str(tmp_path), "--recipe", "gpu", "--stage-two-budget", "60", "--workers", "3", "--model", "demo",
         "--compare-with", ""]
    ))
    assert (changed.stage_two_budget_s, changed.num_workers, changed.model, changed.compare_with) == (60.0, 3, "demo", "")
    assert changed.decoder_pretrain_budget_s == 180.0  # the recipe's, not overridden
    assert settings_from_args(parser.parse_args(["--out", str(tmp_path)])).recipe == "cpu"


# ---------------------------------------------------------------------------------- budgets and schedule
def test_progress_lr_factor_warms_up_then_follows_progress() -> None:
    assert [progress_lr_factor(s, 0.0, 3, 0.1) for s in range(3)] == [0.25, 0.5, 0.75]
    assert progress_lr_factor(3, 0.0, 3, 0.1) == pytest.approx(1.0)
    assert progress_lr_factor(10, 0.5, 3, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert progress_lr_factor(10, 1.0, 3, 0.1) == pytest.approx(0.1)
    assert progress_lr_factor(10, 7.0, 3, 0.1) == pytest.approx(0.1)  # clamped


def test_stage_clock_ends_on_steps_or_budget() -> None:
    unbudgeted = StageClock(steps=4)
    assert not unbudgeted.done(3) and unbudgeted.done(4)
    assert unbudgeted.progress(2) == 0.5
    spent = StageClock(steps=10**6, budget_s=1e-9)  # any time at all is past this budget
    assert spent.done(0) and spent.progress(0) == 1.0


def test_progress_schedule_sets_the_learning_rate_from_progress() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=0.2)
    schedule = ProgressSchedule(optimizer, warmup_steps=0, min_lr_ratio=0.05)
    for progress in (0.25, 0.5, 1.0):
        schedule.set_progress(progress)
        optimizer.step()
        schedule.step()
        expected = 0.2 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    restored = ProgressSchedule(torch.optim.AdamW([param], lr=0.2), 0, 0.05)
    restored.load_state_dict(schedule.state_dict())
    assert restored.progress == 1.0 and restored.last_epoch == schedule.last_epoch


def test_a_budgeted_stage_two_ends_on_its_budget_and_still_saves(tmp_path: Path, world_tokenizer: PixelLMTokenizer) -> None:
    ended = Trainer(tiny_train_settings(tmp_path / "a", steps=10**6, stage_two_budget_s=1e-9, eval_every=5), world_tokenizer,
                    tiny_config)
    assert isinstance(ended.scheduler, ProgressSchedule)
    result = ended.run()
    assert result.steps == 0 and (result.model_dir / "model.safetensors").is_file()
    roomy = Trainer(tiny_train_settings(tmp_path / "b", steps=3, stage_two_budget_s=3600.0, eval_every=2), world_tokenizer,
                    tiny_config)
    result = roomy.run(save_model=False)
    assert result.steps == 3
    assert [row["step"] for row in roomy.state.eval_history] == [2.0, 3.0]  # the last step is evaluated
    lrs = [row["lr"] for row in roomy.state.train_history]
    assert lrs[0] < lrs[1] and lrs[2] < lrs[1]  # warm-up, then the decay by progress


# ---------------------------------------------------------------------------------- stage 1
def test_the_stage_one_stream_is_the_same_with_workers(config) -> None:  # type: ignore[no-untyped-def]
    settings = DecoderPretrainSettings(steps=4, images_per_step=2, image_size=TINY_IMAGE_SIZE, seed=3)
    direct = [decoder_batch(config, settings, step) for step in range(4)]
    loader = step_loader(DecoderBatches(config, settings), as_is, workers=2)
    # spawned, never forked: this pytest process runs DDS and torch threads whose locks a fork would copy
    assert loader.multiprocessing_context.get_start_method() == "spawn" and loader.timeout > 0
    loaded = list(loader)
    assert len(loaded) == 4
    for a, b in zip(direct, loaded):
        assert torch.equal(a.pixel_values, b.pixel_values) and a.names == b.names
        assert all(torch.equal(x, y) for x, y in zip(a.masks, b.masks))


def test_stage_one_with_attribute_heads_and_a_cosine(config) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = PixelLMForCausalLM(config)
    settings = DecoderPretrainSettings(
        steps=4, images_per_step=2, image_size=TINY_IMAGE_SIZE, schedule="cosine", warmup_steps=1,
        min_lr_ratio=0.1, attribute_weight=0.5, workers=1,
    )
    llm_before = model.language_model.lm_head.weight.detach().clone()
    _, history = pretrain_decoder(model, settings, progress=False)
    assert [row["step"] for row in history] == [1.0, 2.0, 3.0, 4.0]
    assert all(0.0 <= row["object_shape_accuracy"] <= 1.0 and row["attribute_loss"] > 0 for row in history)
    lrs = [row["lr"] for row in history]
    assert lrs[0] < lrs[1] and lrs[3] < lrs[1]
    assert torch.equal(model.language_model.lm_head.weight, llm_before)
    with pytest.raises(ValueError, match="schedule"):
        pretrain_decoder(model, DecoderPretrainSettings(steps=1, schedule="linear"), progress=False)


def test_object_labels_cover_patches_and_leave_padding_out() -> None:
    masks = torch.zeros(2, 14, 21, dtype=torch.bool)
    masks[0, 0:7, 0:7] = True  # exactly patch (0, 0)
    masks[1, 7:14, 7:21] = True  # patches (1, 1) and (1, 2)
    labels = object_labels(masks, ["red", "blue"], ["ball", "star"], valid_hw=(14, 21), image_size=21, patch_size=7)
    grid = labels.coverage.view(2, 3, 3)
    assert grid[0, 0, 0] == 1.0 and grid[0].sum() == 1.0
    assert grid[1, 1, 1] == grid[1, 1, 2] == 1.0 and grid[1].sum() == 2.0
    assert labels.valid.view(3, 3).tolist() == [[True] * 3, [True] * 3, [False] * 3]  # row 2 is padding
    heads = AttributeHeads(4)
    features = torch.randn(1, 9, 4, requires_grad=True)
    loss, metrics = heads(features, [labels])
    loss.backward()
    assert metrics["objects"] == 2.0 and features.grad is not None
    assert features.grad[0, 6:].abs().sum() == 0  # the padded row gets no gradient
    assert features.grad[0, 0].abs().sum() > 0


def test_auto_workers_leave_two_cores() -> None:
    assert resolve_workers(0) == 0 and resolve_workers(3) == 3
    assert resolve_workers(-1) == max(available_cores() - 2, 1)
    with pytest.raises(ValueError):
        resolve_workers(-2)


# ---------------------------------------------------------------------------------- final evaluation
def test_parallel_evaluation_is_the_serial_one_and_a_run_compares(tmp_path: Path) -> None:
    serial = evaluate_model_folder(DEFAULT_MODEL_DIR, tmp_path / "data", "heldout", 3, seed=1, progress=False)
    parallel = evaluate_model_folder(DEFAULT_MODEL_DIR, tmp_path / "data", "heldout", 3, seed=1, progress=False,
                                     workers=2)
    assert parallel.to_dict() == serial.to_dict() and serial.overall["num_questions"] == 15

    summary = evaluate_run(DEFAULT_MODEL_DIR, tmp_path / "run", 3, seed=1, compare_with="shipped")
    for name in ("eval_new.json", "eval_base.json", "comparison.json", "eval_summary.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert summary["new"]["overall"] == serial.overall  # the same 3 scenes of the seed-1 export
    compared = summary["comparison"]["metrics"]
    assert all(m["difference"] == 0.0 for m in compared.values())  # the shipped model against itself
    assert set(summary["aims"]) == set(AIMS)
    assert summary["aims"]["giou"] == {"value": serial.overall["giou"], "aim": 0.75, "met": serial.overall["giou"] >= 0.75}
    assert json.loads((tmp_path / "run" / "eval_summary.json").read_text())["scenes"] == 3
    assert read_aims({"overall": {}})["giou"]["met"] is False
