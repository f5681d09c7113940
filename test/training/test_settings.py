"""The training settings are one table: CLI options and recipes come from the dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch

from pixellm_ros.training import cli as train_cli
from pixellm_ros.training.cli import AFTER_FILE, AfterTraining
from pixellm_ros.world.questions import KIND_WEIGHTS
from pixellm_ros.training.settings import RECIPES, SETTING_FIELDS, TrainSettings, add_setting_options, recipe, settings_from_args


def test_every_setting_is_a_cli_option_with_its_help() -> None:
    parser = argparse.ArgumentParser()
    add_setting_options(parser)
    options = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(options) == set(SETTING_FIELDS)
    for name, action in options.items():
        assert SETTING_FIELDS[name].metadata["help"] in action.help


def test_options_override_the_recipe() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default=None)
    add_setting_options(parser)
    settings = settings_from_args(parser.parse_args(["--recipe", "tiny", "--stage2-steps", "7", "--stage2-lr", "3e-4"]))
    assert settings.stage2_steps == 7 and settings.stage2_lr == 3e-4
    assert settings.train_scenes == RECIPES["tiny"]["train_scenes"]
    assert settings_from_args(parser.parse_args([])) == TrainSettings()
    # a yes / no setting is a flag and its --no- form
    assert settings_from_args(parser.parse_args(["--object-neighbour-words"])).object_neighbour_words is True
    assert settings_from_args(parser.parse_args(["--no-object-neighbour-words"])).object_neighbour_words is False
    assert settings_from_args(parser.parse_args(["--object-neighbour-marker", "near"])).object_neighbour_marker == "near"
    # the default marker goes with the neighbour's words: without them, no marker (and no refusal)
    assert settings_from_args(parser.parse_args(["--no-object-neighbour-words"])).slot_marker == ""


def test_question_kinds_replace_the_worlds_weights_for_the_kinds_named() -> None:
    assert TrainSettings().kind_weights == KIND_WEIGHTS
    weights = TrainSettings(question_kinds="affordance=3, half=1.2").kind_weights
    assert weights == {**KIND_WEIGHTS, "affordance": 3.0, "half": 1.2} and KIND_WEIGHTS["affordance"] != 3.0
    for wrong, message in (("rolling=2", "unknown kind 'rolling'"), ("half:2", "not kind=weight"), ("size=-1", "negative")):
        with pytest.raises(ValueError, match=message):
            TrainSettings(question_kinds=wrong)


def test_recipes_name_only_real_settings() -> None:
    for name, values in RECIPES.items():
        assert set(values) <= set(SETTING_FIELDS), name
        assert dataclasses.asdict(recipe(name))
    with pytest.raises(ValueError, match="unknown training settings"):
        recipe("cpu", stage3_steps=1)
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("gpu")


def test_a_run_resumed_with_another_step_count_follows_the_new_schedule() -> None:
    """`--resume --stage2-steps N`: the optimizer state is kept and the learning rate from the saved
    step on is the one a run made for N steps would have (it anneals to ~0 at step N)."""
    from pixellm_ros.training.run import _one_cycle, _restore

    weight = torch.nn.Parameter(torch.zeros(3))

    def fresh(steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
        optimizer = torch.optim.AdamW([weight], lr=1e-3)
        return optimizer, _one_cycle(optimizer, 1e-3, steps)

    first, first_schedule = fresh(1300)
    for _ in range(60):
        weight.grad = torch.ones(3)
        first.step()
        first_schedule.step()
    saved = {"optimizer": first.state_dict(), "scheduler": first_schedule.state_dict(), "step": 60}
    resumed, schedule = fresh(900)
    _restore(resumed, schedule, saved)
    reference, reference_schedule = fresh(900)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a schedule stepped without optimizer steps, on purpose
        for _ in range(60):
            reference_schedule.step()
    assert resumed.param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])
    assert resumed.param_groups[0]["lr"] != pytest.approx(first.param_groups[0]["lr"])
    assert torch.equal(resumed.state_dict()["state"][0]["exp_avg"], first.state_dict()["state"][0]["exp_avg"])
    for _ in range(840):
        resumed.step()
        schedule.step()
    assert resumed.param_groups[0]["lr"] < 1e-6
    same, same_schedule = fresh(1300)
    _restore(same, same_schedule, saved)  # the same count: the schedule's own state
    assert same_schedule.state_dict() == first_schedule.state_dict()


def test_a_resumed_run_does_after_training_what_its_first_invocation_asked(tmp_path: Path) -> None:
    """`train --out RUN --eval-scenes 200 --compare-with R`, stopped, then `train --out RUN --resume`:
    the resumed run still evaluates against R (and exports where it was asked to); an option given on
    resume wins, and is what the next resume does."""
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)

    def after(*options: str) -> AfterTraining:
        return train_cli.after_training(parser.parse_args(["--out", str(tmp_path), *options]))

    first = after("--eval-scenes", "200", "--compare-with", "base.json", "--export", "exported")
    assert first == AfterTraining(export=str(Path("exported").absolute()), eval_scenes=200,
                                  compare_with=str(Path("base.json").absolute()))  # a resume may start elsewhere
    assert json.loads((tmp_path / AFTER_FILE).read_text())["eval_scenes"] == 200
    assert after("--resume") == first
    assert after("--resume", "--eval-scenes", "0") == dataclasses.replace(first, eval_scenes=0)
    assert after("--resume").eval_scenes == 0
    assert after() == AfterTraining()  # not a resume: nothing is taken from the folder
