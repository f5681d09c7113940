"""Which question kinds the training stream asks, as training goes on.

Early on, the model cannot yet see colours or shapes, so questions that only need one attribute
(colour, shape, colour + shape) are drawn more often; questions that build on those (relations,
superlatives, extremes, affordances, negations, halves, closest) fade in. From ``full_mix_at``
on, the mix is the world's own ``KIND_WEIGHTS``. Every kind keeps a non-zero weight throughout,
so nothing is unseen early; only the proportions move.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pixellm_ros.world.questions import KIND_WEIGHTS

BASIC_KINDS: tuple[str, ...] = ("colour", "shape", "colour_shape")


@dataclass(frozen=True)
class Curriculum:
    """Kind weights as a function of progress p in [0, 1].

    basic_boost: factor on BASIC_KINDS at p = 0; composite_start: factor on the other kinds at p = 0;
    both move linearly to 1 at p = full_mix_at.
    """

    basic_boost: float = 3.0
    composite_start: float = 0.35
    full_mix_at: float = 0.4
    base: Mapping[str, float] = field(default_factory=lambda: dict(KIND_WEIGHTS))

    def weights(self, progress: float) -> dict[str, float]:
        ramp = min(max(progress / self.full_mix_at, 0.0), 1.0) if self.full_mix_at > 0 else 1.0
        basic = self.basic_boost + (1.0 - self.basic_boost) * ramp
        composite = self.composite_start + (1.0 - self.composite_start) * ramp
        return {kind: w * (basic if kind in BASIC_KINDS else composite) for kind, w in self.base.items()}
