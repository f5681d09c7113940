"""The prompts: LLaVA's ``llava_v1`` (the released PixelLM) and ChatML (an instruct LLM such as SmolLM2).

llava_v1 (LLaVA / PixelLM ``conversation.py``, ``conv_llava_v1``): separator style TWO with
sep " " and sep2 "</s>", roles USER / ASSISTANT, and the system prompt below. A single-turn prompt
with an empty assistant turn renders as

    {system} USER: <im_start><image><im_end>\n{query} ASSISTANT:

ChatML (``chatml``, SmolLM2's chat format, without its default system turn: the embedded model was
trained without one) renders as

    <|im_start|>user\n<im_start><image><im_end>\n{query}<|im_end|>\n<|im_start|>assistant\n

``<image>`` is replaced by the image tokens inside the model (the tokenizer maps it to
IMAGE_TOKEN_INDEX); the token ids around the added tokens follow the slow-LLaMA rule, which the
tokenizer owns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pixellm_ros.model.constants import IM_END_TOKEN, IM_START_TOKEN, IMAGE_TOKEN

from .errors import InvalidInstructionError

if TYPE_CHECKING:
    from pixellm_ros.model.tokenizer import PixelLMTokenizer

# Note: "curious human ... human's questions" (llava_v1), not vicuna_v1's "curious user ... user's".
SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
USER_ROLE = "USER"
ASSISTANT_ROLE = "ASSISTANT"
SEPARATOR = " "
CHATML_TURN = "<|im_start|>{role}\n{content}<|im_end|>\n"
CHATML_REPLY = "<|im_start|>assistant\n"


def build_prompt_text(instruction: str, use_im_start_end: bool = True, template: str = "llava_v1") -> str:
    """The prompt for one image and one instruction, ending where the answer starts.

    Surrounding whitespace of the instruction is dropped (ROS strings often end in a newline);
    an instruction that is empty after that, or that holds the image placeholder text, raises
    InvalidInstructionError.
    """
    if not isinstance(instruction, str):
        raise InvalidInstructionError(f"instruction must be a str, got {type(instruction).__name__}")
    query = instruction.strip()
    if not query:
        raise InvalidInstructionError("instruction is empty")
    _refuse_control_text(query, (IMAGE_TOKEN,))
    image = f"{IM_START_TOKEN}{IMAGE_TOKEN}{IM_END_TOKEN}" if use_im_start_end else IMAGE_TOKEN
    user_message = f"{image}\n{query}"
    if template == "chatml":
        return CHATML_TURN.format(role="user", content=user_message) + CHATML_REPLY
    if template != "llava_v1":
        raise ValueError(f"unknown prompt template {template!r}")
    return f"{SYSTEM_PROMPT}{SEPARATOR}{USER_ROLE}: {user_message}{SEPARATOR}{ASSISTANT_ROLE}:"


def _refuse_control_text(query: str, control: tuple[str, ...] | list[str]) -> None:
    """InvalidInstructionError when the user's text holds one of the model's control strings.

    The tokenizer turns those strings into the control tokens themselves: a second ``<image>``
    would give the prompt two image placeholders, a ``[SEG0]`` a seg token the user never meant.
    """
    found = [token for token in control if token in query]
    if found:
        raise InvalidInstructionError(
            f"the instruction contains the model's control text {', '.join(repr(t) for t in found)}; "
            "remove it (it would be read as a control token, not as words)"
        )


def build_prompt_ids(
    tokenizer: PixelLMTokenizer, instruction: str, use_im_start_end: bool = True, template: str = "llava_v1"
) -> list[int]:
    """Token ids of the prompt (llava_v1: BOS first), with exactly one IMAGE_TOKEN_INDEX.

    Raises InvalidInstructionError for an empty instruction or one that holds control text (the
    image placeholder or any of the tokenizer's added tokens: ``[SEG0]``.., ``<im_start>``, ``<im_end>``).
    """
    text = build_prompt_text(instruction, use_im_start_end, template)
    _refuse_control_text(instruction.strip(), list(getattr(tokenizer, "control_strings", tokenizer.added_tokens)))
    return tokenizer.encode(text, add_bos=template == "llava_v1")
