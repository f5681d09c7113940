"""The released PixelLM checkpoint layout: key names and a writer (config.json: ``released_config``).

A released folder holds ``config.json`` (llava format), ``generation_config.json``, the tokenizer
files and ``pytorch_model-*.bin`` shards with ``pytorch_model.bin.index.json``. The CLIP tower is a
separate CLIP folder named by ``mm_vision_tower``, at CLIP's own (pretrained) grid.

Key names, ours -> released::

    language_model.model.{embed_tokens,layers,norm}.*   model.{embed_tokens,layers,norm}.*
    language_model.lm_head.*                            lm_head.*
    {mm_projector, out_mm_projector, image_feature_neck,
     text_hidden_fcs, prompt_encoder, mask_decoder}.*   model.{same}.*
    vision_tower.vision_model.*                         (CLIP folder) vision_model.*

plus ``model.layers.N.self_attn.rotary_emb.inv_freq``, which transformers 4.31 saved and nothing
reads: a loader skips exactly these, and the writer puts them in so that written folders look
like the released ones.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .clip_folder import (
    OUR_VISION_PREFIX,
    POSITION_EMBEDDING_KEY,
    ClipFolderError,
    clip_weight_files,
    is_full_clip_folder,
    read_clip_vision_config,
    vision_key,
    write_clip_vision_folder,
)
from .config import PixelLMConfig
from .fused_projections import SAVE_REFUSAL, has_fused_projections
from .released_config import (
    RELEASED_CONFIG_FILE,
    VISION_ARCHITECTURE,
    ReleasedLayoutError,
    config_from_released,
    released_config_mismatches,
    released_config_payload,
    rope_theta,
)
from .tokenizer import PixelLMTokenizer, check_tokenizer_fits
from .vision import resize_clip_position_embeddings
from .weight_files import find_weight_files, iter_weight_file, write_bin_shards

INV_FREQ_KEY = re.compile(r"model\.layers\.(\d+)\.self_attn\.rotary_emb\.inv_freq")
# Our top-level modules that the released checkpoint keeps under ``model.``.
RELEASED_SUBMODULES: tuple[str, ...] = (
    "mm_projector",
    "out_mm_projector",
    "image_feature_neck",
    "text_hidden_fcs",
    "prompt_encoder",
    "mask_decoder",
)
_LANGUAGE_PREFIX = "language_model."
# transformers' default max_shard_size of the 4.31 days
DEFAULT_MAX_SHARD_BYTES = 10 * 10**9


# ------------------------------------------------------------------------------------ key names
def is_released_inv_freq(key: str) -> bool:
    """True exactly for ``model.layers.N.self_attn.rotary_emb.inv_freq``."""
    return INV_FREQ_KEY.fullmatch(key) is not None


def our_key_from_released(key: str) -> str:
    """Our state-dict key for a released key (the caller decides what to do with inv_freq)."""
    if key.startswith("model."):
        head = key[len("model.") :].split(".", 1)[0]
        if head in RELEASED_SUBMODULES:
            return key[len("model.") :]
    return _LANGUAGE_PREFIX + key


def released_key_from_ours(key: str) -> str:
    """The released name of one of our keys (language model and PixelLM heads only)."""
    if key.startswith(_LANGUAGE_PREFIX):
        return key[len(_LANGUAGE_PREFIX) :]
    if key.split(".", 1)[0] in RELEASED_SUBMODULES:
        return "model." + key
    raise ReleasedLayoutError(f"{key} has no place in a released checkpoint")


def rotary_inv_freq(config: PixelLMConfig) -> torch.Tensor:
    """(head_dim / 2,) float32: LLaMA's rotary frequencies, as transformers 4.31 stored them."""
    head_dim = int(config.text.head_dim)
    return 1.0 / (rope_theta(config) ** (torch.arange(0, head_dim, 2).float() / head_dim))


