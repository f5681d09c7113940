"""Two known start-up warnings of the optional torchao wheel, filtered by their exact text.

transformers imports torchao (for its torchao quantizer) the first time a model is built when the
wheel is installed, and every process would then print, before doing anything:

- torchao's "Failed to load .../torchao/_C_mxfp8...so" and "..._C_cutlass_90a.abi3.so": kernels
  built for CUDA 12.8+ / Hopper GPUs that a CPU-only torch cannot load. Nothing we run uses them
  (``load_in="int8_weight"`` / ``"int4_weight"`` use torchao's other kernels).
- torch's "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by
  torch.compile ... register_constant() on Enum subclasses is deprecated": torchao 0.18 registers
  its enums the old way; a deprecation notice for torchao's authors.

A newcomer reads them as a broken install. The filters drop those records only: every other
message of those loggers still shows.
"""

from __future__ import annotations

import logging
import re

_KNOWN = {
    "torchao": re.compile(r"Failed to load .*torchao[/\\]_C_\w*(mxfp8|cutlass)\w*[.\w-]*\.so"),
    "torch.utils._pytree": re.compile(r"is an Enum subclass and is now natively supported by torch\.compile"),
}


class _KnownMessage(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.WARNING and self.pattern.search(record.getMessage()))


def quiet_known_library_warnings() -> None:
    """Install the filters (once; safe to call again)."""
    for name, pattern in _KNOWN.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownMessage) for f in logger.filters):
            logger.addFilter(_KnownMessage(pattern))
