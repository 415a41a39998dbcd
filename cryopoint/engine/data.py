"""Training data for the loop: which dataset, which runs for training and validation, and the batch stream.

The batch stream is a pure function of ``(seed, step)``: epoch ``e`` holds samples ``0 .. samples_per_epoch
- 1`` of :class:`~cryopoint.data.dataset.CropDataset` (each already random from ``(seed, e, i)``), split
between DDP ranks by :func:`~cryopoint.engine.distributed.shard_indices`, cut into batches. Resuming at
step ``s`` starts at the same batch an uninterrupted run would have reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cryopoint.config import Config
from cryopoint.data.dataset import CropDataset, RunData
from cryopoint.engine.distributed import DistInfo, barrier, shard_indices
from cryopoint.errors import ConfigError

__all__ = ["TrainData", "load_data", "steps_per_epoch", "batches"]


@dataclass
class TrainData:
    """The data of one training run.

    Attributes:
        root: Dataset root in the challenge layout (the synthetic cache folder when ``data.root`` is empty).
        train_runs: Runs crops are drawn from.
        val_runs: Held-out runs, validated whole.
        dataset: The crop dataset over ``train_runs``.
    """

    root: Path
    train_runs: list[RunData]
    val_runs: list[RunData]
    dataset: CropDataset

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Å per voxel (z, y, x) of the training tomograms (stored in checkpoints)."""
        return self.train_runs[0].voxel_size


def dataset_root(cfg: Config, info: DistInfo) -> Path:
    """``data.root``, or the embedded synthetic dataset (generated once by rank 0, then reused)."""
    if cfg.data.root:
        return Path(cfg.data.root).expanduser()
    from cryopoint.data.cache import ensure_synthetic_dataset

    kwargs = dict(
        runs=cfg.data.synth_runs,
        shape=cfg.data.synth_shape,
        seed=cfg.data.synth_seed,
        cache_dir=cfg.data.cache_dir or None,
    )
    if info.is_main:
        root = ensure_synthetic_dataset(cfg.data.synth_preset, **kwargs)
    barrier(info)
    if not info.is_main:
        root = ensure_synthetic_dataset(cfg.data.synth_preset, **kwargs)
    return root


def load_data(cfg: Config, info: DistInfo, *, target_kind: str = "heatmap", output_stride: int = 1) -> TrainData:
    """Find or generate the dataset, read its runs, split them by whole tomograms and build the crop dataset.

    Args:
        cfg: ``data.*`` and ``train.seed`` are used.
        info: This process's place in the job (rank 0 generates and caches first).
        target_kind: The model's ``target_kind`` (heatmaps or segmentation labels).
        output_stride: The model's output stride (targets are drawn at that resolution).
    """
    from cryopoint.data.cache import default_cache_dir
    from cryopoint.data.dataset import load_runs
    from cryopoint.data.folds import split_runs

    root = dataset_root(cfg, info)
    cache = Path(cfg.data.cache_dir or default_cache_dir()) / "volumes" if cfg.data.cache_volumes else None

    def read() -> list[RunData]:
        return load_runs(root, cfg.data.runs or None, split=cfg.data.split, kind=cfg.data.kind, cache_dir=cache)

    runs = read() if info.is_main else None
    barrier(info)  # rank 0 filled the volume cache; the others now only memory-map it
    runs = runs if runs is not None else read()
    runs = orient_runs(runs, cfg.data.polarity, check=bool(cfg.data.root))
    train_runs, val_runs = split_runs(
        runs, n_folds=cfg.data.n_folds, fold=cfg.data.fold, val_runs=cfg.data.val_runs or None
    )
    dataset = CropDataset(
        train_runs,
        crop_size=cfg.data.crop,
        output_stride=output_stride,
        target_kind=target_kind,
        target_options=cfg.data.target_options,
        positive_fraction=cfg.data.positive_fraction,
        hard_negative_fraction=cfg.data.hard_negative_fraction,
        decoys=mine_all_decoys(train_runs, cfg.data.hard_negatives_per_run)
        if cfg.data.hard_negative_fraction
        else None,
        samples_per_epoch=cfg.data.samples_per_epoch,
        augment=cfg.data.augment.enabled,
        augment_kwargs={k: v for k, v in asdict(cfg.data.augment).items() if k != "enabled"},
        seed=cfg.train.seed,
    )
    return TrainData(Path(root), train_runs, val_runs, dataset)


