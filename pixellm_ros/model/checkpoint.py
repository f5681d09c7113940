"""Load PixelLM checkpoints: released folders (+ a CLIP folder) and our own folders.

``load_pixellm`` resolves the load options (``load_options``), reads the folder's config (ours:
``saving``; released: ``released_config``), builds the network on the meta device and fills it
strictly (``strict_loading``) from the checkpoint's files and, for a released folder, the CLIP
folder; ``fuse_projections`` then fuses the LLaMA layers' q/k/v and gate/up projections
(``fused_projections``, values unchanged) and ``load_in`` quantises the language model
(``quantization``): ``finish_loading``. Loading is
strict: every checkpoint key must map to a parameter or buffer of the model and every one of
those must be filled, except the ``rotary_emb.inv_freq`` buffers of transformers 4.31 releases.

The names of the other checkpoint modules are re-exported here: ``save_pixellm``,
``save_released_layout``, ``resolve_device``, ``LoadOptionError``, ``CheckpointError``, ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .base_parts import delta_sources, iter_deltas
from .bpe_tokenizer import BPETokenizer, is_bpe_folder
from .clip_folder import (
    CLIP_VISION_PREFIX,
    OUR_VISION_PREFIX,
    POSITION_EMBEDDING_KEY,
    POSITION_IDS_KEY,
    ClipFolderError,
    check_legacy_position_ids,
    clip_weight_files,
    is_full_clip_folder,
    read_clip_vision_config,
    vision_key,
)
from .config import PixelLMConfig
from .fused_projections import fuse_projections as _fuse
from .load_options import LoadOptionError, LoadOptions, resolve_device, resolve_dtype, resolve_load_options
from .pixellm import PixelLMForCausalLM
from .quantization import quantize_language_model
from .released_config import RELEASED_CONFIG_FILE, ReleasedLayoutError, config_from_released, is_released_config
from .released_layout import is_released_inv_freq, our_key_from_released, released_key_from_ours, save_released_layout
from .saving import OUR_CONFIG_FILE, save_pixellm
from .strict_loading import CheckpointError, TensorSource, fill_strictly, parameters_on_meta, raise_for_keys
from .tokenizer import PixelLMTokenizer, check_tokenizer_fits
from .vision import resize_clip_position_embeddings
from .weight_files import WeightFileError, find_weight_files, iter_weight_file

__all__ = [
    "CheckpointError",
    "LoadOptionError",
    "OUR_CONFIG_FILE",
    "finish_loading",
    "load_clip_vision_weights",
    "load_pixellm",
    "resolve_device",
    "resolve_dtype",
    "save_pixellm",
    "save_released_layout",
]


# ------------------------------------------------------------------------------------ loading
def load_pixellm(
    model_dir: str | os.PathLike[str],
    clip_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    load_in: str | None = None,
    progress: bool = True,
    fuse_projections: bool | None = False,
) -> tuple[PixelLMForCausalLM, PixelLMTokenizer]:
    """Load a released folder or one of ours; returns the model (eval mode) and its tokenizer.

    model_dir: a released folder (llava ``config.json``, ``pytorch_model-*.bin`` + index or
    ``*.safetensors``) or our own (``pixellm_config.json`` + ``model.safetensors``).
    clip_dir: the CLIP folder of a released checkpoint (default: ``mm_vision_tower`` when it is a
    local folder; nothing is ever downloaded). load_in: None, "8bit" / "4bit" (bitsandbytes, CUDA
    only) or "int8_weight" / "int4_weight" (torchao; int4 CUDA only, bfloat16): the LLaMA decoder
    layers are quantised, everything else stays in ``dtype``. fuse_projections: fuse q/k/v and
    gate/up after loading (None: on a CUDA device); see finish_loading.
    Raises FileNotFoundError, LoadOptionError or CheckpointError.
    """
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder {str(root)!r} does not exist")
    options = resolve_load_options(device, dtype, load_in)
    # quantised layers are filled on the CPU and quantised on their way to the GPU
    fill_device = torch.device("cpu") if options.load_in else options.device

    tokenizer = load_tokenizer(root)
    try:
        if (root / OUR_CONFIG_FILE).is_file():
            config = _our_config(root, tokenizer)
            ordinary, deltas = iter_deltas((key, tensor) for key, tensor, _ in _our_tensors(root, progress))
            sources = [("model", ((k, t, k) for k, t in ordinary)), *delta_sources(config, deltas, progress)]
            describe_missing: Callable[[str], str] = str
        elif (root / RELEASED_CONFIG_FILE).is_file():
            payload = json.loads((root / RELEASED_CONFIG_FILE).read_text(encoding="utf-8"))
            if not is_released_config(payload):
                raise CheckpointError(f"{root / RELEASED_CONFIG_FILE} is neither a PixelLM (llava) config nor ours")
            clip_root = _released_clip_dir(payload, clip_dir)
            config = config_from_released(payload, read_clip_vision_config(clip_root), tokenizer)
            sources = [
                ("released checkpoint", _released_tensors(root, progress)),
                ("CLIP", _clip_tensors(clip_root, config)),
            ]
            describe_missing = _released_name
        else:
            raise CheckpointError(f"{root} holds neither {OUR_CONFIG_FILE} nor a released {RELEASED_CONFIG_FILE}")

        with parameters_on_meta():
            model = PixelLMForCausalLM(config)
        fill_strictly(model, sources, fill_device, options.dtype, describe_missing)
    except (ReleasedLayoutError, ClipFolderError, WeightFileError, ValueError) as error:
        if isinstance(error, LoadOptionError | CheckpointError):
            raise
        raise CheckpointError(str(error)) from error

    return finish_loading(model, options, fuse_projections), tokenizer


def load_tokenizer(folder: str | os.PathLike[str]) -> PixelLMTokenizer | BPETokenizer:
    """The folder's tokenizer: byte-level BPE (``tokenizer.json``, ours) or sentencepiece (released)."""
    root = Path(folder)
    return BPETokenizer.from_pretrained(root) if is_bpe_folder(root) else PixelLMTokenizer.from_pretrained(root)


