"""The challenge score written out a second time, from its rule, for tests that check reported numbers.

It shares no code with :mod:`cryopoint.metric` (radii and weights are typed in from the challenge, distances
are brute force), so a test that compares the two catches a broken metric, a broken file or a number
that was copied from the wrong place.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: name: (radius Å, weight), as published by the challenge.
CHALLENGE_CLASSES = {
    "apo-ferritin": (60.0, 1.0),
    "beta-amylase": (65.0, 0.0),
    "beta-galactosidase": (90.0, 2.0),
    "ribosome": (150.0, 1.0),
    "thyroglobulin": (130.0, 2.0),
    "virus-like-particle": (135.0, 1.0),
}


def counts_by_hand(truth: pd.DataFrame, picks: pd.DataFrame) -> pd.DataFrame:
    """Per class: ``tp`` (true points with a pick of their class and run within half the radius), ``n_true``,
    ``n_pred``."""
    rows = {}
    for name, (radius, _) in CHALLENGE_CLASSES.items():
        tp = 0
        t_cls, p_cls = truth[truth["particle_type"] == name], picks[picks["particle_type"] == name]
        for run, t_run in t_cls.groupby("experiment"):
            p_xyz = p_cls.loc[p_cls["experiment"] == run, ["x", "y", "z"]].to_numpy(float)
            if len(p_xyz):
                d = np.linalg.norm(t_run[["x", "y", "z"]].to_numpy(float)[:, None] - p_xyz[None], axis=-1)
                tp += int((d.min(axis=1) <= 0.5 * radius).sum())
        rows[name] = {"tp": tp, "n_true": len(t_cls), "n_pred": len(p_cls)}
    return pd.DataFrame.from_dict(rows, orient="index")


def score_by_hand(truth: pd.DataFrame, picks: pd.DataFrame, beta: float = 4.0) -> float:
    """Weighted F-beta over the six classes (divided by the total weight, 7)."""
    total = 0.0
    for name, row in counts_by_hand(truth, picks).iterrows():
        p = row["tp"] / row["n_pred"] if row["n_pred"] else 0.0
        r = row["tp"] / row["n_true"] if row["n_true"] else 0.0
        f = (1 + beta**2) * p * r / (beta**2 * p + r) if p + r else 0.0
        total += CHALLENGE_CLASSES[name][1] * f
    return total / sum(w for _, w in CHALLENGE_CLASSES.values())