def orient_runs(runs: list[RunData], polarity: str, *, check: bool = True) -> list[RunData]:
    """``runs`` with protein dark, as ``data.polarity`` says (inverted runs are new in-memory arrays).

    Training runs carry labels, and they decide where there are enough of them: a run is judged by how dark its
    labelled particles are against the rest of it (:func:`~cryopoint.data.polarity.label_contrast`), and only a run
    with too few labels, or labels too faint to judge, by the label-free check, which can misread a correct
    tomogram from another pipeline. ``check`` False skips the check (and so the warning and ``auto``'s inversion)
    for data known to be dark: the embedded synthetic dataset.
    """
    import warnings

    from cryopoint.data.polarity import check_polarity_setting, estimate_polarity, label_contrast, label_verdict, orient
    from cryopoint.errors import PolarityWarning
    from cryopoint.particles import PARTICLES

    check_polarity_setting(polarity)
    if not check and polarity in ("check", "auto"):
        return runs

    def inverted_if(run: RunData, invert: bool) -> RunData:
        return (
            RunData(run.name, orient(run.volume, run.voxel_size, "bright")[0], run.voxel_size, run.picks)
            if invert
            else run
        )

    if polarity in ("dark", "bright"):
        return [inverted_if(r, polarity == "bright") for r in runs]
    radius = np.array([p.radius for p in PARTICLES])
    why = {}
    for r in runs:
        contrast = label_contrast(r.volume, r.voxel_size, r.points_zyx, radius[r.labels]) if len(r.labels) else None
        verdict = label_verdict(contrast)
        if verdict in ("dark", "bright"):
            why[r.name] = (verdict, f"labelled particles {contrast:+.2f} sd")
        else:
            est = estimate_polarity(r.volume, r.voxel_size)
            why[r.name] = (est.polarity, f"polarity score {est.score:+.2f}")
    inverted = [n for n, (verdict, _) in why.items() if verdict == "bright"]
    if inverted:
        listed = ", ".join(f"{n} ({why[n][1]})" for n in inverted[:8])
        more = f" and {len(inverted) - 8} more" if len(inverted) > 8 else ""
        done = (
            "Inverted them for training (data.polarity=auto)."
            if polarity == "auto"
            else "Models learn protein darker than the ice, and a model trained on these would expect it bright: set "
            "data.polarity=auto to invert the runs that look inverted, data.polarity=bright to invert every run, "
            "or data.polarity=dark if they are not inverted."
        )
        warnings.warn(
            f"{len(inverted)} of {len(runs)} training tomograms look inverted (protein brighter than the ice: their "
            f"labelled particles brighter than the rest, or, without enough labels, a polarity score below zero): "
            f"{listed}{more}. {done}",
            PolarityWarning,
            stacklevel=2,
        )
    return [inverted_if(r, polarity == "auto" and r.name in inverted) for r in runs]


def mine_all_decoys(runs: list[RunData], count: int) -> list[np.ndarray]:
    """Hard-negative decoys of every training run (:func:`cryopoint.engine.hard_negatives.mine_decoys`)."""
    from rich.progress import track

    from cryopoint.engine.hard_negatives import mine_decoys

    return [
        mine_decoys(r.volume, r.voxel_size, r.points_zyx, r.labels, count=count)
        for r in track(runs, description="Mining hard negatives (LoG blobs)", transient=True)
    ]


def steps_per_epoch(cfg: Config, info: DistInfo) -> int:
    """Optimiser steps per epoch: each rank's share of ``samples_per_epoch`` in whole batches.

    Raises:
        ConfigError: an epoch is smaller than one batch on every rank.
    """
    n = (cfg.data.samples_per_epoch // info.world_size) // cfg.train.batch_size
    if n < 1:
        raise ConfigError(
            f"data.samples_per_epoch={cfg.data.samples_per_epoch} is less than one batch per process "
            f"({cfg.train.batch_size} x {info.world_size} processes); raise it or lower train.batch_size."
        )
    return n


def batches(
    data: TrainData, cfg: Config, info: DistInfo, *, start_step: int, end_step: int, per_epoch: int
) -> Iterator[dict]:
    """Yield the batches of steps ``start_step .. end_step - 1`` (collated dicts of the dataset's items)."""
    step = start_step
    bs = cfg.train.batch_size
    while step < end_step:
        epoch, offset = divmod(step, per_epoch)
        take = min(per_epoch - offset, end_step - step)
        mine = shard_indices(list(range(cfg.data.samples_per_epoch)), info)
        data.dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            data.dataset,
            batch_size=bs,
            sampler=mine[offset * bs : (offset + take) * bs],
            drop_last=True,
            num_workers=cfg.data.num_workers,
            pin_memory=info.device.type == "cuda",
            # Own generator: creating a loader must not consume the global RNG (resume equivalence).
            generator=torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + epoch),
        )
        yield from loader
        step += take
