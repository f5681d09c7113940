"""An image's vision features as the engine keeps them (its feature cache), and the cache key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pixellm_ros.model import ImageFeatures


@dataclass
class EncodedImage:
    """An image's vision-tower output and its geometry, as kept in the feature cache."""

    features: ImageFeatures
    valid_hw: tuple[int, int]
    original_hw: tuple[int, int]


def image_key(image: np.ndarray) -> str:
    """Content hash of an image array: its bytes and its shape (two images differing only in
    shape have the same bytes)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr(image.shape).encode())
    digest.update(memoryview(np.ascontiguousarray(image)).cast("B"))
    return digest.hexdigest()

