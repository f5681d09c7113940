"""The two failures the engine reports to its callers.

The ROS layer maps them to status codes: ``InvalidInputError`` is the caller's fault (a bad image or
instruction), any other ``EngineError`` is the model's or the machine's. ``InvalidInputError`` is a
subclass of ``EngineError`` so that ``except EngineError`` catches everything the engine raises on
purpose; a caller that needs to tell them apart catches ``InvalidInputError`` first.
"""

from __future__ import annotations


class EngineError(RuntimeError):
    """The engine could not produce a result (missing model, load failure, model error)."""


class InvalidInputError(EngineError, ValueError):
    """The request itself is unusable: bad image array, empty instruction, bad limits."""
