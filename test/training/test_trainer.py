"""The trainer: it learns a fixed batch, resumes bit-exactly, writes curves and a loadable model."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from pixellm_ros.model.checkpoint import load_pixellm
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from pixellm_ros.training.cli import add_train_arguments, settings_from_args
from pixellm_ros.training.dataset import collate_samples, step_rng
from pixellm_ros.training.trainer import Trainer, TrainSettings

from support.tiny_models import tiny_config, tiny_train_settings


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(tmp_path: Path, world_tokenizer: PixelLMTokenizer) -> None:
    trainer = Trainer(tiny_train_settings(tmp_path, steps=30, warmup_steps=2), world_tokenizer, tiny_config)
    sampler = trainer.sampler()
    batch = collate_samples([sampler.sample(step_rng(5, 0, i)) for i in range(2)], trainer.config, 0)
    losses = [trainer.train_step(batch) for _ in range(20)]
    first, last = losses[0], losses[-1]
    assert last["total"] < 0.6 * first["total"]
    assert last["token_ce"] < 0.6 * first["token_ce"]
    assert last["mask_bce"] < first["mask_bce"]
    assert trainer.step == 20


def test_resume_continues_with_the_same_next_step(tmp_path: Path, world_tokenizer: PixelLMTokenizer) -> None:
    straight = Trainer(tiny_train_settings(tmp_path / "a"), world_tokenizer, tiny_config)
    batches = straight.batches(0)
    straight.train_step(next(batches))
    straight.train_step(next(batches))
    straight.save_checkpoint()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    third = straight.train_step(next(batches))

    resumed = Trainer(tiny_train_settings(tmp_path / "b"), world_tokenizer, tiny_config, resume=True)
    assert resumed.step == 2
    assert len(resumed.state.train_history) == 2
    again = resumed.train_step(next(resumed.batches(resumed.step)))
    assert again["step"] == third["step"] == 3.0
    assert again["total"] == third["total"]  # bit-identical on the same machine and thread count
    assert again["lr"] == third["lr"]
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name


def test_run_writes_checkpoint_curves_and_a_loadable_model(tmp_path: Path, world_tokenizer: PixelLMTokenizer) -> None:
    trainer = Trainer(
        tiny_train_settings(tmp_path, steps=2, eval_every=2, checkpoint_every=1, export_dtype="float16"), world_tokenizer, tiny_config
    )
    result = trainer.run()
    assert result.steps == 2
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1.0, 2.0]
    assert history["eval"][0]["step"] == 2.0 and 0.0 <= history["eval"][0]["mask_iou"] <= 1.0

    model, tokenizer = load_pixellm(result.model_dir, progress=False)  # float16 on disk, float32 here
    assert len(tokenizer) == len(world_tokenizer)
    for (name, loaded), trained in zip(model.state_dict().items(), trainer.model.state_dict().values()):
        if trained.is_floating_point():
            assert loaded.dtype == torch.float32, name
            assert torch.equal(loaded, trained.half().float()), name


def test_cli_settings(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    fresh = settings_from_args(parser.parse_args(["--out", str(tmp_path), "--steps", "7", "--threads", "2"]))
    assert (fresh.steps, fresh.threads, fresh.out_dir) == (7, 2, str(tmp_path))
    assert fresh.freeze_image_path
    assert not settings_from_args(parser.parse_args(["--out", str(tmp_path), "--no-freeze-image-path"])).freeze_image_path
    saved = TrainSettings(out_dir=str(tmp_path), steps=9, lr=1e-3)
    (tmp_path / "settings.json").write_text(json.dumps(saved.to_dict()))
    resumed = settings_from_args(parser.parse_args(["--out", str(tmp_path), "--resume"]))
    assert (resumed.steps, resumed.lr) == (9, 1e-3)  # the run's own settings, not the defaults


def test_loss_schedule_turns_the_token_loss_on_gradually() -> None:
    from pixellm_ros.training.trainer import loss_weights_at

    assert [loss_weights_at(s, 2, 3).ce for s in range(7)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert loss_weights_at(0, 0, 0).ce == 1.0  # default: PixelLM's weights from the first step
    assert loss_weights_at(0, 2, 3).bce == 2.0 and loss_weights_at(0, 2, 3).dice == 0.5


def test_stage_one_trains_the_decoder_and_its_name_prompts_guide_stage_two(
    tmp_path: Path, world_tokenizer: PixelLMTokenizer
) -> None:
    settings = tiny_train_settings(tmp_path, steps=2, decoder_pretrain_steps=3, decoder_pretrain_images=2, checkpoint_every=1)
    trainer = Trainer(settings, world_tokenizer, tiny_config)
    decoder_before = trainer.model.mask_decoder.iou_token.weight.detach().clone()
    llm_before = trainer.model.language_model.lm_head.weight.detach().clone()
    trainer.pretrain_decoder()
    assert trainer.name_prompts is not None and trainer.name_prompts_path.is_file()
    assert not torch.equal(trainer.model.mask_decoder.iou_token.weight, decoder_before)  # stage 1 trained it
    assert torch.equal(trainer.model.language_model.lm_head.weight, llm_before)  # and left the LLM alone
    stage_one = torch.load(trainer.name_prompts_path, weights_only=True)["history"]
    assert [row["step"] for row in stage_one] == [1.0, 2.0, 3.0]

    image_path_after_stage_one = _image_path_state(trainer)
    trainer.run(save_model=False)
    rows = trainer.state.train_history
    assert len(rows) == 2 and all(row["prompt_aids"] > 0 for row in rows)  # the distillation pull is on
    assert settings.freeze_image_path  # the default: stage 2 keeps stage 1's vision tower and decoder
    _assert_same(_image_path_state(trainer), image_path_after_stage_one)
    assert not torch.equal(trainer.model.language_model.lm_head.weight, llm_before)  # the LLM trained

    resumed = Trainer(tiny_train_settings(tmp_path, steps=3, decoder_pretrain_steps=3), world_tokenizer, tiny_config, resume=True)
    assert resumed.step == 2 and resumed.name_prompts is not None
    assert not any(p.requires_grad for p in resumed.name_prompts.parameters())
    torch.testing.assert_close(resumed.name_prompts.colours.weight, trainer.name_prompts.colours.weight)
    resumed.run(save_model=False)
    assert resumed.step == 3
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["step"] for row in history["stage_one"]] == [1.0, 2.0, 3.0]  # kept across the resume
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    _assert_same(_image_path_state(resumed), image_path_after_stage_one)  # still frozen after a resume


def test_stage_two_can_keep_training_the_image_path(tmp_path: Path, world_tokenizer: PixelLMTokenizer) -> None:
    settings = tiny_train_settings(
        tmp_path, steps=2, decoder_pretrain_steps=2, decoder_pretrain_images=2, freeze_image_path=False
    )
    trainer = Trainer(settings, world_tokenizer, tiny_config)
    trainer.pretrain_decoder()
    after_stage_one = _image_path_state(trainer)
    trainer.run(save_model=False)
    changed = [k for k, v in _image_path_state(trainer).items() if not torch.equal(v, after_stage_one[k])]
    assert any(k.startswith("vision_tower.") for k in changed) and any(k.startswith("mask_decoder.") for k in changed)


def _image_path_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    parts = ("vision_tower.", "out_mm_projector.", "image_feature_neck.", "prompt_encoder.", "mask_decoder.")
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items() if k.startswith(parts)}


def _assert_same(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert state.keys() == reference.keys() and state
    for key, value in state.items():
        assert torch.equal(value, reference[key]), key
