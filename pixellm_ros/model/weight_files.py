"""Weight files of a checkpoint folder: find them, read them one file at a time, write .bin shards.

Two on-disk formats, each single-file or sharded with a ``*.index.json`` whose ``weight_map``
names the file of every key (the Hugging Face convention):

- safetensors: ``model.safetensors`` or ``model.safetensors.index.json`` (read with safetensors'
  own ``safe_open``, one tensor at a time);
- pickled torch: ``pytorch_model.bin`` or ``pytorch_model.bin.index.json`` (the released PixelLM
  layout; read with ``torch.load(weights_only=True)``, memory-mapped where the file allows).

safetensors wins when a folder holds both (Hub repositories often ship the same weights twice).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BIN_INDEX_FILE = "pytorch_model.bin.index.json"


class WeightFileError(RuntimeError):
    """A weight file or index that cannot be read."""


def find_weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The weight files of ``folder`` in index order (safetensors preferred); [] if there are none."""
    root = Path(folder)
    for index_name, single_name in ((SAFETENSORS_INDEX_FILE, SAFETENSORS_FILE), (BIN_INDEX_FILE, BIN_FILE)):
        index = root / index_name
        if index.is_file():
            return _files_of_index(index)
        if (root / single_name).is_file():
            return [root / single_name]
    return []


def _files_of_index(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise WeightFileError(f"{index} is not a weight index (no 'weight_map'): {error}") from error
    files = list(dict.fromkeys(weight_map.values()))  # first-seen order, no repeats
    paths = [index.parent / name for name in files]
    absent = [str(p.name) for p in paths if not p.is_file()]
    if absent:
        raise WeightFileError(f"{index.name} names shards that are not in {index.parent}: {absent}")
    return paths


def iter_weight_file(path: str | os.PathLike[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, tensor) pairs of one weight file, on the CPU, in the dtype they were saved in."""
    file = Path(path)
    if file.name.endswith(".safetensors"):
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                yield key, handle.get_tensor(key)
        return
    yield from _load_bin(file).items()


def _load_bin(file: Path) -> Mapping[str, torch.Tensor]:
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        # Files written by torch < 1.6 (the legacy, non-zip format) cannot be memory-mapped.
        if "mmap" not in str(error).lower() and "zip" not in str(error).lower():
            raise WeightFileError(f"cannot read {file}: {error}") from error
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError) as error:
        raise WeightFileError(f"cannot read {file}: {error}") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightFileError(f"{file} does not hold a flat state dict of tensors")
    return state


def write_bin_shards(
    tensors: Mapping[str, torch.Tensor],
    folder: str | os.PathLike[str],
    max_shard_bytes: int,
) -> dict[str, object]:
    """Write ``pytorch_model-0000k-of-0000n.bin`` shards + ``pytorch_model.bin.index.json``.

    Keys keep their order; a shard is closed when the next tensor would push it past
    ``max_shard_bytes`` (a tensor larger than that gets a shard of its own). Returns the index.
    """
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and sizes[-1] + nbytes > max_shard_bytes:
            shards.append({})
            sizes.append(0)
        # contiguous clones so that no shard pickles a view of a larger storage
        shards[-1][key] = tensor.detach().to("cpu").contiguous().clone()
        sizes[-1] += nbytes
    weight_map: dict[str, str] = {}
    for number, shard in enumerate(shards, start=1):
        name = f"pytorch_model-{number:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, root / name)
        weight_map.update({key: name for key in shard})
    index: dict[str, object] = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (root / BIN_INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return index
