"""What a detector's false positives land on, in simulated runs whose full layout is known.

For each class, every pick that is not the first hit on a true particle of that class is put in one category
(the metric's false positives, duplicates included, so the counts add up to its FP):

* ``duplicate``: within the match distance (0.5 x the class radius) of a true particle of its class that another
  pick already found;
* ``another class``: on a labelled particle of another class (centre within half of either radius);
* ``look-alike``: on unlabelled clutter (shell, blob or assembly) whose radius is within 25 % of the class's;
* ``other clutter``: on any other unlabelled object (clutter of another size, gold, vesicle, filament);
* ``off-centre``: inside an object's radius (plus half the class radius) but not near its centre;
* ``background, in the ice`` / ``background, outside the ice``: near no object at all.

The layout comes from :func:`cryopoint.synth.simulate.run_layout`, which replays the run's own draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryopoint.particles import PARTICLE_NAMES, get_particle

CATEGORIES = (
    "duplicate",
    "another class",
    "look-alike",
    "other clutter",
    "off-centre",
    "background, in the ice",
    "background, outside the ice",
)
CLUTTER = ("shell", "blob", "assembly")
#: Clutter whose radius is within this fraction of a class's radius counts as that class's look-alike.
LOOK_ALIKE_TOLERANCE = 0.25


def false_positive_sources(picks: pd.DataFrame, layout: pd.DataFrame, slab) -> pd.DataFrame:
    """Counts of one tomogram's false positives per class (rows, catalogue order) and category (columns,
    :data:`CATEGORIES`).

    Args:
        picks: Thresholded picks of one tomogram (``particle_type``, ``x, y, z`` Å).
        layout: Its objects (:func:`cryopoint.synth.simulate.run_layout`): ``kind``, ``particle_type``,
            ``radius``, ``x, y, z``; the ``particle`` rows are the truth.
        slab: Its ice slab (the second value of ``run_layout``), to tell background in the ice from outside it.
    """
    counts = pd.DataFrame(0, index=list(PARTICLE_NAMES), columns=list(CATEGORIES))
    if not len(picks) or not len(layout):
        return counts
    centres = layout[["x", "y", "z"]].to_numpy(dtype=np.float64)
    radii = layout["radius"].to_numpy(dtype=np.float64)
    kinds = layout["kind"].to_numpy()
    types = layout["particle_type"].to_numpy()
    tree = cKDTree(centres)
    for name in PARTICLE_NAMES:
        r = get_particle(name).radius
        xyz = picks.loc[picks.particle_type == name, ["x", "y", "z"]].to_numpy(dtype=np.float64)
        if not len(xyz):
            continue
        own = np.flatnonzero((kinds == "particle") & (types == name))
        found: set[int] = set()
        dist, idx = tree.query(xyz)
        for p, d, i in zip(xyz, dist, idx):
            if len(own):
                d_own = np.linalg.norm(centres[own] - p, axis=1)
                j = int(np.argmin(d_own))
                if d_own[j] <= 0.5 * r:  # a hit on its own class: the first is a true positive
                    if own[j] in found:
                        counts.loc[name, "duplicate"] += 1
                    found.add(int(own[j]))
                    continue
            counts.loc[name, _category(p, d, kinds[i], types[i], radii[i], name, r, slab)] += 1
    return counts


def _category(p, d, kind, ptype, radius, name, r, slab) -> str:
    if d <= max(0.5 * r, 0.5 * radius):
        if kind == "particle":  # its own class here only beyond the match distance (a particle drawn larger)
            return "another class" if ptype != name else "off-centre"
        if kind in CLUTTER and abs(radius / r - 1.0) <= LOOK_ALIKE_TOLERANCE:
            return "look-alike"
        return "other clutter"
    if d <= radius + 0.5 * r:
        return "off-centre"
    bottom, top = slab.surfaces(np.float64(p[0]), np.float64(p[1]))
    return "background, in the ice" if float(bottom) <= p[2] <= float(top) else "background, outside the ice"
