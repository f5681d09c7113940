"""The MUSE data format that the world writes and the evaluator reads: a leaf of the package.

``schema`` names the JSON keys of an image entry and of an instance, ``mask_codec`` turns COCO
segmentations into masks and back, ``instruction`` is PixelLM's training phrasing of a MUSE
question. Nothing here imports the rest of ``pixellm_ros``: ``world`` (the writer) and
``evaluation`` (the reader) both build on it without knowing each other.
"""

from pixellm_ros.muse.instruction import INSTRUCTION_TEMPLATE, format_instruction
from pixellm_ros.muse.mask_codec import decode_segmentation, encode_rle, mask_bbox
from pixellm_ros.muse.schema import SEG_PLACEHOLDER, MuseImageEntry, MuseInstance

__all__ = [
    "INSTRUCTION_TEMPLATE",
    "SEG_PLACEHOLDER",
    "MuseImageEntry",
    "MuseInstance",
    "decode_segmentation",
    "encode_rle",
    "format_instruction",
    "mask_bbox",
]