def finish_loading(
    model: PixelLMForCausalLM, options: LoadOptions, fuse_projections: bool | None = False
) -> PixelLMForCausalLM:
    """What follows the strict fill (on the CPU for a quantised load, else on the device): fuse the
    projections (None: where it pays, on CUDA), quantise the decoder layers (``options.load_in``),
    move everything to ``options.device``; returns the model in eval mode."""
    fuse = options.device.type == "cuda" if fuse_projections is None else bool(fuse_projections)
    if fuse:
        _fuse(model)
    if options.load_in:
        quantize_language_model(model, options.load_in, options.dtype, options.device)
    model.to(options.device)
    return model.eval()


def load_clip_vision_weights(
    model: PixelLMForCausalLM, clip_dir: str | os.PathLike[str]
) -> PixelLMForCausalLM:
    """Fill a built model's vision tower from a CLIP folder, resizing the position table.

    For building a new PixelLM on a pretrained CLIP (training, tests). Strict like load_pixellm:
    every vision key of the folder must fit the tower and every tower tensor must be filled.
    """
    config: PixelLMConfig = model.config
    if not config.uses_clip:
        raise CheckpointError(f"a {config.image_encoder!r} image encoder has no CLIP weights")
    reference = next(model.parameters())
    tower_keys = {k for k in model.state_dict() if k.startswith(OUR_VISION_PREFIX)}
    loaded: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for our_key, tensor, source in _clip_tensors(Path(clip_dir), config):
        if our_key not in tower_keys:
            unexpected.append(source)
            continue
        loaded[our_key] = tensor.to(device=reference.device, dtype=reference.dtype)
    raise_for_keys(sorted(tower_keys - set(loaded)), unexpected, f"CLIP folder {clip_dir}")
    model.load_state_dict(loaded, strict=False)
    return model


def _our_config(root: Path, tokenizer: PixelLMTokenizer) -> PixelLMConfig:
    config = PixelLMConfig.from_dict(json.loads((root / OUR_CONFIG_FILE).read_text(encoding="utf-8")))
    check_tokenizer_fits(tokenizer, config, CheckpointError)
    return config


def _released_name(our_key: str) -> str:
    """Where a key of ours lives in a released folder + CLIP folder (for error messages)."""
    if our_key.startswith(OUR_VISION_PREFIX):
        return f"{our_key[len(OUR_VISION_PREFIX):]} (CLIP)"
    return released_key_from_ours(our_key)


def _released_clip_dir(payload: dict[str, Any], clip_dir: str | os.PathLike[str] | None) -> Path:
    if clip_dir is not None:
        path = Path(clip_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"CLIP folder {str(path)!r} does not exist")
        return path
    named = str(payload.get("mm_vision_tower", ""))
    if named and Path(named).is_dir():
        return Path(named)
    raise CheckpointError(
        f"a released checkpoint needs its CLIP tower from a local CLIP folder: pass clip_dir "
        f"(mm_vision_tower {named!r} is not a local folder, and nothing is downloaded)"
    )


def _weight_files_or_fail(root: Path) -> list[Path]:
    files = find_weight_files(root)
    if not files:
        raise CheckpointError(f"no weights (model.safetensors / pytorch_model.bin, or their index) in {root}")
    return files


def _with_progress(files: list[Path], progress: bool, what: str) -> Iterator[Path]:
    return iter(tqdm(files, desc=f"Loading {what}", unit="shard", disable=not progress or len(files) < 2))


def _our_tensors(root: Path, progress: bool) -> TensorSource:
    for file in _with_progress(_weight_files_or_fail(root), progress, "PixelLM weights"):
        for key, tensor in iter_weight_file(file):
            yield key, tensor, key


def _released_tensors(root: Path, progress: bool) -> TensorSource:
    for file in _with_progress(_weight_files_or_fail(root), progress, "released PixelLM shards"):
        for key, tensor in iter_weight_file(file):
            # transformers 4.31 saved the rotary frequencies; they are recomputed, never read
            yield (None if is_released_inv_freq(key) else our_key_from_released(key)), tensor, key


def _clip_tensors(clip_dir: Path, config: PixelLMConfig) -> TensorSource:
    """CLIP vision tensors under our names; the position table resized to the run grid."""
    full = is_full_clip_folder(clip_dir)
    pretrained = read_clip_vision_config(clip_dir)
    pretrained_grid = int(pretrained.image_size) // int(pretrained.patch_size)
    if pretrained_grid != config.pretrained_vision_grid:
        raise CheckpointError(
            f"CLIP folder {clip_dir} is at grid {pretrained_grid}, the config expects {config.pretrained_vision_grid}"
        )
    for file in clip_weight_files(clip_dir):
        for key, tensor in iter_weight_file(file):
            name = vision_key(key, full)
            if name is None:
                if key.removeprefix(CLIP_VISION_PREFIX) == POSITION_IDS_KEY:
                    check_legacy_position_ids(tensor, pretrained_grid * pretrained_grid + 1, str(clip_dir))
                continue
            if name == POSITION_EMBEDDING_KEY and pretrained_grid != config.vision_grid:
                tensor = resize_clip_position_embeddings(tensor, config.vision_grid)
            yield OUR_VISION_PREFIX + name, tensor, f"{clip_dir.name}:{key}"
