"""What the engine reports to its callers, by exception type (callers never parse the text).

``InvalidInputError`` and its subclasses are the caller's fault, each naming what is wrong:

    InvalidImageError        the image array cannot be run (dtype, shape, empty, too thin to resize)
    InvalidInstructionError  the instruction cannot be run (not text, empty, holds the model's
                             control tokens, too long for the model's positions)
    InvalidOptionError       an option of the call is unusable (max_new_tokens, ...)

Any other ``EngineError`` is the model's or the machine's. ``InvalidInputError`` is a subclass of
``EngineError``, so ``except EngineError`` catches everything the engine raises on purpose; a caller
that needs to tell them apart catches the specific classes first. The ROS layer maps each class to
its own status code.
"""

from __future__ import annotations


class EngineError(RuntimeError):
    """The engine could not produce a result (missing model, load failure, model error)."""


class InvalidInputError(EngineError, ValueError):
    """The request itself is unusable (one of the subclasses below says which part)."""


class InvalidImageError(InvalidInputError):
    """The image array cannot be run: wrong dtype or shape, empty, or too thin to resize."""


class InvalidInstructionError(InvalidInputError):
    """The instruction cannot be run: not text, empty, control tokens inside, too long."""


class InvalidOptionError(InvalidInputError):
    """An option of the call (max_new_tokens, ...) is unusable."""


def model_failure(error: BaseException, where: str = "") -> EngineError:
    """The one wrapping of an unexpected exception during a model run: ``EngineError("the model
    failed: ...")`` with the original as its cause (an EngineError is passed through unchanged).
    where: what raised it, when that is not the model itself ("the logits_processor raised ")."""
    if isinstance(error, EngineError):
        return error
    failure = EngineError(f"the model failed: {where}{type(error).__name__}: {error}")
    failure.__cause__ = error
    return failure
