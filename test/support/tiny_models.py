"""The tiny models of the tests: one config builder and one random model whose masks are informative."""

from __future__ import annotations

import torch

from pixellm_ros.model import PixelLMConfig, PixelLMForCausalLM

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
