"""Object tokens: how a CNN's multi-scale maps become the LLM's image tokens and the decoder's features.

A dense grid of image tokens makes a small LLM find, tell apart and count the objects by itself;
on 2 CPU cores it does not learn that in the time there is (docs/embedded_model_experiments.md). So
the image reaches the LLM as ONE token per object, found by a light detector on the encoder's maps
(CenterNet-style: a heat map per centre class with a peak at each object's centre):

    maps at strides 8 / 16 / 32 (the frozen encoder)
      -> feature pyramid (lateral 1x1 convolutions, top-down sum, 3x3 smoothing), width D:
         p16 (B, D, G, G) and p8 (B, D, 2G, 2G): the pixel decoder's two scales
      -> heads on p8: centre heat maps (B, C, 2G, 2G), offsets + log radius (B, 3, 2G, 2G),
         object embeddings (B, E, 2G, 2G)
      -> peaks (3x3 local maxima above ``object_threshold``, at most ``object_tokens`` by score),
         ordered left to right; at each: the embedding, its attribute probabilities (one softmax
         per group of ``object_attributes``: colour, shape and size class in the tabletop world;
         read at the centre and, with ``object_attribute_circle``, over the object's body too),
         the centre and radius relative to the image's un-padded size
      -> the token projector (embedding + attributes + Fourier features of the place -> H):
         (B, K, H) tokens, with a mask for the slots no object filled.

The tokens are ordered left to right because the answers list their targets left to right.
Module keys: ``pyramid.*``, ``heads.*``, ``attributes.*``, ``token_projector.*``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LayerNorm2d

if TYPE_CHECKING:
    from .config import PixelLMConfig

POSITION_FEATURES = 3  # x / w, y / h, radius / min(h, w)
CIRCLE_POINTS = 8  # where the attributes are read on the object's body (``attribute_circle``)


@dataclass
class ObjectDetections:
    """The objects found in B images, K slots each (``valid`` False for empty slots), left to right.

    centres (B, K, 2) canvas pixels (x, y); radii (B, K) canvas pixels; scores (B, K) in [0, 1];
    classes (B, K) long, the centre class of each peak; embeddings (B, K, E); attributes (B, K, A)
    the attribute probabilities; valid (B, K) bool.
    """

    centres: torch.Tensor
    radii: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    embeddings: torch.Tensor
    attributes: torch.Tensor
    valid: torch.Tensor


@dataclass
class ObjectReading:
    """What the object tokenizer makes of B images (``PixelLMForCausalLM.detect_objects``).

    tokens (B, K, H) the LLM tokens of the slots; valid (B, K) bool; decoder_features the pixel
    decoder's scales; detections; places (B, K, 3) centre x / w, y / h and radius (``places``);
    neighbours (B, K) long (``nearest_other``) when the slots carry the neighbour's words, else None.
    """

    tokens: torch.Tensor
    valid: torch.Tensor
    decoder_features: list[torch.Tensor]
    detections: ObjectDetections
    places: torch.Tensor
    neighbours: torch.Tensor | None


class FeaturePyramid(nn.Module):
    """Maps at strides 8, 16, 32 -> (p8 (B, D, 2G, 2G), p16 (B, D, G, G)), G = S / 16."""

    def __init__(self, in_channels: Sequence[int], width: int) -> None:
        super().__init__()
        c8, c16, c32 = in_channels
        self.lateral8 = nn.Conv2d(c8, width, 1)
        self.lateral16 = nn.Conv2d(c16, width, 1)
        self.lateral32 = nn.Conv2d(c32, width, 1)
        self.smooth8 = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), LayerNorm2d(width), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), LayerNorm2d(width), nn.GELU(),
        )
        self.smooth16 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), LayerNorm2d(width), nn.GELU())

    def forward(self, maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        f8, f16, f32 = maps
        p32 = self.lateral32(f32)
        p16 = self.lateral16(f16) + F.interpolate(p32, size=f16.shape[-2:], mode="nearest")
        p8 = self.lateral8(f8) + F.interpolate(p16, size=f8.shape[-2:], mode="nearest")
        return self.smooth8(p8), self.smooth16(p16)


class ObjectHeads(nn.Module):
    """On p8: ``heat`` (B, C, h, w) logits, ``box`` (B, 3, h, w) = (dx, dy, log radius) in p8 cells,
    ``embedding`` (B, E, h, w)."""

    def __init__(self, width: int, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.heat = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, num_classes, 1))
        nn.init.constant_(self.heat[-1].bias, -2.19)  # CenterNet's prior: sigmoid = 0.1
        self.box = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, 3, 1))
        self.embedding = nn.Sequential(nn.Conv2d(width, embed_dim, 3, padding=1), nn.GELU(), nn.Conv2d(embed_dim, embed_dim, 1))

    def forward(self, p8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heat(p8), self.box(p8), self.embedding(p8)


class ObjectAttributes(nn.Module):
    """Object embedding (.., E) -> attribute logits, one group per entry of ``groups`` (key ``linear``)."""

    def __init__(self, embed_dim: int, groups: Sequence[int]) -> None:
        super().__init__()
        self.sizes = [int(g) for g in groups]
        self.linear = nn.Linear(embed_dim, sum(self.sizes))

    def groups(self, embeddings: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(self.linear(embeddings), self.sizes, dim=-1))

    def probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(.., A): the softmax of each group, concatenated."""
        return torch.cat([g.softmax(dim=-1) for g in self.groups(embeddings)], dim=-1)


