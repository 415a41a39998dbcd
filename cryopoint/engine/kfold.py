"""k-fold training: every fold one after another, then thresholds tuned once on the pooled out-of-fold predictions
and one ensemble checkpoint of the fold models.

``python tools/train.py CONFIG data.fold=all`` (or ``train_kfold(cfg)``) writes::

    runs/NAME/config.yaml             the config (data.fold: all)
    runs/NAME/fold0/ ... foldK-1/     one ordinary run per fold (train(), data.fold = k): best.pt, last.pt, ...
    runs/NAME/oof_predictions.csv     every fold's out-of-fold predictions, pooled (a ``fold`` column added)
    runs/NAME/metrics.jsonl           one ``kfold`` record: the pooled-tuned score (optimistic), the cross-fold
                                      score (honest: each fold thresholded by the others), per fold and class
    runs/NAME/ensemble.pt             every fold's EMA weights (from its best.pt), the config, the catalogue, the
                                      voxel size and the pooled thresholds: cryopoint.load() / detect() use it

Each fold is validated on its held-out runs at its best step (``best.pt``), so the pooled predictions cover every
run once, scored by a model that never trained on it. The thresholds are tuned on them once, with the config's rule
(``post.threshold_tolerance``, as validation tunes), by :func:`cryopoint.post.thresholds.tune_out_of_fold`; the
honest score beside it is :func:`cryopoint.post.thresholds.cross_fold_score`'s.

Resume (``--resume`` / ``train.resume=true``): the latest ``NAME`` / ``NAME-N`` folder holding a fold's ``last.pt``
is continued: a fold whose ``last.pt`` reached ``train.steps`` is skipped, an interrupted one resumes from its
``last.pt``, the others train from scratch; the pooling and the ensemble are then redone.

Under ``torchrun`` the folds train one after another, each with DDP across all processes (not one fold per GPU):
the process group is set up once for all folds, and rank 0 pools the predictions and writes the ensemble.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.panel import Panel

from cryopoint.checkpoint import catalogue_payload, inference_weights, load_checkpoint, save_checkpoint
from cryopoint.config import ALL_FOLDS, Config, config_to_dict, save_config
from cryopoint.engine import state
from cryopoint.engine.distributed import DistInfo, barrier, broadcast_object, cleanup, init_distributed
from cryopoint.engine.train import train
from cryopoint.errors import CheckpointError, ConfigError, DataNotFoundError
from cryopoint.io.atomic import atomic_path, atomic_write_text

__all__ = ["train_kfold", "fold_config", "pool_folds", "ensemble_payload", "KFoldResult", "ENSEMBLE_NAME", "OOF_NAME"]

ENSEMBLE_NAME = "ensemble.pt"
OOF_NAME = "oof_predictions.csv"
#: Where a fold's run folder is, relative to the k-fold folder (``fold0``, ``fold1``, ...).
FOLD_NAME = "fold{}"

console = Console(width=None if sys.stdout.isatty() else 120)


def fold_config(cfg: Config, run_dir: Path, fold: int) -> Config:
    """The config of fold ``fold``: ``cfg`` with ``data.fold = fold``, written to ``run_dir/fold<k>``."""
    out = copy.deepcopy(cfg)
    out.data.fold = fold
    out.train.out_dir = str(run_dir)
    out.train.name = FOLD_NAME.format(fold)
    out.train.resume = False
    return out


def train_kfold(cfg: Config) -> Path:
    """Train every fold of ``cfg`` one after another, pool their out-of-fold predictions, tune the thresholds once
    and write one ensemble checkpoint (see the module docstring).

    Args:
        cfg: A config with ``data.fold: all`` (``data.n_folds`` folds; ``data.val_runs`` must be empty).

    Returns:
        The k-fold run folder (``runs/NAME``), holding ``fold*/``, ``oof_predictions.csv``, ``metrics.jsonl`` and
        ``ensemble.pt``.

    Raises:
        ConfigError: ``data.fold`` is not ``"all"``.
        DataNotFoundError: resuming, but no folder holds a fold's ``last.pt``.

    >>> run = train_kfold(load_config("configs/quickstart.yaml", ["data.fold=all"]))  # doctest: +SKIP
    """
    if cfg.data.fold != ALL_FOLDS:
        raise ConfigError(f"train_kfold trains every fold: set data.fold=all (got data.fold={cfg.data.fold!r}).")
    import torch.distributed

    joined = torch.distributed.is_initialized()  # a caller that set up the process group keeps it
    info = init_distributed(cfg.train.device)
    try:
        run_dir = Path(broadcast_object(str(state.resolve_run_dir(cfg, resume_from="fold*/last.pt")), info))
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
        barrier(info)
        fold_dirs = [_train_fold(cfg, run_dir, k, info) for k in range(cfg.data.n_folds)]
        if info.is_main:
            result = pool_folds(cfg, run_dir, fold_dirs)
            _summary(result, run_dir)
        barrier(info)
    finally:
        if not joined:
            cleanup(info)
    return run_dir


def _train_fold(cfg: Config, run_dir: Path, fold: int, info: DistInfo) -> Path:
    """Train (or resume, or skip when finished) one fold; returns its run folder."""
    fold_cfg = fold_config(cfg, run_dir, fold)
    if cfg.train.resume:
        resumable = copy.deepcopy(fold_cfg)
        resumable.train.resume = True
        try:
            existing = state.resolve_run_dir(resumable)
        except DataNotFoundError:  # this fold never wrote a last.pt: train it from scratch
            existing = None
        if existing is not None:
            step = int(load_checkpoint(existing / "last.pt")["step"])
            if step >= cfg.train.steps:
                if info.is_main:
                    console.print(f"Fold {fold}: finished already ({existing}), skipped.")
                return existing
            fold_cfg = resumable
    if info.is_main:
        console.rule(f"Fold {fold} of {cfg.data.n_folds}")
    return train(fold_cfg)


@dataclass
class KFoldResult:
    """What :func:`pool_folds` found and wrote.

    Attributes:
        thresholds: Per-class thresholds tuned once on the pooled out-of-fold predictions (stored in the ensemble).
        score_tuned: Weighted F-beta of the pooled predictions at those thresholds (optimistic: tuned on them).
        score_cross_fold: Each fold's predictions at thresholds tuned on the other folds, scored together (honest).
        score_oracle: The pooled predictions at argmax thresholds tuned on them (the most optimistic).
        record: The ``kfold`` record written to ``metrics.jsonl``.
        ensemble: The ensemble checkpoint.
    """

    thresholds: dict[str, float]
    score_tuned: float
    score_cross_fold: float
    score_oracle: float
    record: dict[str, Any]
    ensemble: Path


def _fold_runs(fold_dir: Path) -> tuple[Path, list[str]]:
    """Dataset root and validation runs of a fold, as its ``metrics.jsonl`` recorded them."""
    records = [json.loads(line) for line in (fold_dir / "metrics.jsonl").read_text().splitlines()]
    run = next((r for r in records if r.get("type") == "run"), None)
    if run is None:
        raise DataNotFoundError(f"{fold_dir / 'metrics.jsonl'} has no 'run' record; was the fold trained by cryopoint?")
    return Path(run["data_root"]), list(run["val_runs"])


def _read_oof(fold_dir: Path) -> pd.DataFrame:
    path = fold_dir / OOF_NAME
    if not path.is_file():
        raise DataNotFoundError(f"No {OOF_NAME} in {fold_dir}: the fold never validated. Resume the k-fold run.")
    return pd.read_csv(path, dtype={"experiment": str})


def pool_folds(cfg: Config, run_dir: Path, fold_dirs: list[Path]) -> KFoldResult:
    """Pool the folds' out-of-fold predictions, tune thresholds once, score honestly and write the ensemble.

    Args:
        cfg: The k-fold config (``post.threshold_tolerance`` chooses the threshold rule, as in validation).
        run_dir: The k-fold folder: ``oof_predictions.csv``, ``metrics.jsonl`` and ``ensemble.pt`` are written there.
        fold_dirs: Each fold's run folder, fold 0 first (``best.pt``, ``oof_predictions.csv``, ``metrics.jsonl``).

    Returns:
        :class:`KFoldResult`.

    Raises:
        DataNotFoundError: a fold without ``oof_predictions.csv`` or ``best.pt``.
        CheckpointError: folds trained with different model settings or voxel sizes.
    """
    from cryopoint.engine.validate import threshold_prior
    from cryopoint.io.layout import read_truth
    from cryopoint.post.thresholds import cross_fold_score, tune_out_of_fold

    folds = {FOLD_NAME.format(k): _read_oof(d) for k, d in enumerate(fold_dirs)}
    pooled = pd.concat([f.assign(fold=k) for k, f in enumerate(folds.values())], ignore_index=True)
    with atomic_path(run_dir / OOF_NAME) as tmp:
        pooled.to_csv(tmp, index=False)
    roots_runs = [_fold_runs(d) for d in fold_dirs]
    val_runs = [run for _, runs in roots_runs for run in runs]
    truth = read_truth(roots_runs[0][0], split=cfg.data.split, runs=sorted(val_runs))
    # the rule validation tunes with (argmax, or lean), and its prior when the folds were fine-tuned
    post = cfg.post
    rule = {
        "tolerance": post.threshold_tolerance,
        "prior": threshold_prior(cfg),
        "prior_strength": post.threshold_prior_strength,
    }
    tuned = tune_out_of_fold(truth, folds, **rule)
    honest = cross_fold_score(truth, folds, **rule)
    thresholds = {str(k): float(v) for k, v in tuned.thresholds.items()}

    members = [load_checkpoint(d / "best.pt") for d in fold_dirs]
    record = _record(tuned, honest, fold_dirs, roots_runs, members)
    atomic_write_text(run_dir / "metrics.jsonl", json.dumps(record) + "\n")
    metrics = {k: record[k] for k in ("rule", "score_tuned", "score_cross_fold", "score_oracle")}
    payload = ensemble_payload(cfg, members, [d / "best.pt" for d in fold_dirs], thresholds, metrics)
    ensemble = save_checkpoint(run_dir / ENSEMBLE_NAME, payload)
    return KFoldResult(thresholds, tuned.score_after, honest.score, honest.oracle, record, ensemble)


def _record(tuned, honest, fold_dirs, roots_runs, members) -> dict[str, Any]:
    per_class = {
        name: {
            "threshold": float(tuned.thresholds[name]),
            **{k: float(row[k]) for k in ("tp", "fp", "fn", "precision", "recall", "fbeta")},
            "fbeta_cross_fold": float(honest.table.loc[name, "fbeta"]),
        }
        for name, row in tuned.table.iterrows()
    }
    per_fold = [
        {
            "fold": k,
            "run_dir": str(d),
            "val_runs": runs,
            "best_step": int(m["step"]),
            "best_score": float(m["metrics"].get("best_score", float("nan"))),
            "score_cross_fold": float(honest.per_fold.loc[FOLD_NAME.format(k), "score"]),
            "score_oracle": float(honest.per_fold.loc[FOLD_NAME.format(k), "oracle"]),
        }
        for k, (d, (_, runs), m) in enumerate(zip(fold_dirs, roots_runs, members))
    ]
    return {
        "type": "kfold",
        "folds": len(fold_dirs),
        "rule": tuned.rule,
        "score_tuned": float(tuned.score_after),
        "thresholds_tuned_on_same_predictions": True,
        "score_cross_fold": float(honest.score),
        "score_oracle": float(honest.oracle),
        "thresholds": {str(k): float(v) for k, v in tuned.thresholds.items()},
        "per_class": per_class,
        "per_fold": per_fold,
    }


def ensemble_payload(
    cfg: Config,
    members: list[dict[str, Any]],
    sources: list[Path],
    thresholds: dict[str, float],
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ensemble checkpoint payload: the members' inference weights as one
    :class:`~cryopoint.model.ensemble.Ensemble` state dict, with ``cfg``, the catalogue, the voxel size and
    ``thresholds`` (save it with :func:`cryopoint.checkpoint.save_checkpoint`; :func:`cryopoint.load` reads it).

    Args:
        cfg: The config the members were trained with (their ``model`` section must equal its).
        members: The members' checkpoint payloads (e.g. each fold's ``best.pt``); EMA weights where present.
        sources: Where each member came from (recorded in the checkpoint).
        thresholds: Per-class thresholds for the ensemble.
        metrics: Stored as the checkpoint's ``metrics``.

    Raises:
        CheckpointError: no member, or members trained with other model settings or voxel sizes.
    """
    from cryopoint.model.ensemble import ENSEMBLE_KEY

    if not members:
        raise CheckpointError("An ensemble needs at least one member checkpoint.")
    model = config_to_dict(cfg)["model"]
    voxel_size = [float(v) for v in members[0]["voxel_size"]]
    for source, m in zip(sources, members):
        if m["config"]["model"] != model:
            raise CheckpointError(
                f"{source} was trained with model settings {m['config']['model']}, not the k-fold config's "
                f"{model}: every member of an ensemble must share one architecture. Retrain that fold."
            )
        if [float(v) for v in m["voxel_size"]] != voxel_size:
            raise CheckpointError(f"{source} has voxel size {m['voxel_size']}; {sources[0]}'s is {voxel_size}.")
    state_dict = {f"members.{i}.{k}": v for i, m in enumerate(members) for k, v in inference_weights(m).items()}
    return {
        "model_state": state_dict,
        "ema_state": None,
        "config": config_to_dict(cfg),
        "particles": catalogue_payload(),
        "voxel_size": voxel_size,
        "thresholds": {str(k): float(v) for k, v in thresholds.items()},
        "metrics": dict(metrics or {}),
        "step": max(int(m.get("step", 0)) for m in members),
        ENSEMBLE_KEY: {
            "members": len(members),
            "folds": [m["config"].get("data", {}).get("fold") for m in members],
            "sources": [str(s) for s in sources],
            "steps": [int(m.get("step", 0)) for m in members],
        },
    }


def _summary(result: KFoldResult, run_dir: Path) -> None:
    r = result.record
    folds = ", ".join(f"fold {f['fold']} {f['best_score']:.4f} (step {f['best_step']})" for f in r["per_fold"])
    lines = [
        f"{r['folds']} folds, each validated on its held-out runs: {folds}.",
        f"Pooled out-of-fold predictions, thresholds tuned once ({r['rule']}): weighted F-beta "
        f"{result.score_tuned:.4f} (optimistic: tuned on them).",
        f"Cross-fold (honest, each fold thresholded by the others): [bold]{result.score_cross_fold:.4f}[/bold]; "
        f"oracle {result.score_oracle:.4f}.",
        f"Run folder: {run_dir}",
        f"  {ENSEMBLE_NAME} (every fold's EMA weights + pooled thresholds), {OOF_NAME}, metrics.jsonl, fold*/",
        "Detect particles with the ensemble:",
        f"  python tools/detect.py --model {result.ensemble} --files TOMOGRAM.zarr --out predictions/",
    ]
    console.print(Panel("\n".join(lines), title="k-fold training finished"))