# ------------------------------------------------------------------------------------ writer
def save_released_layout(
    model: torch.nn.Module,
    tokenizer: PixelLMTokenizer,
    folder: str | os.PathLike[str],
    clip_folder: str | os.PathLike[str],
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    clip_source: str | os.PathLike[str] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` as a released-layout folder at ``folder`` and its CLIP tower at ``clip_folder``.

    The CLIP folder must be at CLIP's pretrained grid, and the model only holds the resized
    position table, which cannot be resized back. So either

    - ``clip_folder`` already holds the CLIP the tower was built from: it is checked (loading
      and resizing it must give the tower's weights exactly) and left as it is; or
    - ``clip_source`` names that CLIP: its pretrained position table is taken (after the same
      check) and the tower's other weights are written to ``clip_folder``; or
    - the run grid equals the pretrained grid: the tower is written as it is.

    ``config.json`` points ``mm_vision_tower`` at ``clip_folder``. Weights are written in
    ``dtype`` (default: the model's), with the 4.31 ``rotary_emb.inv_freq`` buffers added.
    Raises ReleasedLayoutError for models the layout cannot express (learned fusion, a vision
    stem other than CLIP's patch embedding, vision layer indices or decoder sizes other than the
    released ones, a vocabulary that is not the tokenizer's) and for fused projections (unfuse
    them first).
    """
    if has_fused_projections(model):
        raise ReleasedLayoutError(SAVE_REFUSAL)
    config: PixelLMConfig = model.config  # type: ignore[assignment]
    if config.fusion != "released_constant":
        raise ReleasedLayoutError("the released layout has no place for a learned seg fusion")
    if not config.uses_clip:
        raise ReleasedLayoutError(
            f"the released layout has no place for a {config.image_encoder!r} image encoder: it holds a CLIP "
            "tower only (save this model with save_pixellm)"
        )
    check_tokenizer_fits(tokenizer, config, ReleasedLayoutError)
    out = Path(folder)
    clip_out = Path(clip_folder).resolve()
    state = model.state_dict()
    weight_dtype = dtype or next(t.dtype for t in state.values() if t.is_floating_point())

    # First what config.json can say (before anything is written): re-read it as a loader would.
    pretrained_config = type(config.vision).from_dict(config.vision.to_dict())
    pretrained_config.image_size = config.vision_pretrained_image_size
    payload = released_config_payload(config, weight_dtype, str(clip_out))
    try:
        reread = config_from_released(payload, pretrained_config, tokenizer)
    except ValueError as error:
        raise ReleasedLayoutError(f"the released config.json cannot express this model: {error}") from error
    mismatches = released_config_mismatches(config, reread)
    if mismatches:
        raise ReleasedLayoutError("the released config.json cannot express this model: " + "; ".join(mismatches))

    tower = {k[len(OUR_VISION_PREFIX) :]: v for k, v in state.items() if k.startswith(OUR_VISION_PREFIX)}
    _write_or_check_clip(config, pretrained_config, tower, clip_out, clip_source, weight_dtype)

    out.mkdir(parents=True, exist_ok=True)
    write_bin_shards(dict(_released_tensors(config, state, weight_dtype)), out, max_shard_bytes)
    (out / RELEASED_CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    generation = {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        "transformers_version": "4.31.0",
    }
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(out)
    return out


def _released_tensors(
    config: PixelLMConfig, state: dict[str, torch.Tensor], dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """Released (key, tensor) pairs in LLaMA-checkpoint order, inv_freq after each layer's weights."""
    inv_freq = rotary_inv_freq(config).to(dtype)
    layer_of = re.compile(r"model\.layers\.(\d+)\.")
    current_layer: str | None = None
    language = [k for k in state if k.startswith(_LANGUAGE_PREFIX)]
    heads = [k for k in state if k.split(".", 1)[0] in RELEASED_SUBMODULES]
    leftovers = set(state) - set(language) - set(heads) - {k for k in state if k.startswith(OUR_VISION_PREFIX)}
    if leftovers:
        raise ReleasedLayoutError(f"keys with no place in a released checkpoint: {sorted(leftovers)}")
    for key in language + heads:
        name = released_key_from_ours(key)
        match = layer_of.match(name)
        layer = match.group(1) if match else None
        if current_layer is not None and layer != current_layer:
            yield f"model.layers.{current_layer}.self_attn.rotary_emb.inv_freq", inv_freq.clone()
        current_layer = layer
        tensor = state[key]
        yield name, tensor.to(dtype) if tensor.is_floating_point() else tensor
    if current_layer is not None:
        yield f"model.layers.{current_layer}.self_attn.rotary_emb.inv_freq", inv_freq.clone()


def _write_or_check_clip(
    config: PixelLMConfig,
    pretrained_config: Any,
    tower: dict[str, torch.Tensor],
    clip_out: Path,
    clip_source: str | os.PathLike[str] | None,
    dtype: torch.dtype,
) -> None:
    """Check or write the CLIP folder (see save_released_layout)."""
    if find_weight_files(clip_out) and clip_source is None:
        _check_clip_config(pretrained_config, clip_out)
        _check_tower_matches_clip(config, tower, clip_out)
        return
    table = tower[POSITION_EMBEDDING_KEY]
    if clip_source is not None:
        _check_clip_config(pretrained_config, Path(clip_source))
        _check_tower_matches_clip(config, {POSITION_EMBEDDING_KEY: table}, Path(clip_source))
        table = _clip_tensor(Path(clip_source), POSITION_EMBEDDING_KEY)
    elif config.pretrained_vision_grid != config.vision_grid:
        raise ReleasedLayoutError(
            f"the tower's position table is resized ({config.pretrained_vision_grid} -> {config.vision_grid} grid) "
            "and cannot be resized back: pass clip_source (the CLIP it was built from) or an existing clip_folder"
        )
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tower.items()}
    tensors[POSITION_EMBEDDING_KEY] = table.to(dtype)
    write_clip_vision_folder(clip_out, pretrained_config, tensors)


def _check_clip_config(pretrained_config: Any, clip_dir: Path) -> None:
    theirs = read_clip_vision_config(clip_dir)
    differing = [
        f"{name}: {getattr(theirs, name, None)!r} (model {getattr(pretrained_config, name, None)!r})"
        for name in VISION_ARCHITECTURE
        if getattr(theirs, name, None) != getattr(pretrained_config, name, None)
    ]
    if differing:
        raise ReleasedLayoutError(f"the CLIP in {clip_dir} is not the tower's architecture: " + "; ".join(differing))


def _clip_tensor(clip_dir: Path, wanted: str) -> torch.Tensor:
    full = is_full_clip_folder(clip_dir)
    for file in clip_weight_files(clip_dir):
        for key, tensor in iter_weight_file(file):
            if vision_key(key, full) == wanted:
                return tensor
    raise ClipFolderError(f"no {wanted} in the CLIP weights of {clip_dir}")


def _check_tower_matches_clip(config: PixelLMConfig, tower: dict[str, torch.Tensor], clip_dir: Path) -> None:
    """Every given tower tensor must equal the CLIP folder's (resized, cast) tensor of that name."""
    full = is_full_clip_folder(clip_dir)
    differing: list[str] = []
    seen: set[str] = set()
    for file in clip_weight_files(clip_dir):
        for key, tensor in iter_weight_file(file):
            name = vision_key(key, full)
            if name is None or name not in tower:
                continue
            seen.add(name)
            if name == POSITION_EMBEDDING_KEY and tensor.shape != tower[name].shape:
                tensor = resize_clip_position_embeddings(tensor, config.vision_grid)
            mine = tower[name]
            if tensor.shape != mine.shape or not torch.equal(tensor.to(mine.dtype), mine):
                differing.append(name)
    missing = sorted(set(tower) - seen)
    if differing or missing:
        raise ReleasedLayoutError(
            f"the vision tower is not the CLIP in {clip_dir}: differing {sorted(differing)}, absent {missing}"
        )
