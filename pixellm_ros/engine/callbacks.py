"""The caller's callbacks (on_text, should_stop) inside the engine's own error handling.

An exception a callback raises is the caller's, not a model failure: it is carried through the
engine's handling in ``CallbackFailed`` and reaches the caller unchanged (``segment`` re-raises it;
a batch hands it back as that request's outcome and goes on with the others).
"""

from __future__ import annotations

from typing import Callable


class CallbackFailed(Exception):
    """Carries an exception raised by the caller's on_text / should_stop through our own handling."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


def guard(callback: Callable | None) -> Callable | None:
    """``callback`` with its exceptions wrapped in CallbackFailed (None stays None)."""
    if callback is None:
        return None

    def call(*args: object) -> object:
        try:
            return callback(*args)
        except Exception as exc:  # noqa: BLE001 - unwrapped again by the engine
            raise CallbackFailed(exc) from exc

    return call