def fourier_features(values: torch.Tensor, bands: int) -> torch.Tensor:
    """(..., F) in [0, 1] -> (..., F * 2 * bands): sin / cos at 2^k * pi, k < bands."""
    freqs = (2.0 ** torch.arange(bands, device=values.device, dtype=values.dtype)) * math.pi
    angles = values[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class TokenProjector(nn.Module):
    """(embedding (.., E), attributes (.., A), place (.., 3)) -> (.., H): an MLP over the embedding, the
    attribute probabilities, the place and its Fourier features (``bands`` octaves)."""

    def __init__(self, embed_dim: int, attributes: int, hidden: int, out_dim: int, bands: int) -> None:
        super().__init__()
        self.bands = bands
        width = embed_dim + attributes + POSITION_FEATURES * (1 + 2 * bands)
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, embeddings: torch.Tensor, attributes: torch.Tensor, places: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([embeddings, attributes, places, fourier_features(places, self.bands)], dim=-1))


def order_slots(order: str, places: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The slots' indices in ``order`` (config.OBJECT_ORDERS), empty slots last: places (B, K, 3) as
    ``ObjectTokenizer.places``, valid (B, K) -> (B, K) long. The slots are detected left to right, so
    "left_to_right" keeps them; "front_to_back" puts the object nearest the camera (largest centre y)
    first."""
    slots = torch.arange(valid.shape[1], device=valid.device).expand(valid.shape)
    if order == "left_to_right":
        return slots
    if order == "front_to_back":
        key = torch.where(valid, -places[..., 1].float(), torch.full_like(places[..., 1], float("inf"), dtype=torch.float32))
        return key.argsort(dim=1, stable=True)
    raise ValueError(f"unknown object order {order!r}")


def nearest_other(centres: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, K) long: per slot the valid slot whose centre is nearest to its own (itself when no other
    slot is valid). centres (B, K, 2) in pixels of one scale for x and y, valid (B, K) bool."""
    distance = torch.cdist(centres.float(), centres.float())
    others = valid[:, None, :] & ~torch.eye(valid.shape[1], dtype=torch.bool, device=valid.device)
    distance = distance.masked_fill(~others, float("inf"))
    nearest = distance.argmin(dim=-1)
    alone = ~others.any(dim=-1)
    return torch.where(alone, torch.arange(valid.shape[1], device=valid.device).expand_as(nearest), nearest)


def duplicates(centres: torch.Tensor, radii: torch.Tensor, valid: torch.Tensor, within: float) -> torch.Tensor:
    """(B, K) True where a detection lies within ``within`` radii (the larger of the two) of a valid
    detection before it. centres (B, K, 2), radii (B, K), valid (B, K) bool, the K detections in
    falling score order (``topk``'s)."""
    distance = torch.cdist(centres, centres)  # (B, K, K)
    reach = within * torch.maximum(radii[:, :, None], radii[:, None, :])
    earlier = torch.ones(centres.shape[1], centres.shape[1], dtype=torch.bool, device=centres.device).tril(-1)
    return ((distance < reach) & earlier & valid[:, None, :]).any(dim=-1)


def sample_cells(fmap: torch.Tensor, centres: torch.Tensor, stride: int) -> torch.Tensor:
    """fmap (B, C, h, w) at ``stride``, centres (B, K, 2) canvas pixels -> (B, K, C) bilinear samples."""
    height, width = fmap.shape[-2:]
    grid = torch.stack([centres[..., 0] / (stride * width), centres[..., 1] / (stride * height)], dim=-1) * 2 - 1
    sampled = F.grid_sample(fmap, grid[:, :, None, :].to(fmap.dtype), align_corners=False)  # (B, C, K, 1)
    return sampled[..., 0].transpose(1, 2)


class ObjectTokenizer(nn.Module):
    """Feature pyramid + detector heads + token projector (see the module docstring)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        width: int,
        num_classes: int,
        embed_dim: int,
        attributes: Sequence[int],
        hidden_size: int,
        max_objects: int,
        threshold: float,
        duplicate_radius: float = 0.0,
        fourier_bands: int = 8,
        projector_hidden: int = 1024,
        attribute_circle: float = 0.0,
    ) -> None:
        super().__init__()
        self.max_objects = max_objects
        self.threshold = threshold
        self.duplicate_radius = duplicate_radius
        self.attribute_circle = attribute_circle
        self.pyramid = FeaturePyramid(in_channels, width)
        self.heads = ObjectHeads(width, num_classes, embed_dim)
        self.attributes = ObjectAttributes(embed_dim, attributes)
        self.token_projector = TokenProjector(embed_dim, sum(attributes), projector_hidden, hidden_size, fourier_bands)
        self.stride = 8  # the heads' map

    @classmethod
    def from_config(cls, config: PixelLMConfig, in_channels: Sequence[int]) -> ObjectTokenizer:
        return cls(
            in_channels=in_channels,
            width=config.out_dim,
            num_classes=config.object_classes,
            embed_dim=config.object_embed_dim,
            attributes=config.object_attributes,
            hidden_size=config.hidden_size,
            max_objects=config.object_tokens,
            threshold=config.object_threshold,
            duplicate_radius=config.object_duplicate_radius,
            attribute_circle=config.object_attribute_circle,
        )

    def detect(self, heat: torch.Tensor, box: torch.Tensor, embedding: torch.Tensor) -> ObjectDetections:
        """Peaks of the heat maps -> at most K detections per image, ordered left to right (a peak that
        ``duplicates`` a higher-scoring one is dropped)."""
        batch, classes, height, width = heat.shape
        prob = heat.float().sigmoid()
        peaks = prob * (prob == F.max_pool2d(prob, 3, stride=1, padding=1))
        scores, flat = peaks.flatten(1).topk(min(self.max_objects, classes * height * width), dim=1)
        valid = scores > self.threshold
        cls = torch.div(flat, height * width, rounding_mode="floor")
        cell = flat % (height * width)
        cy = torch.div(cell, width, rounding_mode="floor")
        cx = cell % width
        box_at = box.float().flatten(2).gather(2, cell[:, None, :].expand(-1, 3, -1)).transpose(1, 2)  # (B, K, 3)
        centres = torch.stack([(cx + 0.5 + box_at[..., 0]) * self.stride, (cy + 0.5 + box_at[..., 1]) * self.stride], dim=-1)
        radii = box_at[..., 2].clamp(-4.0, 6.0).exp() * self.stride
        if self.duplicate_radius > 0.0:
            valid = valid & ~duplicates(centres, radii, valid, self.duplicate_radius)
        # empty slots sort to the end; the rest left to right
        key = torch.where(valid, centres[..., 0], torch.full_like(centres[..., 0], float("inf")))
        order = key.argsort(dim=1)
        take = lambda t: t.gather(1, order if t.ndim == 2 else order[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
        centres, radii, scores, cls, valid = take(centres), take(radii), take(scores), take(cls), take(valid)
        embeddings = sample_cells(embedding, centres, self.stride)
        return ObjectDetections(centres=centres, radii=radii, scores=scores, classes=cls, embeddings=embeddings,
                                attributes=self.read_attributes(embedding, embeddings, centres, radii), valid=valid)

    def read_attributes(self, embedding: torch.Tensor, at_centres: torch.Tensor, centres: torch.Tensor,
                        radii: torch.Tensor) -> torch.Tensor:
        """(B, K, A) attribute probabilities of the objects at ``centres`` (B, K, 2) with ``radii`` (B, K),
        canvas pixels, on the embedding map (B, E, h, w) whose samples at the centres are ``at_centres``
        (B, K, E): the head's probabilities at the centre or, with
        ``attribute_circle`` = f > 0, the mean of those and of their mean over CIRCLE_POINTS points at f
        radii around it. The body matters where the centre is not the object: a ring's centre is its
        hole, and read there the colour of a ring in a colour never seen on a ring is guessed from the
        rings seen (orange rings read as red; docs/embedded_model_experiments.md)."""
        at_centre = self.attributes.probabilities(at_centres)
        if self.attribute_circle <= 0.0:
            return at_centre
        angles = torch.arange(CIRCLE_POINTS, device=centres.device, dtype=centres.dtype) * (2 * math.pi / CIRCLE_POINTS)
        offsets = torch.stack([angles.cos(), angles.sin()], dim=-1) * self.attribute_circle  # (P, 2) in radii
        points = centres[:, :, None] + radii[..., None, None] * offsets  # (B, K, P, 2)
        around = sample_cells(embedding, points.flatten(1, 2), self.stride)  # (B, K * P, E)
        on_body = self.attributes.probabilities(around).unflatten(1, (centres.shape[1], CIRCLE_POINTS)).mean(dim=2)
        return (at_centre + on_body) / 2

    def places(self, detections: ObjectDetections, valid_hw: Sequence[tuple[int, int]]) -> torch.Tensor:
        """(B, K, 3): centre x / w, y / h and radius / min(h, w) of each detection, on the un-padded image."""
        hw = torch.tensor(valid_hw, dtype=detections.centres.dtype, device=detections.centres.device)  # (B, 2) h, w
        x = detections.centres[..., 0] / hw[:, 1:2]
        y = detections.centres[..., 1] / hw[:, 0:1]
        r = detections.radii / hw.min(dim=1, keepdim=True).values
        return torch.stack([x, y, r], dim=-1).clamp(0.0, 1.0)

    def tokens(self, detections: ObjectDetections, valid_hw: Sequence[tuple[int, int]]) -> torch.Tensor:
        """(B, K, H) LLM tokens of the detections (empty slots give tokens too: the mask hides them)."""
        places = self.places(detections, valid_hw).to(detections.embeddings.dtype)
        return self.token_projector(detections.embeddings, detections.attributes, places)

    def forward(
        self, maps: Sequence[torch.Tensor], valid_hw: Sequence[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], ObjectDetections]:
        """maps: the encoder's stride 8 / 16 / 32 maps -> (tokens (B, K, H), token mask (B, K) bool,
        decoder features [p16 (B, D, G, G), p8 (B, D, 2G, 2G)], detections)."""
        p8, p16 = self.pyramid(maps)
        heat, box, embedding = self.heads(p8)
        detections = self.detect(heat, box, embedding)
        tokens = self.tokens(detections, valid_hw)
        return tokens, detections.valid, [p16, p8], detections
