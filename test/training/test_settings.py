"""The training settings are one table: CLI options and recipes come from the dataclass."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

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


def test_recipes_name_only_real_settings() -> None:
    for name, values in RECIPES.items():
        assert set(values) <= set(SETTING_FIELDS), name
        assert dataclasses.asdict(recipe(name))
    with pytest.raises(ValueError, match="unknown training settings"):
        recipe("cpu", stage3_steps=1)
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("gpu")
