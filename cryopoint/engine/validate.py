"""Validation during training: whole-tomogram inference on held-out runs, peaks, thresholds, the exact score.

For each validation run the (EMA) model goes through :func:`cryopoint.infer.predict_peaks`, the same path as
:func:`cryopoint.detect` (sliding window, TTA when ``infer.tta``, peak finding), and the
pooled predictions are scored with the challenge metric twice:

* with per-class thresholds tuned on these very predictions (:func:`cryopoint.post.thresholds.tune_thresholds`).
  This is **optimistic**: the thresholds have seen the answers. It is what the thresholds shipped in the
  checkpoint are, and what a fold's out-of-fold CSV is for (pool the folds, then tune once). When training
  started from a checkpoint with thresholds (fine-tuning), they are shrunk toward that checkpoint's
  (:func:`threshold_prior`, ``post.threshold_prior_strength``);
* at one fixed threshold for every class (``post.default_threshold``): an honest number with no tuning.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from rich.table import Table
from torch import nn

from cryopoint.config import Config
from cryopoint.data.dataset import RunData
from cryopoint.particles import PARTICLES

__all__ = ["ValResult", "validate", "threshold_prior", "truth_table", "results_table", "val_record"]


@dataclass
class ValResult:
    """One validation pass.

    Attributes:
        score: Weighted F-beta with thresholds tuned on these predictions (optimistic).
        score_fixed: Weighted F-beta with every class at ``default_threshold``.
        default_threshold: The fixed threshold used for ``score_fixed``.
        thresholds: Tuned threshold per particle name.
        table: Per-class metric table at the tuned thresholds (``cryopoint.metric.score`` columns).
        table_fixed: The same at the fixed threshold.
        predictions: Every peak above ``post.min_score`` with its ``score`` and ``experiment`` (Å columns).
        seconds: Wall time of the pass.
        tuned_alone: The thresholds the rule chose on these predictions before any prior moved them (equal to
            ``thresholds`` without a prior).
        prior_strength: The prior's weight in particles, or ``None`` when no prior was given.
    """

    score: float
    score_fixed: float
    default_threshold: float
    thresholds: dict[str, float]
    table: pd.DataFrame
    table_fixed: pd.DataFrame
    predictions: pd.DataFrame = field(repr=False)
    seconds: float = 0.0
    tuned_alone: dict[str, float] = field(default_factory=dict)
    prior_strength: float | None = None


def truth_table(runs: Sequence[RunData]) -> pd.DataFrame:
    """The true picks of ``runs`` as one picks table with an ``experiment`` column."""
    tables = [r.picks.assign(experiment=r.name)[["experiment", "particle_type", "x", "y", "z"]] for r in runs]
    return pd.concat(tables, ignore_index=True)


def threshold_prior(cfg: Config) -> dict[str, float] | None:
    """The thresholds validation shrinks its own toward: those of the checkpoint training started from
    (``train.init_from``), or ``None`` (no such checkpoint, none stored in it, or
    ``post.threshold_prior_strength`` 0)."""
    if not cfg.train.init_from or cfg.post.threshold_prior_strength <= 0:
        return None
    from cryopoint.checkpoint import load_checkpoint
    from cryopoint.weights import resolve_checkpoint

    stored = load_checkpoint(resolve_checkpoint(cfg.train.init_from)).get("thresholds") or {}
    return {str(k): float(v) for k, v in stored.items()} or None


def validate(
    model: nn.Module,
    runs: Sequence[RunData],
    cfg: Config,
    device: torch.device,
    prior: dict[str, float] | None = None,
) -> ValResult:
    """Predict every validation run, find peaks, tune thresholds and score (see the module docstring).

    Args:
        model: The model to evaluate (the EMA copy during training), already on ``device``.
        runs: Validation runs (normalised volumes and true picks).
        cfg: Provides ``infer.*`` (window, overlap, batch) and ``post.*`` (peak finding, fixed threshold,
            the tuning rule and the prior's strength).
        device: Compute device.
        prior: Thresholds the tuned ones are shrunk toward (:func:`threshold_prior`), or ``None``.

    Returns:
        A :class:`ValResult`.
    """
    from cryopoint.infer import predict_peaks
    from cryopoint.metric import score
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds
    from cryopoint.tomogram import Tomogram

    start = time.perf_counter()
    found = []
    model.eval()
    for run in runs:
        # the one inference path (TTA included), on the volume load_runs already normalised
        tomo = Tomogram(run.volume, run.voxel_size, name=run.name)
        peaks, _ = predict_peaks(model, tomo, infer=cfg.infer, post=cfg.post, device=device, normalized=True)
        found.append(peaks.assign(experiment=run.name))
    predictions = pd.concat(found, ignore_index=True)
    predictions = predictions[["experiment", *[c for c in predictions.columns if c != "experiment"]]]
    truth = truth_table(runs)
    post = cfg.post
    tuned = tune_thresholds(
        truth,
        predictions,
        tolerance=post.threshold_tolerance,
        prior=prior,
        prior_strength=post.threshold_prior_strength,
    )
    thresholds = {str(k): float(v) for k, v in tuned.thresholds.items()}
    at_tuned = score(truth, apply_thresholds(predictions, thresholds))
    fixed = cfg.post.default_threshold
    at_fixed = score(truth, predictions[predictions["score"] >= fixed])
    return ValResult(
        score=float(at_tuned.score),
        score_fixed=float(at_fixed.score),
        default_threshold=float(fixed),
        thresholds=thresholds,
        table=at_tuned.table,
        table_fixed=at_fixed.table,
        predictions=predictions.reset_index(drop=True),
        seconds=time.perf_counter() - start,
        tuned_alone={str(k): float(v) for k, v in tuned.chosen.items()},
        prior_strength=tuned.prior_strength,
    )


def results_table(result: ValResult, step: int) -> Table:
    """A rich table: per class, the tuned threshold, TP/FP/FN, precision, recall, F-beta (tuned and fixed)."""
    table = Table(
        title=f"Validation at step {step}: F-beta {result.score:.4f} (tuned) / {result.score_fixed:.4f} "
        f"(threshold {result.default_threshold:g})",
        caption="Tuned thresholds were fit on these same predictions, so the tuned score is optimistic; "
        "the fixed-threshold score is not tuned. Pool out-of-fold CSVs across folds to tune honestly.",
    )
    for col in ("particle", "weight", "threshold", "TP", "FP", "FN", "precision", "recall", "F-beta", "F-beta fixed"):
        table.add_column(col, justify="left" if col == "particle" else "right")
    for p in PARTICLES:
        row, row_fixed = result.table.loc[p.name], result.table_fixed.loc[p.name]
        table.add_row(
            p.name,
            f"{p.weight:g}",
            f"{result.thresholds.get(p.name, float('nan')):.3f}",
            f"{int(row['tp'])}",
            f"{int(row['fp'])}",
            f"{int(row['fn'])}",
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['fbeta']:.3f}",
            f"{row_fixed['fbeta']:.3f}",
        )
    return table


def val_record(result: ValResult, step: int) -> dict:
    """The JSON-ready ``metrics.jsonl`` line of a validation pass."""
    per_class = {}
    for p in PARTICLES:
        row, row_fixed = result.table.loc[p.name], result.table_fixed.loc[p.name]
        per_class[p.name] = {
            "threshold": result.thresholds.get(p.name),
            **{k: float(row[k]) for k in ("tp", "fp", "fn", "precision", "recall", "fbeta")},
            "fbeta_fixed": float(row_fixed["fbeta"]),
        }
    return {
        "type": "val",
        "step": int(step),
        "score": result.score,
        "score_fixed": result.score_fixed,
        "default_threshold": result.default_threshold,
        "thresholds_tuned_on_same_predictions": True,
        "thresholds": result.thresholds,
        "thresholds_prior_strength": result.prior_strength,  # None: validation's own; else shrunk toward init_from's
        "thresholds_tuned_alone": result.tuned_alone,
        "per_class": per_class,
        "n_predictions": int(len(result.predictions)),
        "seconds": round(result.seconds, 3),
    }
