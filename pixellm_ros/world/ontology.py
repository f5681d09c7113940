"""The tabletop world's vocabulary: shapes, colours, sizes, affordances and the held-out split.

Everything a question can ask about is defined here, once, so the renderer, the question
generator and the tests agree on what "red", "large" or "could roll" means.

Affordances (why each shape has them):

=========  =========================================================================
rolls      round in cross-section, would roll off a tilted table: ball, ring, cylinder
stackable  flat top and bottom, another object can rest on it: box, cross, cup
pointy     has sharp corners or tips that could prick a finger: star, wedge
container  hollow, can hold things (water, marbles): cup
has_hole   has a through hole, could be hung on a peg or slid onto a stick: ring
stays_put  does NOT roll (the complement of ``rolls``): box, wedge, star, cross, cup
=========  =========================================================================

Held-out split: six colour x shape pairs never occur in the ``train`` split (no object has them
and no question names them); every ``heldout`` scene holds at least one object with such a pair.
Each colour and each of six shapes loses exactly one partner, so every colour and every shape is
still seen in training, only not together:

    red star, orange ring, yellow box, green cup, blue wedge, purple ball
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "heldout"]
SPLITS: tuple[Split, ...] = ("train", "heldout")


@dataclass(frozen=True)
class ShapeInfo:
    """One shape of the world: its name, plural and affordances."""

    name: str
    plural: str
    affordances: frozenset[str]


SHAPES: tuple[ShapeInfo, ...] = (
    ShapeInfo("ball", "balls", frozenset({"rolls"})),
    ShapeInfo("box", "boxes", frozenset({"stackable", "stays_put"})),
    ShapeInfo("wedge", "wedges", frozenset({"pointy", "stays_put"})),
    ShapeInfo("ring", "rings", frozenset({"rolls", "has_hole"})),
    ShapeInfo("cylinder", "cylinders", frozenset({"rolls"})),
    ShapeInfo("star", "stars", frozenset({"pointy", "stays_put"})),
    ShapeInfo("cross", "crosses", frozenset({"stackable", "stays_put"})),
    ShapeInfo("cup", "cups", frozenset({"container", "stackable", "stays_put"})),
)
SHAPE_NAMES: tuple[str, ...] = tuple(s.name for s in SHAPES)
SHAPE_BY_NAME: dict[str, ShapeInfo] = {s.name: s for s in SHAPES}
AFFORDANCES: tuple[str, ...] = ("rolls", "stackable", "pointy", "container", "has_hole", "stays_put")


@dataclass(frozen=True)
class ColourInfo:
    """A colour name and its reference hue; objects are drawn saturated around that hue."""

    name: str
    hue_deg: float

    def rgb(self, saturation: float = 0.85, value: float = 0.9) -> tuple[int, int, int]:
        """The colour as 0-255 RGB at the given HSV saturation and value."""
        r, g, b = colorsys.hsv_to_rgb((self.hue_deg % 360.0) / 360.0, saturation, value)
        return (round(r * 255), round(g * 255), round(b * 255))


# Hues far enough apart (>= 24 degrees) that lighting, shading and noise never move one into
# another's neighbourhood.
COLOURS: tuple[ColourInfo, ...] = (
    ColourInfo("red", 0.0),
    ColourInfo("orange", 27.0),
    ColourInfo("yellow", 53.0),
    ColourInfo("green", 125.0),
    ColourInfo("blue", 220.0),
    ColourInfo("purple", 282.0),
)
COLOUR_NAMES: tuple[str, ...] = tuple(c.name for c in COLOURS)
COLOUR_BY_NAME: dict[str, ColourInfo] = {c.name: c for c in COLOURS}


@dataclass(frozen=True)
class SizeInfo:
    """A size class: the object's extent radius as a fraction of the image's shorter side.

    The ranges are separated by a factor of about 1.2, so any two size classes are visibly
    different and "the largest" is well defined between classes.
    """

    name: str
    min_fraction: float
    max_fraction: float


SIZES: tuple[SizeInfo, ...] = (
    SizeInfo("small", 0.055, 0.07),
    SizeInfo("medium", 0.085, 0.105),
    SizeInfo("large", 0.125, 0.15),
)
SIZE_NAMES: tuple[str, ...] = tuple(s.name for s in SIZES)
SIZE_BY_NAME: dict[str, SizeInfo] = {s.name: s for s in SIZES}
SIZE_RANK: dict[str, int] = {s.name: i for i, s in enumerate(SIZES)}

HELDOUT_COLOUR_SHAPE: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "star"),
        ("orange", "ring"),
        ("yellow", "box"),
        ("green", "cup"),
        ("blue", "wedge"),
        ("purple", "ball"),
    }
)

TRAIN_COLOUR_SHAPE: tuple[tuple[str, str], ...] = tuple(
    (c, s) for c in COLOUR_NAMES for s in SHAPE_NAMES if (c, s) not in HELDOUT_COLOUR_SHAPE
)
ALL_COLOUR_SHAPE: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOUR_NAMES for s in SHAPE_NAMES)
HELDOUT_COLOUR_SHAPE_SORTED: tuple[tuple[str, str], ...] = tuple(sorted(HELDOUT_COLOUR_SHAPE))


def plural(shape: str) -> str:
    """The plural of a shape name ("box" -> "boxes")."""
    return SHAPE_BY_NAME[shape].plural


def has_affordance(shape: str, affordance: str) -> bool:
    """Whether objects of this shape have the affordance (see the module table)."""
    if affordance not in AFFORDANCES:
        raise ValueError(f"unknown affordance {affordance!r}; known: {AFFORDANCES}")
    return affordance in SHAPE_BY_NAME[shape].affordances


def is_heldout_pair(colour: str, shape: str) -> bool:
    """Whether the colour x shape pair is reserved for the held-out split."""
    return (colour, shape) in HELDOUT_COLOUR_SHAPE
