"""Answers whose generation ended -> SegmentationResults: written once for every route.

``finish_answers`` parses each answer's tokens (text, complete seg groups, target names), decodes
every target of every answer in ONE mask-decoder pass (each on its own image's features), post-
processes each answer's masks to its own image size and builds its result and timings. A batch of
one, a batch, a continuous-batching session and the research-style reference all end here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
import torch

from .answer import parse_answer
from .features import EncodedImage
from .generation import TokenStream
from .postprocess import postprocess_masks
from .result import SegmentationResult, Target

if TYPE_CHECKING:
    from pixellm_ros.model import PixelLMForCausalLM
    from pixellm_ros.model.tokenizer import PixelLMTokenizer

BatchOutcome = Union[SegmentationResult, BaseException]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA is asynchronous), so that stage timings are true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Answer:
    """One request's answer, from its admission to its result.

    ticket: its number in its session (results come in ticket order). image: (H, W, 3) uint8.
    stream: its generation (generation.TokenStream). warnings: found so far (a cut max_new_tokens...).
    added: perf_counter() when it was admitted (total_ms counts from there).
    encoded: its image's features once the vision tower (or the feature cache) gave them.
    """

    ticket: int
    image: np.ndarray
    stream: TokenStream
    warnings: list[str] = field(default_factory=list)
    added: float = field(default_factory=time.perf_counter)
    encoded: EncodedImage | None = None
    vision_cached: bool = False
    vision_ms: float = 0.0


def answer_timings(answer: Answer, decoding_ms: float, postprocess_ms: float) -> dict[str, float]:
    """result.timings of an answer (milliseconds, and decode_tokens_per_s)."""
    stream = answer.stream
    decode_steps = stream.num_generated - 1
    decode_s = stream.total_s - stream.first_token_s
    return {
        "vision_ms": answer.vision_ms,
        "prefill_ms": stream.first_token_s * 1e3,
        "first_token_ms": answer.vision_ms + stream.first_token_s * 1e3,
        "generation_ms": stream.total_s * 1e3,
        "decode_tokens_per_s": decode_steps / decode_s if decode_steps > 0 and decode_s > 0 else 0.0,
        "decoding_ms": decoding_ms,
        "postprocess_ms": postprocess_ms,
        "total_ms": (time.perf_counter() - answer.added) * 1e3,
        "batch_rows": float(max(stream.batch_rows, 1)),
    }


def finish_answers(
    model: PixelLMForCausalLM, tokenizer: PixelLMTokenizer, answers: Sequence[Answer], mask_logit: float
) -> list[BatchOutcome]:
    """Each answer's outcome, in the order given: its SegmentationResult, or its stream's error.

    mask_logit: the mask threshold as a logit (the engine converts its probability once).
    """
    good = [answer for answer in answers if answer.stream.error is None]
    parsed = {answer.ticket: parse_answer(answer.stream.tokens, tokenizer) for answer in good}

    # One decoder pass: every complete group of every answer, on its own image's features.
    images: dict[int, int] = {}  # id(encoded) -> its index in the pass
    features: list[EncodedImage] = []
    states: list[torch.Tensor] = []
    image_index: list[int] = []
    for answer in good:
        groups = parsed[answer.ticket].groups
        if not groups:
            continue
        assert answer.encoded is not None
        key = id(answer.encoded)
        if key not in images:
            images[key] = len(features)
            features.append(answer.encoded)
        stream = answer.stream
        state_of = {position: k for k, position in enumerate(stream.seg_positions)}  # seg token -> its state
        for group in groups:
            states.extend(stream.seg_states[state_of[p]] for p in group.positions)
            image_index.append(images[key])
    decode_start = time.perf_counter()
    logits = None
    if states:
        if len(features) == 1:  # one image (batch 1): its features as they are
            decoder_features, index = features[0].features.decoder_features, None
        else:
            decoder_features = [torch.cat([e.features.decoder_features[level] for e in features])
                                for level in range(model.config.num_scales)]
            index = torch.tensor(image_index, dtype=torch.long, device=decoder_features[0].device)
        logits = model.masks_from_hidden_states(torch.stack(states), decoder_features, index).low_res_logits
        synchronize(logits.device)
    decoding_ms = (time.perf_counter() - decode_start) * 1e3

    outcomes: list[BatchOutcome] = []
    offset = 0
    for answer in answers:
        stream = answer.stream
        if stream.error is not None:
            outcomes.append(stream.error)
            continue
        text = parsed[answer.ticket]
        count = len(text.groups)
        post_start = time.perf_counter()
        masks = []
        if count:
            assert answer.encoded is not None and logits is not None
            masks = postprocess_masks(logits[offset : offset + count], model.config.image_size,
                                      answer.encoded.valid_hw, answer.encoded.original_hw, mask_logit)
        offset += count
        postprocess_ms = (time.perf_counter() - post_start) * 1e3
        outcomes.append(SegmentationResult(
            text=text.text,
            targets=[Target(name=name, mask=m.mask, box=m.box, score=m.score) for name, m in zip(text.names, masks)],
            timings=answer_timings(answer, decoding_ms if count else 0.0, postprocess_ms),
            generated_tokens=stream.num_generated,
            warnings=answer.warnings + text.warnings,
            stopped=stream.reason == "stopped",
            finish_reason=stream.reason or "stopped",
            image_hw=(int(answer.image.shape[0]), int(answer.image.shape[1])),
            vision_cached=answer.vision_cached,
        ))
    return outcomes
