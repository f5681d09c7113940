"""How a training process takes its memory: large pages for torch's buffers, freed memory kept.

A training step on the CPU allocates and frees the same few hundred megabytes of activations and
gradients every step. By default glibc hands much of it back to the kernel when it is freed and
takes it again, in 4 KB pages the kernel must clear, on the next step: stage 2 at 32 questions a
step ran at ~43,000 page faults a second. Two process-wide settings stop that (neither changes a
number that is computed):

- ``pages``: torch's CPU allocator aligns buffers of 2 MB or more to 2 MB and asks for transparent
  huge pages on them (torch's ``THP_MEM_ALLOC_ENABLE``, read once, at torch's first allocation: set
  it before torch is imported);
- ``keep``: glibc keeps what is freed for the next allocation (``mallopt``: the heap's top trimmed
  only past 2 GB, a 512 MB pad when it grows, the largest fixed mmap threshold glibc allows, 32 MB, so that
  buffers up to that size come from the heap and not from fresh mappings).

``benchmarks/bench_train_memory.py`` measures each against the default. ``pixellm-ros train
--memory MODE`` takes them before it imports torch. Both together make a fresh process's steps 1.42x
faster, but a long run's steps slow down as glibc's heap fills (emb11: 5.2 s a step after a restart,
8.5-8.7 s some 270 steps on, in one process), so the command's default stays "default" until a
run-length measurement says otherwise. Since the command trains in 15-minute fresh processes
(``fresh_process_minutes``) a process no longer runs long enough to slow much; on another, slower
machine the three modes' steps differed by less than that machine's drift (README).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

PAGES_ENV = "THP_MEM_ALLOC_ENABLE"
# mallopt's parameter numbers (glibc's malloc.h) and the values "keep" sets
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
KEEP = {M_TRIM_THRESHOLD: (1 << 31) - 1, M_TOP_PAD: 512 << 20, M_MMAP_THRESHOLD: 32 << 20}
MODES: dict[str, tuple[str, ...]] = {"default": (), "pages": ("pages",), "keep": ("keep",), "both": ("pages", "keep")}


def take_memory(mode: str) -> list[str]:
    """Apply the settings of ``MODES[mode]`` to this process; returns those that took effect.

    "pages" does not take effect once torch is imported (it may have allocated already), nor where the
    environment sets ``THP_MEM_ALLOC_ENABLE`` itself (the user's choice is kept); "keep" needs glibc."""
    taken = []
    for setting in MODES[mode]:
        if setting == "pages" and "torch" not in sys.modules and PAGES_ENV not in os.environ:
            os.environ[PAGES_ENV] = "1"
            taken.append(setting)
        elif setting == "keep" and _glibc_mallopt(KEEP):
            taken.append(setting)
    return taken


def _glibc_mallopt(values: dict[int, int]) -> bool:
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in values.items())
