"""PixelLM's training phrasing of a MUSE question: the instruction a model is asked.

MUSE files hold bare question sentences; PixelLM was trained on "{sentence} Please respond with
segmentation mask.", so the world's questions and the evaluator's instructions both use it.
"""

from __future__ import annotations

INSTRUCTION_TEMPLATE = "{sent} Please respond with segmentation mask."


def format_instruction(sentence: str, template: str = INSTRUCTION_TEMPLATE) -> str:
    """The instruction the model sees for a MUSE ``sentence`` (``template`` has one ``{sent}`` slot)."""
    return template.format(sent=sentence)
