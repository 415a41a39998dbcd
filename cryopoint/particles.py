"""The particle catalogue: the single source of every particle's name, radius, score weight and label.

Numbers come from the CZII CryoET Object Identification challenge (see ``shared/reference/task.md``).
Labels are fixed integers in catalogue order; heatmap channel ``i`` is the particle with ``label == i``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryopoint.errors import UnknownParticleError

__all__ = [
    "ParticleType",
    "PARTICLES",
    "PARTICLE_NAMES",
    "NUM_CLASSES",
    "get_particle",
    "total_weight",
    "match_distance",
]


@dataclass(frozen=True)
class ParticleType:
    """One particle type.

    Attributes:
        name: Exact challenge spelling, e.g. ``"apo-ferritin"``.
        radius: Particle radius in Å.
        weight: Weight of this type in the challenge score (0 = present but not scored).
        label: Fixed integer label; also the heatmap channel index.
    """

    name: str
    radius: float
    weight: float
    label: int

    @property
    def match_distance(self) -> float:
        """Distance in Å within which a prediction counts as a hit (0.5 x radius)."""
        return 0.5 * self.radius


PARTICLES: tuple[ParticleType, ...] = (
    ParticleType("apo-ferritin", 60.0, 1.0, 0),
    ParticleType("beta-amylase", 65.0, 0.0, 1),
    ParticleType("beta-galactosidase", 90.0, 2.0, 2),
    ParticleType("ribosome", 150.0, 1.0, 3),
    ParticleType("thyroglobulin", 130.0, 2.0, 4),
    ParticleType("virus-like-particle", 135.0, 1.0, 5),
)
PARTICLE_NAMES: tuple[str, ...] = tuple(p.name for p in PARTICLES)
NUM_CLASSES: int = len(PARTICLES)
_BY_NAME = {p.name: p for p in PARTICLES}


def get_particle(name: str) -> ParticleType:
    """Look a particle type up by its exact name.

    >>> get_particle("ribosome").radius
    150.0

    Raises:
        UnknownParticleError: the name is not in the catalogue (the message lists the valid names).
    """
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise UnknownParticleError(
            f"Unknown particle type {name!r}. Valid names: {', '.join(PARTICLE_NAMES)}."
        ) from None


def total_weight() -> float:
    """Sum of all score weights (7 for the challenge); the score's denominator."""
    return float(sum(p.weight for p in PARTICLES))


def match_distance(name: str, multiplier: float = 0.5) -> float:
    """Match distance in Å for a particle type: ``multiplier x radius``."""
    return multiplier * get_particle(name).radius
