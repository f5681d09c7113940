"""Fixtures for the training tests: a world tokenizer trained here and a tiny PixelLM config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pixellm_ros.model.config import PixelLMConfig
from pixellm_ros.model.tokenizer import PixelLMTokenizer
from pixellm_ros.training.dataset import WorldSampler
from pixellm_ros.training.tokenizer_corpus import train_world_tokenizer
from support.tiny_models import TINY_IMAGE_SIZE, tiny_config


@pytest.fixture(autouse=True, scope="session")
def _single_thread() -> None:
    # The test machine's cores are shared; tiny models gain nothing from more threads.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def world_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("world_tokenizer")
    train_world_tokenizer(folder, num_seg_tokens=6, vocab_size=400, num_scenes=40)
    return folder


@pytest.fixture(scope="session")
def world_tokenizer(world_tokenizer_dir: Path) -> PixelLMTokenizer:
    return PixelLMTokenizer.from_pretrained(world_tokenizer_dir)


@pytest.fixture(scope="session")
def config(world_tokenizer: PixelLMTokenizer) -> PixelLMConfig:
    return tiny_config(len(world_tokenizer))


@pytest.fixture(scope="session")
def sampler(world_tokenizer: PixelLMTokenizer) -> WorldSampler:
    return WorldSampler(world_tokenizer, image_sizes=[(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)], questions_per_image=3)
