"""What ``PixelLMEngine.segment`` returns: the answer text and one Target per segmented object."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixellm_ros.muse.mask_codec import decode_uncompressed_rle, encode_rle


@dataclass
class Target:
    """One segmented object.

    name: the answer's phrase just before the target's seg tokens.
    mask: (H, W) bool at the original image size.
    box: (x0, y0, x1, y1) tight around the mask, x1/y1 exclusive; (0, 0, 0, 0) for an empty mask.
    score: mean sigmoid probability inside the mask, in [0, 1]; 0 for an empty mask.
    """

    name: str
    mask: np.ndarray
    box: tuple[int, int, int, int]
    score: float

    def to_dict(self, include_mask: bool = True) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "name": self.name,
            "box": [int(v) for v in self.box],
            "score": float(self.score),
            "area": int(np.count_nonzero(self.mask)),
        }
        if include_mask:
            payload["mask_rle"] = encode_rle(self.mask)  # COCO uncompressed RLE: opens in COCO tools
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Target:
        return cls(
            name=str(payload["name"]),
            mask=decode_uncompressed_rle(payload["mask_rle"], *payload["mask_rle"]["size"]),
            box=tuple(int(v) for v in payload["box"]),  # type: ignore[arg-type]
            score=float(payload["score"]),
        )


@dataclass
class SegmentationResult:
    """The answer to one instruction about one image.

    text: the answer with seg tokens removed.
    targets: one per complete seg group, in the order the answer names them.
    timings: milliseconds per stage (vision_ms, prefill_ms, generation_ms, decoding_ms,
        postprocess_ms, total_ms) and decode_tokens_per_s.
    generated_tokens: tokens the LLM produced (end-of-sequence included when it came).
    warnings: what was dropped or went odd (incomplete seg groups, ...).
    stopped: should_stop fired before the answer was complete.
    finish_reason: "eos", "length" (max_new_tokens reached) or "stopped".
    image_hw: (H, W) of the input image.
    vision_cached: the image features came from the cache (the vision tower did not run).
    """

    text: str
    targets: list[Target]
    timings: dict[str, float] = field(default_factory=dict)
    generated_tokens: int = 0
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False
    finish_reason: str = "eos"
    image_hw: tuple[int, int] = (0, 0)
    vision_cached: bool = False

    def to_dict(self, include_masks: bool = True) -> dict[str, Any]:
        return {
            "text": self.text,
            "targets": [t.to_dict(include_mask=include_masks) for t in self.targets],
            "timings": {k: float(v) for k, v in self.timings.items()},
            "generated_tokens": int(self.generated_tokens),
            "warnings": list(self.warnings),
            "stopped": bool(self.stopped),
            "finish_reason": self.finish_reason,
            "image_hw": [int(v) for v in self.image_hw],
            "vision_cached": bool(self.vision_cached),
        }

    def to_json(self, include_masks: bool = True, indent: int | None = 2) -> str:
        """JSON text; masks as COCO uncompressed RLE under ``mask_rle`` unless include_masks=False."""
        return json.dumps(self.to_dict(include_masks=include_masks), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> SegmentationResult:
        """Inverse of to_json() (with masks)."""
        payload = json.loads(text)
        return cls(
            text=payload["text"],
            targets=[Target.from_dict(t) for t in payload["targets"]],
            timings=dict(payload.get("timings", {})),
            generated_tokens=int(payload.get("generated_tokens", 0)),
            warnings=list(payload.get("warnings", [])),
            stopped=bool(payload.get("stopped", False)),
            finish_reason=str(payload.get("finish_reason", "eos")),
            image_hw=tuple(payload.get("image_hw", (0, 0))),  # type: ignore[arg-type]
            vision_cached=bool(payload.get("vision_cached", False)),
        )
