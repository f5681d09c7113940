"""Scenes rendered in parallel: DataLoader workers sized from the machine's cores.

Both stages' data are iterable datasets whose items are a pure function of (seed, step), with
worker k making the steps s with s % workers == k (``dataset.StepBatches``,
``decoder_pretraining.DecoderBatches``): the stream is the same with any number of workers.
``workers = -1`` ("auto") leaves two of the machine's cores to the training process (its own
thread and the loader's pin-memory thread) and gives every other core a worker; each worker
renders, draws questions, tokenises and pre-processes single-threaded.

Workers are SPAWNED, never forked: a fork copies every lock of the parent as it stands, and a
process that already runs threads (an rclpy executor, torch's intra-op pool, a tqdm monitor) can
hand a worker a lock that no thread of the child will ever release, so the worker hangs for good
(seen in CI: the first batch never came). Spawned workers import the package afresh (a few
seconds each, once per loader), so the dataset and the collate function must be picklable:
module-level functions or ``functools.partial`` of them, never lambdas. A worker that sends
nothing for ``WORKER_STALL_TIMEOUT_S`` raises instead of blocking the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

AUTO_WORKERS = -1
WORKER_START_METHOD = "spawn"
WORKER_STALL_TIMEOUT_S = 600.0  # one step's batch from one worker; far above any recipe's step


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


def resolve_workers(workers: int) -> int:
    """DataLoader workers for a setting: itself when >= 0; for -1 (auto) every core but two, at least one."""
    if workers == AUTO_WORKERS:
        return max(available_cores() - 2, 1)
    if workers < 0:
        raise ValueError(f"workers must be >= 0 or {AUTO_WORKERS} (auto), got {workers}")
    return int(workers)


def as_is(batch: Any) -> Any:
    """The collate function of a dataset whose items are already whole batches (picklable)."""
    return batch


def _single_threaded_worker(_worker_id: int) -> None:
    """Each worker renders on one core (torch already sets 1 thread in workers; OpenCV too)."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def step_loader(
    dataset: IterableDataset, collate: Callable[[Any], Any], workers: int, pin_memory: bool = False
) -> DataLoader:
    """A loader over a per-step dataset (each item is one step's batch) with ``workers`` workers."""
    count = resolve_workers(workers)
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=count,
        collate_fn=collate,
        pin_memory=pin_memory,
        prefetch_factor=2 if count > 0 else None,  # batches in shared memory: 2 per worker
        worker_init_fn=_single_threaded_worker if count > 0 else None,
        persistent_workers=False,
        multiprocessing_context=WORKER_START_METHOD if count > 0 else None,
        timeout=WORKER_STALL_TIMEOUT_S if count > 0 else 0,
    )
