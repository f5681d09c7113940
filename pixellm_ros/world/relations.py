"""Spatial and comparative predicates over the objects of a scene, with their exact definitions.

Positions are object centres in image pixels (x right, y down). The camera looks at the table
from the front, so "behind" means higher in the image (smaller y) and "in front of" lower.

Definitions (R is the reference object, r its radius, d = centre offset of an object from R):

- left of R:     d_x < -r        right of R:     d_x > r
- behind R:      d_y < -r        in front of R:  d_y > r
  A relation question is only asked when no other object is near the boundary, i.e. none has
  |d| on that axis between 0.5 r and 1.5 r (``relation_is_clear``); objects with |d| < 0.5 r are
  clearly neither (e.g. straight behind is not "left of").
- closest to R: the object with the smallest centre distance to R, asked only when the
  runner-up is at least 1.3 times farther.
- leftmost / rightmost / farthest from the camera / closest to the camera within a group:
  extreme centre coordinate, asked only when the runner-up is at least 0.5 radius of the
  winner behind it.
- largest / smallest within a group: the unique member of the highest / lowest size class;
  the size classes differ by a factor of about 1.2 in radius (``ontology.SIZES``).
- left / right / back / front half of the table: centre on that side of the image's middle,
  asked only when no centre lies within 6% of the image size of the middle line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

from pixellm_ros.world.objects import SceneObject
from pixellm_ros.world.ontology import SIZE_RANK

Direction = Literal["left", "right", "behind", "front"]
DIRECTIONS: tuple[Direction, ...] = ("left", "right", "behind", "front")
Extreme = Literal["leftmost", "rightmost", "farthest", "nearest"]
EXTREMES: tuple[Extreme, ...] = ("leftmost", "rightmost", "farthest", "nearest")
HALVES: tuple[Direction, ...] = ("left", "right", "behind", "front")

RELATION_BAND = (0.5, 1.5)  # in reference radii: offsets in this band are ambiguous
CLOSEST_RATIO = 1.3
EXTREME_MARGIN = 0.5  # in winner radii
HALF_MARGIN = 0.06  # fraction of the image size


def _signed_offset(obj: SceneObject, ref: SceneObject, direction: Direction) -> float:
    """Offset of ``obj`` from ``ref`` along ``direction`` (positive = in that direction)."""
    dx = obj.center[0] - ref.center[0]
    dy = obj.center[1] - ref.center[1]
    return {"left": -dx, "right": dx, "behind": -dy, "front": dy}[direction]


def in_direction(obj: SceneObject, ref: SceneObject, direction: Direction) -> bool:
    """Whether ``obj`` is left of / right of / behind / in front of ``ref`` (module definitions)."""
    return obj.id != ref.id and _signed_offset(obj, ref, direction) > ref.radius


def relation_is_clear(objects: Sequence[SceneObject], ref: SceneObject, direction: Direction) -> bool:
    """No object other than ``ref`` sits near the boundary of the relation."""
    lo, hi = RELATION_BAND
    for obj in objects:
        if obj.id == ref.id:
            continue
        offset = abs(_signed_offset(obj, ref, direction))
        if lo * ref.radius <= offset <= hi * ref.radius:
            return False
    return True


def distance(a: SceneObject, b: SceneObject) -> float:
    """Distance between centres in pixels."""
    return math.hypot(a.center[0] - b.center[0], a.center[1] - b.center[1])


def closest_to(objects: Sequence[SceneObject], ref: SceneObject) -> SceneObject | None:
    """The object clearly closest to ``ref``, or None when there is no clear winner."""
    others = sorted((o for o in objects if o.id != ref.id), key=lambda o: distance(o, ref))
    if not others:
        return None
    if len(others) >= 2 and distance(others[1], ref) < CLOSEST_RATIO * distance(others[0], ref):
        return None
    return others[0]


_EXTREME_KEY: dict[Extreme, Callable[[SceneObject], float]] = {
    "leftmost": lambda o: o.center[0],
    "rightmost": lambda o: -o.center[0],
    "farthest": lambda o: o.center[1],
    "nearest": lambda o: -o.center[1],
}


def extreme(group: Sequence[SceneObject], which: Extreme) -> SceneObject | None:
    """The group's clear leftmost / rightmost / farthest / nearest member, or None.

    Needs at least two members, and the runner-up at least EXTREME_MARGIN winner radii behind.
    """
    if len(group) < 2:
        return None
    key = _EXTREME_KEY[which]
    ranked = sorted(group, key=key)
    if key(ranked[1]) - key(ranked[0]) < EXTREME_MARGIN * ranked[0].radius:
        return None
    return ranked[0]


def size_extreme(group: Sequence[SceneObject], largest: bool) -> SceneObject | None:
    """The unique member of the group's highest (or lowest) size class, or None.

    Needs at least two members, and no other member in the same size class.
    """
    if len(group) < 2:
        return None
    ranks = [SIZE_RANK[o.size] for o in group]
    best = max(ranks) if largest else min(ranks)
    winners = [o for o, r in zip(group, ranks) if r == best]
    return winners[0] if len(winners) == 1 else None


def in_half(obj: SceneObject, half: Direction, height: int, width: int) -> bool:
    """Whether the object's centre lies in that half of the image (left/right/behind=top/front=bottom)."""
    x, y = obj.center
    return {"left": x < width / 2.0, "right": x > width / 2.0, "behind": y < height / 2.0, "front": y > height / 2.0}[half]


def half_is_clear(objects: Sequence[SceneObject], half: Direction, height: int, width: int) -> bool:
    """No centre lies within HALF_MARGIN of the middle line the half is cut by."""
    if half in ("left", "right"):
        return all(abs(o.center[0] - width / 2.0) > HALF_MARGIN * width for o in objects)
    return all(abs(o.center[1] - height / 2.0) > HALF_MARGIN * height for o in objects)


def unique_description(objects: Sequence[SceneObject], obj: SceneObject) -> str | None:
    """The shortest phrase that picks ``obj`` out of ``objects``: "ring", "red ball", "small red ball".

    None when even shape + colour + size class is shared with another object.
    """
    candidates = (
        (lambda o: o.shape == obj.shape, obj.shape),
        (lambda o: o.shape == obj.shape and o.colour == obj.colour, obj.name),
        (lambda o: o.shape == obj.shape and o.colour == obj.colour and o.size == obj.size, obj.full_name),
    )
    for matches, phrase in candidates:
        if sum(1 for o in objects if matches(o)) == 1:
            return phrase
    return None
