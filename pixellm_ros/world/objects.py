"""One object on the table: its attributes and where it lies."""

from __future__ import annotations

from dataclasses import dataclass

from pixellm_ros.world.ontology import SHAPE_BY_NAME, has_affordance

# How far each shape reaches from its centre, in units of the object's radius; the placement
# keeps the whole object inside the image with this and the renderer sizes its crop with it.
SHAPE_EXTENT: dict[str, float] = {
    "ball": 1.0,
    "box": 1.17,  # half-side 0.82 r, rotated: up to 0.82 * sqrt(2)
    "wedge": 1.08,
    "ring": 1.0,
    "cylinder": 1.12,
    "star": 1.12,
    "cross": 1.06,  # arm tip corner: hypot(1.0, 0.34)
    "cup": 1.17,  # the handle sticks out of the body
}


@dataclass(frozen=True)
class SceneObject:
    """An object: attributes (shape, colour, size class) and pose in image pixels.

    ``center`` is (x, y) with pixel centres at integer coordinates; ``radius`` is the object's
    nominal extent in pixels (a ball's radius; other shapes are drawn to look as large);
    ``angle`` is the in-plane rotation in radians; ``rgb`` is the object's own paint, a jittered
    version of its colour name's reference colour.
    """

    id: int
    shape: str
    colour: str
    size: str
    radius: float
    center: tuple[float, float]
    angle: float
    rgb: tuple[int, int, int]

    def __post_init__(self) -> None:
        if self.shape not in SHAPE_BY_NAME:
            raise ValueError(f"unknown shape {self.shape!r}")

    @property
    def extent(self) -> float:
        """Largest distance in pixels from ``center`` to any pixel of the object."""
        return self.radius * SHAPE_EXTENT[self.shape]

    @property
    def name(self) -> str:
        """Short name used in answers: "red ball"."""
        return f"{self.colour} {self.shape}"

    @property
    def full_name(self) -> str:
        """Name with the size class: "small red ball" (MUSE's ``rephrased_name``)."""
        return f"{self.size} {self.colour} {self.shape}"

    def can(self, affordance: str) -> bool:
        """Whether the object has the affordance (see ``ontology``)."""
        return has_affordance(self.shape, affordance)
