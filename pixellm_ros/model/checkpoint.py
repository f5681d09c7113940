"""Load and save PixelLM checkpoints: released folders (+ a CLIP folder) and our own folders.

``load_pixellm`` builds the network with its parameters on the meta device (no memory, no
initialisation), then assigns every tensor of the checkpoint straight from the file, converted to
the target dtype and device, one file at a time: a 7B model is never held twice. Loading is
strict: every checkpoint key must map to a parameter or buffer of the model and every one of
those must be filled, except the ``rotary_emb.inv_freq`` buffers of transformers 4.31 releases.

Our own folder (``save_pixellm``): ``pixellm_config.json`` (PixelLMConfig.to_dict()),
``model.safetensors`` (the whole network, vision tower included) and the tokenizer files.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from .clip_folder import (
    OUR_VISION_PREFIX,
    POSITION_EMBEDDING_KEY,
    POSITION_IDS_KEY,
    CLIP_VISION_PREFIX,
    ClipFolderError,
    check_legacy_position_ids,
    clip_weight_files,
    is_full_clip_config,
    read_clip_vision_config,
    vision_key,
)
from .config import PixelLMConfig
from .pixellm import PixelLMForCausalLM
from .released_layout import (
    ReleasedLayoutError,
    config_from_released,
    is_released_config,
    is_released_inv_freq,
    our_key_from_released,
    released_key_from_ours,
    save_released_layout,
)
from .tokenizer import PixelLMTokenizer
from .vision import resize_clip_position_embeddings
from .weight_files import SAFETENSORS_FILE, WeightFileError, find_weight_files, iter_weight_file

__all__ = [
    "CheckpointError",
    "LoadOptionError",
    "OUR_CONFIG_FILE",
    "load_clip_vision_weights",
    "load_pixellm",
    "resolve_device",
    "resolve_dtype",
    "save_pixellm",
    "save_released_layout",
]

OUR_CONFIG_FILE = "pixellm_config.json"
RELEASED_CONFIG_FILE = "config.json"

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}
_QUANTIZATIONS = ("8bit", "4bit")


class CheckpointError(RuntimeError):
    """A checkpoint folder that does not describe this network exactly (names the keys)."""


class LoadOptionError(ValueError):
    """A load option that cannot be honoured here: unknown/absent device, dtype, quantisation."""


# ------------------------------------------------------------------------------------ options
def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu" | "cuda" | "cuda:N" | "auto"`` (cuda when available) -> an existing torch.device."""
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise LoadOptionError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'") from error
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise LoadOptionError(f"unsupported device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    if not torch.cuda.is_available():
        raise LoadOptionError(f"device {device!r} requested but CUDA is not available on this machine")
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise LoadOptionError(f"device {device!r} does not exist: this machine has {count} CUDA device(s)")
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """torch.float32/bfloat16/float16 or their names ("float32", "bf16", ...)."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        key = str(dtype).strip().lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise LoadOptionError(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16")
        resolved = _DTYPES[key]
    if resolved not in (torch.float32, torch.bfloat16, torch.float16):
        raise LoadOptionError(f"unsupported dtype {resolved}: use float32, bfloat16 or float16")
    return resolved


def _resolve_load_in(load_in: str | None, device: torch.device) -> str | None:
    """None/"none" or "8bit"/"4bit", after checking that bitsandbytes and CUDA are both here."""
    if load_in is None or str(load_in).strip().lower() in ("", "none"):
        return None
    mode = str(load_in).strip().lower()
    if mode not in _QUANTIZATIONS:
        raise LoadOptionError(f"unknown load_in {load_in!r}: use None/'none', '8bit' or '4bit'")
    missing = []
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        missing.append("the bitsandbytes package is not installed")
    if not torch.cuda.is_available():
        missing.append("CUDA is not available")
    elif device.type != "cuda":
        missing.append(f"the device is {device}, not a CUDA device")
    if missing:
        raise LoadOptionError(f"load_in={mode!r} needs bitsandbytes on a CUDA device: " + "; ".join(missing))
    return mode


# ------------------------------------------------------------------------------------ loading
def load_pixellm(
    model_dir: str | os.PathLike[str],
    clip_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    load_in: str | None = None,
    progress: bool = True,
) -> tuple[PixelLMForCausalLM, PixelLMTokenizer]:
    """Load a released folder or one of ours; returns the model (eval mode) and its tokenizer.

    model_dir: a released folder (llava ``config.json``, ``pytorch_model-*.bin`` + index or
    ``*.safetensors``) or our own (``pixellm_config.json`` + ``model.safetensors``).
    clip_dir: the CLIP folder of a released checkpoint (default: ``mm_vision_tower`` when it is a
    local folder; nothing is ever downloaded). load_in: None, "8bit" or "4bit" (bitsandbytes,
    CUDA only; the LLaMA decoder layers are quantised, everything else stays in ``dtype``).
    Raises FileNotFoundError, LoadOptionError or CheckpointError.
    """
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder {str(root)!r} does not exist")
    target_device = resolve_device(device)
    target_dtype = resolve_dtype(dtype)
    quantization = _resolve_load_in(load_in, target_device)
    # quantised layers are filled on the CPU and quantised on their way to the GPU
    fill_device = torch.device("cpu") if quantization else target_device

    tokenizer = PixelLMTokenizer.from_pretrained(root)
    try:
        if (root / OUR_CONFIG_FILE).is_file():
            config = _our_config(root, tokenizer)
            sources = [("model", _our_tensors(root, progress))]
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

        with _parameters_on_meta():
            model = PixelLMForCausalLM(config)
        _fill_strictly(model, sources, fill_device, target_dtype, describe_missing)
    except (ReleasedLayoutError, ClipFolderError, WeightFileError, ValueError) as error:
        if isinstance(error, LoadOptionError | CheckpointError):
            raise
        raise CheckpointError(str(error)) from error

    if quantization:
        _quantize_language_model(model, quantization, target_dtype)
        model.to(target_device)
    model.eval()
    return model, tokenizer


def load_clip_vision_weights(
    model: PixelLMForCausalLM, clip_dir: str | os.PathLike[str]
) -> PixelLMForCausalLM:
    """Fill a built model's vision tower from a CLIP folder, resizing the position table.

    For building a new PixelLM on a pretrained CLIP (training, tests). Strict like load_pixellm:
    every vision key of the folder must fit the tower and every tower tensor must be filled.
    """
    config: PixelLMConfig = model.config
    reference = next(model.parameters())
    tower_keys = {k for k in model.state_dict() if k.startswith(OUR_VISION_PREFIX)}
    loaded: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for our_key, tensor, source in _clip_tensors(Path(clip_dir), config):
        if our_key not in tower_keys:
            unexpected.append(source)
            continue
        loaded[our_key] = tensor.to(device=reference.device, dtype=reference.dtype)
    _raise_for_keys(sorted(tower_keys - set(loaded)), unexpected, f"CLIP folder {clip_dir}")
    model.load_state_dict(loaded, strict=False)
    return model


def _our_config(root: Path, tokenizer: PixelLMTokenizer) -> PixelLMConfig:
    config = PixelLMConfig.from_dict(json.loads((root / OUR_CONFIG_FILE).read_text(encoding="utf-8")))
    if int(config.text.vocab_size) != len(tokenizer):
        raise CheckpointError(f"{OUR_CONFIG_FILE} vocab_size {config.text.vocab_size} != tokenizer size {len(tokenizer)}")
    if len(tokenizer.seg_token_ids) != config.seg_tokens_per_target:
        raise CheckpointError(
            f"the tokenizer has {len(tokenizer.seg_token_ids)} seg tokens, the config needs {config.seg_tokens_per_target}"
        )
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


# A source yields (our key or None to skip, tensor, the key's name in its file for messages).
_Source = Iterator[tuple[str | None, torch.Tensor, str]]


def _weight_files_or_fail(root: Path) -> list[Path]:
    files = find_weight_files(root)
    if not files:
        raise CheckpointError(f"no weights (model.safetensors / pytorch_model.bin, or their index) in {root}")
    return files


def _with_progress(files: list[Path], progress: bool, what: str) -> Iterator[Path]:
    return iter(tqdm(files, desc=f"Loading {what}", unit="shard", disable=not progress or len(files) < 2))


def _our_tensors(root: Path, progress: bool) -> _Source:
    for file in _with_progress(_weight_files_or_fail(root), progress, "PixelLM weights"):
        for key, tensor in iter_weight_file(file):
            yield key, tensor, key


def _released_tensors(root: Path, progress: bool) -> _Source:
    for file in _with_progress(_weight_files_or_fail(root), progress, "released PixelLM shards"):
        for key, tensor in iter_weight_file(file):
            # transformers 4.31 saved the rotary frequencies; they are recomputed, never read
            yield (None if is_released_inv_freq(key) else our_key_from_released(key)), tensor, key


def _clip_tensors(clip_dir: Path, config: PixelLMConfig) -> _Source:
    """CLIP vision tensors under our names; the position table resized to the run grid."""
    full = is_full_clip_config(json.loads((clip_dir / "config.json").read_text(encoding="utf-8")))
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


def _fill_strictly(
    model: nn.Module,
    sources: list[tuple[str, _Source]],
    device: torch.device,
    dtype: torch.dtype,
    describe_missing: Callable[[str], str] = str,
) -> None:
    """Assign every source tensor to its parameter/buffer; raise CheckpointError on any mismatch.

    Tensors are assigned in batches of one weight file (one ``load_state_dict(assign=True)``
    each) so that a file's tensors are freed as soon as they are placed.
    """
    expected = {key: tensor for key, tensor in model.state_dict(keep_vars=True).items()}
    filled: dict[str, str] = {}
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    for source_name, source in sources:
        batch: dict[str, torch.Tensor] = {}
        for our_key, tensor, file_key in source:
            if our_key is None:
                continue
            if our_key not in expected:
                unexpected.append(f"{file_key} ({source_name})")
                continue
            if our_key in filled:
                raise CheckpointError(f"{our_key} is given twice: by {filled[our_key]} and {file_key}")
            if tuple(tensor.shape) != tuple(expected[our_key].shape):
                wrong_shape.append(f"{file_key}: {tuple(tensor.shape)}, model {tuple(expected[our_key].shape)}")
                continue
            filled[our_key] = file_key
            batch[our_key] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
            if len(batch) >= 64:
                model.load_state_dict(batch, strict=False, assign=True)
                batch = {}
        if batch:
            model.load_state_dict(batch, strict=False, assign=True)
    if wrong_shape:
        raise CheckpointError("checkpoint tensors with the wrong shape: " + "; ".join(wrong_shape))
    _raise_for_keys(sorted(describe_missing(k) for k in set(expected) - set(filled)), unexpected, "checkpoint")

    # Non-persistent buffers (rotary frequencies, CLIP position ids) were built for real on the
    # CPU in their own dtype (inv_freq must stay float32); they only move.
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer is not None and buffer.device != device:
                module.register_buffer(name, buffer.to(device), persistent=name not in module._non_persistent_buffers_set)
    on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if on_meta:
        raise CheckpointError(f"tensors left unfilled after loading: {on_meta}")


def _raise_for_keys(missing: list[str], unexpected: list[str], what: str) -> None:
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {missing}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {unexpected}")
    raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create every nn.Parameter on the meta device while buffers stay real.

    Under ``torch.device("meta")`` the non-persistent buffers (rotary inv_freq, CLIP
    position_ids), which no checkpoint holds, would be left without values; with only the
    parameters on meta they are computed normally and cost next to nothing. Parameter
    initialisation runs on meta tensors and so costs nothing either.
    """
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def _quantize_language_model(model: PixelLMForCausalLM, mode: str, dtype: torch.dtype) -> None:
    """Swap the LLaMA decoder layers' Linear modules for bitsandbytes ones (quantised on .to(cuda)).

    bitsandbytes' documented route: build the quantised module, load the fp16/bf16 weights into
    it, and move it to the GPU. lm_head, the embeddings and the PixelLM heads stay in ``dtype``.
    """
    import bitsandbytes as bnb

    compute_dtype = torch.float16 if dtype == torch.float32 else dtype
    for parent in list(model.language_model.model.layers.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            has_bias = child.bias is not None
            if mode == "8bit":
                quantized = bnb.nn.Linear8bitLt(
                    child.in_features, child.out_features, bias=has_bias, has_fp16_weights=False, threshold=6.0
                )
                weights_dtype = torch.float16
            else:
                quantized = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, bias=has_bias, compute_dtype=compute_dtype, quant_type="nf4"
                )
                weights_dtype = compute_dtype
            quantized.load_state_dict({k: v.to(weights_dtype) for k, v in child.state_dict().items()})
            quantized.requires_grad_(False)
            setattr(parent, name, quantized)


# ------------------------------------------------------------------------------------ saving
def save_pixellm(
    model: PixelLMForCausalLM, tokenizer: PixelLMTokenizer, folder: str | os.PathLike[str]
) -> Path:
    """Write our own folder: ``pixellm_config.json``, ``model.safetensors`` and the tokenizer files."""
    config: PixelLMConfig = model.config
    if int(config.text.vocab_size) != len(tokenizer):
        raise CheckpointError(f"model vocabulary {config.text.vocab_size} != tokenizer size {len(tokenizer)}")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().to("cpu").contiguous() for key, tensor in model.state_dict().items()}
    save_file(state, str(root / SAFETENSORS_FILE), metadata={"format": "pt"})
    (root / OUR_CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(root)
    return root
