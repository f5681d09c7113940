"""The tiny models of the tests: one config builder, one random model whose masks are informative,
and the training settings that train them on the CPU in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pixellm_ros.model import PixelLMConfig, PixelLMForCausalLM

if TYPE_CHECKING:
    from pixellm_ros.training.trainer import TrainSettings

TINY_IMAGE_SIZE = 112  # G = 8 patches per side, 32 x 32 low-res masks


def tiny_config(vocab_size: int, image_size: int = TINY_IMAGE_SIZE) -> PixelLMConfig:
    """The test model's config: ``PixelLMConfig.tiny`` for a tokenizer of ``vocab_size`` ids."""
    return PixelLMConfig.tiny(vocab_size=vocab_size, image_size=image_size)


def build_tiny_model(vocab_size: int, seed: int = 0) -> PixelLMForCausalLM:
    """A real, randomly initialised tiny PixelLM whose masks are neither empty nor full.

    At the default init the seg embeddings are small next to the decoder's own tokens and the
    mask logits hover around 0, so every mask would be (almost) the whole image. Widening the seg
    head and the mask hypernetworks' output layer (still random weights, nothing scripted) makes
    masks depend visibly on image, prompt and target, which the tests need to tell them apart.
    """
    torch.manual_seed(seed)
    model = PixelLMForCausalLM(tiny_config(vocab_size)).eval()
    with torch.no_grad():
        for layer in (model.text_hidden_fcs[0][0], model.text_hidden_fcs[0][2]):
            torch.nn.init.normal_(layer.weight, std=2.0 / layer.weight.shape[1] ** 0.5)
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20.0)
            mlp.layers[-1].bias.zero_()
    return model


def tiny_train_settings(out: Path, **overrides: Any) -> TrainSettings:
    """Training settings for the tiny config on the CPU: 4 steps of 2 images x 2 questions at
    TINY_IMAGE_SIZE, no stage 1, no evaluation or checkpoints unless ``overrides`` ask."""
    from pixellm_ros.training.trainer import TrainSettings  # the training stack only where it is used

    values: dict[str, Any] = dict(
        out_dir=str(out), steps=4, images_per_step=2, questions_per_image=2, lr=2e-3, warmup_steps=1,
        eval_every=0, checkpoint_every=0, eval_images=2, image_sizes=[(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)],
        size_weights=[1.0], progress=False, device="cpu", decoder_pretrain_steps=0,
    )
    values.update(overrides)
    return TrainSettings(**values)
