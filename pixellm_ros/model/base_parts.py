"""A model folder that holds only what training changed, on top of pretrained parts from packages.

The embedded model is a pretrained EfficientNet-Lite0 (``image_encoder``, from its registry package,
frozen) and a pretrained SmolLM2 (``base_llm``, from its registry package) with trained low-rank
adapters; everything else (object tokenizer, seg codebook, pixel decoder) is new. Its folder keeps
the new parts whole and the LLM's changes as deltas, so the repository holds a few MB:

    language_model.<path>.lora_A  (r, in)    low-rank adapter of the Linear at <path>, scale folded
    language_model.<path>.lora_B  (out, r)   into B: the merged weight is W + B @ A
    language_model.added_embeddings  (n, H)  the rows of the added tokens ([SEG0].., <im_start>, <im_end>)

``delta_sources`` turns such a folder plus the packages into the tensor sources of a full model
(adapters merged, added rows appended to the base vocabulary, the tied output layer sharing the
embedding; the base's layers ``base_llm_layers`` renumbered 0.., or its first ``text.num_hidden_layers``
when that is empty), which ``checkpoint.load_pixellm`` then fills strictly like any other folder.
``split_deltas`` goes the other way for saving.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

import torch

from .efficientnet import EFFICIENTNET_LITE, pretrained_weights_path
from .pretrained_llm import load_pretrained_llm_state
from .strict_loading import CheckpointError, TensorSource

LORA_A = ".lora_A"
LORA_B = ".lora_B"
ADDED_EMBEDDINGS = "language_model.added_embeddings"
ENCODER_PREFIX = "image_encoder."
LLM_PREFIX = "language_model."
EMBED_KEY = "language_model.model.embed_tokens.weight"
LM_HEAD_KEY = "language_model.lm_head.weight"
_LAYER = re.compile(r"model\.layers\.(\d+)\.")  # a base LLM tensor's layer number


def is_delta_key(key: str) -> bool:
    return key.endswith(LORA_A) or key.endswith(LORA_B) or key == ADDED_EMBEDDINGS


def encoder_source(name: str) -> TensorSource:
    """The ImageNet weights of the ``name`` encoder, under ``image_encoder.``."""
    state = torch.load(pretrained_weights_path(EFFICIENTNET_LITE[name]), map_location="cpu", weights_only=True)
    for key, tensor in state.items():
        yield ENCODER_PREFIX + key, tensor, f"{EFFICIENTNET_LITE[name].package}:{key}"


def llm_source(
    name: str, deltas: Mapping[str, torch.Tensor], tied: bool, layers: Sequence[int], progress: bool = True
) -> TensorSource:
    """The base LLM ``name``'s layers ``layers`` (the base's numbers, in the order they become this
    LLM's layers 0, 1, ...; plus its embedding and final norm) with ``deltas`` applied, under
    ``language_model.``; a layer the base does not have is an error."""
    base_config, base = load_pretrained_llm_state(name, progress)
    count = base_config["num_hidden_layers"]
    if any(not 0 <= layer < count for layer in layers) or len(set(layers)) != len(layers):
        raise CheckpointError(f"LLM layers {list(layers)} asked of {name!r}, which has {count} (0..{count - 1}, each once)")
    ours_of = {base_layer: i for i, base_layer in enumerate(layers)}
    adapters = {key[: -len(LORA_A)] for key in deltas if key.endswith(LORA_A)}
    used: set[str] = set()
    for base_key, tensor in base.items():
        key = base_key
        layer = _LAYER.match(key)
        if layer is not None:
            ours_number = ours_of.get(int(layer.group(1)))
            if ours_number is None:
                continue
            key = f"model.layers.{ours_number}." + key[layer.end():]
        ours = LLM_PREFIX + key
        path = ours[: -len(".weight")] if ours.endswith(".weight") else None
        if path in adapters:
            lora_a, lora_b = deltas[path + LORA_A], deltas[path + LORA_B]
            tensor = tensor + (lora_b.float() @ lora_a.float()).to(tensor.dtype)
            used.add(path)
        if ours == EMBED_KEY:
            added = deltas.get(ADDED_EMBEDDINGS)
            if added is not None:
                tensor = torch.cat([tensor, added.to(tensor.dtype)])
            yield ours, tensor, f"{name}:{base_key} (+ added rows)"
            if tied:
                yield LM_HEAD_KEY, tensor, f"{name}:{base_key} (tied output layer)"
            continue
        yield ours, tensor, f"{name}:{base_key}"
    unused = sorted(adapters - used)
    if unused:
        raise CheckpointError(f"adapters for layers the base LLM {name!r} does not have: {unused[:5]}")


def delta_sources(config: object, deltas: Mapping[str, torch.Tensor], progress: bool = True) -> list[tuple[str, TensorSource]]:
    """The package sources of a folder's pretrained parts (``config.image_encoder`` when it is a CNN,
    ``config.base_llm`` when set), with ``deltas`` (the folder's delta tensors) applied."""
    sources: list[tuple[str, TensorSource]] = []
    encoder = getattr(config, "image_encoder")
    if encoder != "clip":
        sources.append((f"{EFFICIENTNET_LITE[encoder].package} (package)", encoder_source(encoder)))
    base_llm = getattr(config, "base_llm")
    if base_llm:
        text = getattr(config, "text")
        layers = tuple(getattr(config, "base_llm_layers")) or tuple(range(int(text.num_hidden_layers)))
        if len(layers) != int(text.num_hidden_layers):
            raise CheckpointError(f"base_llm_layers {list(layers)} is not text.num_hidden_layers = {text.num_hidden_layers} layers")
        sources.append((f"{base_llm} (package)",
                        llm_source(base_llm, deltas, bool(text.tie_word_embeddings), layers, progress)))
    elif deltas:
        raise CheckpointError(f"adapter / added-row tensors {sorted(deltas)[:3]} in a folder with no base_llm")
    return sources


def split_deltas(
    state: Mapping[str, torch.Tensor], adapters: Mapping[str, tuple[torch.Tensor, torch.Tensor]], base_vocab: int
) -> dict[str, torch.Tensor]:
    """What a delta folder stores of a trained model: every tensor that is not a pretrained part
    (encoder, base LLM), the ``adapters`` {Linear path under language_model.: (A, B scaled)} and the
    embedding rows from ``base_vocab`` on."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(ENCODER_PREFIX) or key.startswith(LLM_PREFIX):
            continue
        out[key] = tensor
    for path, (lora_a, lora_b) in adapters.items():
        out[LLM_PREFIX + path + LORA_A] = lora_a
        out[LLM_PREFIX + path + LORA_B] = lora_b
    out[ADDED_EMBEDDINGS] = state[EMBED_KEY][base_vocab:]
    return out


def iter_deltas(tensors: Iterator[tuple[str, torch.Tensor]]) -> tuple[list[tuple[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Split a folder's tensors into (ordinary, delta) by key."""
    ordinary: list[tuple[str, torch.Tensor]] = []
    deltas: dict[str, torch.Tensor] = {}
    for key, tensor in tensors:
        (deltas.__setitem__(key, tensor) if is_delta_key(key) else ordinary.append((key, tensor)))
    return ordinary, deltas
