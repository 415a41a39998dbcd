"""Training data: tomograms read and normalised once (in memory or memory-mapped), and the crop Dataset.

Determinism: item ``i`` of epoch ``e`` draws all its randomness (crop choice, augmentation) from
``np.random.default_rng([seed, e, i])``. The sample therefore depends only on ``(seed, epoch, i)``, not on
the number of DataLoader workers, DDP ranks, or where a resumed run restarts. Call
:meth:`CropDataset.set_epoch` before iterating each epoch (with ``persistent_workers=False``, the default,
so the workers see the new epoch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from rich.progress import track

from cryopoint import io as cpio
from cryopoint.config import TARGET_KINDS, AugmentConfig, DataConfig, HeatmapTargetOptions, TargetOptions
from cryopoint.coords import ANGSTROM_COLUMNS, angstrom_to_voxel, as_voxel_size
from cryopoint.data.cache import load_volume
from cryopoint.data.sampling import CropSampler, clamp_start, extract_crop, points_near_crop
from cryopoint.data.sphere_targets import draw_sphere_labels
from cryopoint.data.targets import draw_heatmaps
from cryopoint.data.transforms import random_augment, random_zoom_factor, resize
from cryopoint.errors import ConfigError, DataNotFoundError, PointsOutsideVolumeError
from cryopoint.io.picks import check_points_in_volume
from cryopoint.particles import PARTICLES, get_particle
from cryopoint.tomogram import Tomogram

__all__ = ["RunData", "load_runs", "CropDataset"]


@dataclass
class RunData:
    """One training tomogram: its normalised volume, geometry and particles.

    Attributes:
        name: Run name, e.g. ``"TS_5_4"``.
        volume: Normalised float32 volume ``(Z, Y, X)``, in memory or a read-only ``np.memmap``.
        voxel_size: Å per voxel ``(z, y, x)``.
        picks: Picks table with at least ``x, y, z`` (Å) and ``particle_type``.
        points_zyx: ``(N, 3)`` float64 particle centres in voxels ``(z, y, x)``, derived from ``picks``.
        labels: ``(N,)`` int64 catalogue labels, derived from ``picks``.
    """

    name: str
    volume: np.ndarray
    voxel_size: tuple[float, float, float]
    picks: pd.DataFrame
    points_zyx: np.ndarray = field(init=False, repr=False)
    labels: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.voxel_size = as_voxel_size(self.voxel_size)
        xyz = self.picks[list(ANGSTROM_COLUMNS)].to_numpy(dtype=np.float64) if len(self.picks) else np.zeros((0, 3))
        self.points_zyx = angstrom_to_voxel(xyz, self.voxel_size)
        self.labels = np.array([get_particle(n).label for n in self.picks.get("particle_type", [])], dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape ``(Z, Y, X)`` in voxels."""
        return tuple(int(s) for s in self.volume.shape)  # type: ignore[return-value]

    def __getstate__(self) -> dict:
        """Pickle a memory-mapped ``.npy`` volume as its path, not its data.

        DataLoader workers started by ``spawn``/``forkserver`` (macOS, Windows, Python >= 3.14) receive the
        dataset by pickling; a ``np.memmap`` would otherwise arrive as a full in-memory copy in every worker.
        """
        state = self.__dict__.copy()
        vol = self.volume
        if isinstance(vol, np.memmap) and vol.filename and str(vol.filename).endswith(".npy") and vol.offset > 0:
            state["volume"] = _MemmapRef(str(vol.filename), tuple(vol.shape))
        return state

    def __setstate__(self, state: dict) -> None:
        vol = state["volume"]
        if isinstance(vol, _MemmapRef):
            state["volume"] = np.load(vol.path, mmap_mode="r")
            if state["volume"].shape != vol.shape:
                raise DataNotFoundError(f"Cached volume {vol.path} changed while in use (shape {vol.shape} expected).")
        self.__dict__.update(state)


@dataclass(frozen=True)
class _MemmapRef:
    """A memory-mapped ``.npy`` volume, by path (see :meth:`RunData.__getstate__`)."""

    path: str
    shape: tuple[int, ...]


def load_runs(
    root: str | os.PathLike,
    runs: Sequence[str] | None = None,
    *,
    split: str = "train",
    kind: str = "denoised",
    cache_dir: str | os.PathLike | None = None,
) -> list[RunData]:
    """Read runs of a dataset in the challenge layout, normalising each tomogram once.

    Args:
        root: Dataset root (holding ``train/static/ExperimentRuns/...`` and ``train/overlay/...``).
        runs: Run names to load; ``None`` = every run of the split, sorted.
        split: ``"train"`` or ``"test"`` (picks are read for both; the split must have them).
        kind: Tomogram kind, e.g. ``"denoised"``, ``"wbp"``.
        cache_dir: Where to keep normalised volumes as ``.npy`` files that are memory-mapped on later loads
            (:func:`cryopoint.data.cache.load_volume`: keyed by the source path, its files' mtimes and sizes,
            and the normalisation code). ``None`` = keep the volumes in memory.

    Returns:
        One :class:`RunData` per run, in the order of ``runs``. Picks whose centre lies outside their
        tomogram are dropped with a :class:`~cryopoint.errors.PointsOutsideVolumeWarning`.

    Raises:
        DataNotFoundError: a requested run does not exist (the message lists the known runs).
        PointsOutsideVolumeError: every pick of a run lies outside its tomogram (wrong units or voxel size).

    >>> runs = load_runs("data/czii", ["TS_5_4"], cache_dir=default_cache_dir() / "volumes")  # doctest: +SKIP
    """
    known = cpio.list_runs(root, split=split)
    names = sorted(known) if runs is None else list(runs)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataNotFoundError(
            f"Unknown run(s) {', '.join(map(repr, unknown))} in {root} ({split}); "
            f"known runs: {', '.join(sorted(known))}."
        )
    out = []
    for name in track(names, description=f"Loading {len(names)} {kind} tomogram(s)", transient=True):
        volume, voxel_size = load_volume(cpio.tomogram_path(root, name, split=split, kind=kind), cache_dir)
        picks = cpio.read_picks(root, name, split=split)
        inside = check_points_in_volume(picks, Tomogram(volume, voxel_size, name=name), on_outside="drop")
        if len(picks) and not len(inside):
            raise PointsOutsideVolumeError(
                f"All {len(picks)} picks of run {name!r} lie outside its tomogram (shape z, y, x {volume.shape}, "
                f"voxel size {voxel_size} Å): are the picks in Å (not voxels), and is the voxel size right?"
            )
        out.append(RunData(name, volume, voxel_size, inside))
    return out


class CropDataset(torch.utils.data.Dataset):
    """Random training crops with their targets, reproducible from ``(seed, epoch, index)``.

    Crops are drawn by :class:`~cryopoint.data.sampling.CropSampler` (class-balanced positives, uniform
    background, starts clamped inside the volume, padding only where a volume is smaller than the crop).
    Targets are drawn from the particles inside the crop and within ``halo`` voxels of it, after the
    augmentation has moved volume and points together.

    Args:
        runs: Training runs.
        crop_size: ``(D, H, W)`` voxels; each divisible by ``output_stride``.
        output_stride: The model's output stride; targets have shape ``crop_size // output_stride``.
        target_kind: ``"heatmap"`` (Gaussian heatmaps, ``(C, D', H', W')`` float32) or ``"segmentation"``
            (sphere labels, ``(D', H', W')`` int64, 0 = background).
        target_options: The target drawer's settings, the ``data.target_options`` section of ``target_kind``
            (:class:`~cryopoint.config.HeatmapTargetOptions` or :class:`~cryopoint.config.SegmentationTargetOptions`;
            ``None``: its defaults).
        positive_fraction: Probability that a crop is centred near a particle.
        hard_negative_fraction: Probability that a crop is centred on one of ``decoys`` (0 = none, the default).
        decoys: Per run, ``(K, 3)`` voxel centres ``(z, y, x)`` of particle-like non-particles, e.g. from
            :func:`cryopoint.engine.hard_negatives.mine_decoys`; required when ``hard_negative_fraction > 0``.
        samples_per_epoch: Dataset length.
        augment: Apply :func:`cryopoint.data.transforms.random_augment` (flips, xy quarter turns and
            transposes, intensity scale/shift/noise).
        augment_kwargs: Extra arguments of ``random_augment``, and ``zoom`` (0-1: particles look up to ``1 +
            zoom`` times larger or smaller; :class:`~cryopoint.config.AugmentConfig`). xy quarter turns and
            transposes need square ``H == W`` crops and equal y/x voxel sizes; for other crops they default to off.
        seed: Base seed.
        class_weights: Relative class weights for choosing positive crops (``None`` = uniform over the
            classes present).
        halo: Voxels around the crop whose particles still reach the target; ``None`` = derived from
            ``target_options`` (``truncate x sigma_factor x`` largest radius for heatmaps,
            ``radius_fraction x`` largest radius for spheres) plus one voxel.
        pad_value: Image value where a crop extends past a volume smaller than the crop.

    >>> ds = CropDataset(runs, crop_size=(16, 64, 64), output_stride=2, samples_per_epoch=100)  # doctest: +SKIP
    >>> item = ds[0]; item["image"].shape, item["target"].shape  # doctest: +SKIP
    (torch.Size([1, 16, 64, 64]), torch.Size([6, 8, 32, 32]))
    """

    def __init__(
        self,
        runs: Sequence[RunData],
        *,
        crop_size: Sequence[int],
        output_stride: int = 1,
        target_kind: str = "heatmap",
        target_options: TargetOptions | None = None,
        positive_fraction: float = DataConfig.positive_fraction,
        hard_negative_fraction: float = DataConfig.hard_negative_fraction,
        decoys: Sequence[np.ndarray] | None = None,
        samples_per_epoch: int = DataConfig.samples_per_epoch,
        augment: bool = True,
        augment_kwargs: dict | None = None,
        seed: int = 0,
        class_weights: Sequence[float] | None = None,
        halo: float | None = None,
        pad_value: float = 0.0,
    ) -> None:
        self.runs = list(runs)
        self.crop_size = tuple(int(s) for s in crop_size)
        self.output_stride = int(output_stride)
        stride = self.output_stride
        if stride < 1 or any(s % stride for s in self.crop_size):
            fixed = tuple(max(stride, s // stride * stride) for s in self.crop_size)
            raise ConfigError(
                f"crop_size {self.crop_size} must be divisible by output_stride {output_stride} (>= 1); "
                f"e.g. use crop_size {fixed}."
            )
        if target_kind not in TARGET_KINDS:
            raise ConfigError(f"target_kind must be one of {', '.join(map(repr, TARGET_KINDS))}; got {target_kind!r}.")
        options_type = TARGET_KINDS[target_kind].options
        if target_options is None:
            target_options = options_type()
        elif type(target_options) is not options_type:
            raise ConfigError(
                f"{target_kind} targets take {options_type.__name__} options; got {type(target_options).__name__}."
            )
        if samples_per_epoch < 1:
            raise ConfigError(f"samples_per_epoch must be >= 1; got {samples_per_epoch}.")
        self.target_kind = target_kind
        self.target_options = target_options
        self.samples_per_epoch = int(samples_per_epoch)
        self.augment = bool(augment)
        square = self.crop_size[1] == self.crop_size[2]
        self.augment_kwargs = {"rot90": square, "transpose": square, **(augment_kwargs or {})}
        # Zoom: the crop is cut from a region 1 / factor its size around the same centre and resampled to
        # the crop size, so particles look `factor` times larger (labels and target widths unchanged).
        self.zoom = float(self.augment_kwargs.pop("zoom", AugmentConfig.zoom)) if self.augment else 0.0
        if not 0.0 <= self.zoom <= 1.0:
            raise ConfigError(f"zoom must be in [0, 1]; got {self.zoom}.")
        if self.augment and (self.augment_kwargs["rot90"] or self.augment_kwargs["transpose"]):
            anisotropic = [r.name for r in self.runs if not np.isclose(r.voxel_size[1], r.voxel_size[2])]
            if not square or anisotropic:
                raise ConfigError(
                    "xy quarter turns/transposes need square crops (H == W) and equal y/x voxel sizes; got crop "
                    f"{self.crop_size}{' and anisotropic runs ' + ', '.join(anisotropic) if anisotropic else ''}. "
                    "Use a square crop or pass augment_kwargs={'rot90': False, 'transpose': False}."
                )
        self.seed = int(seed)
        self.pad_value = float(pad_value)
        self.epoch = 0
        if hard_negative_fraction > 0 and decoys is None:
            raise ConfigError(
                "hard_negative_fraction > 0 needs decoys (one (K, 3) array per run), e.g. from "
                "cryopoint.engine.hard_negatives.mine_decoys; the training engine mines them itself."
            )
        self.decoys = None if decoys is None else [np.asarray(d, dtype=np.float64).reshape(-1, 3) for d in decoys]
        self.sampler = CropSampler(
            [r.shape for r in self.runs],
            [r.points_zyx for r in self.runs],
            [r.labels for r in self.runs],
            self.crop_size,
            positive_fraction=positive_fraction,
            class_weights=class_weights,
            decoys=self.decoys,
            hard_negative_fraction=hard_negative_fraction,
        )
        if target_kind == "heatmap":
            self._draw, self._target_dtype = draw_heatmaps, np.float32
        else:
            self._draw, self._target_dtype = draw_sphere_labels, np.int64
        reach = self._target_reach()  # Å
        self.halos = [reach / min(r.voxel_size) + 1.0 if halo is None else float(halo) for r in self.runs]

    def _target_reach(self) -> float:
        """How far (Å) the target drawn for a particle extends from its centre, for the largest class."""
        options, radius = self.target_options, max(p.radius for p in PARTICLES)
        if isinstance(options, HeatmapTargetOptions):
            return float(options.truncate * options.sigma_factor * radius)
        return float(options.radius_fraction * radius)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns (call before iterating each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict:
        """Sample ``index`` of the current epoch.

        Returns:
            ``{"image": (1, D, H, W) float32 tensor, "target": (C, D', H', W') float32 or (D', H', W') int64
            tensor, "run": run name, "center": (3,) int64 crop centre in volume voxels (z, y, x) before
            augmentation, "positive": bool, "hard_negative": bool}``.
        """
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"index {index} out of range for {self.samples_per_epoch} samples per epoch")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        spec = self.sampler.sample(rng)
        run = self.runs[spec.run]
        if self.zoom > 0:  # drawn only when on: crops without zoom reproduce those drawn before it existed
            factor = random_zoom_factor(rng, self.zoom)
            size = np.maximum(np.rint(np.asarray(self.crop_size) / factor).astype(int), 1)
            centre = np.asarray(spec.start) + np.asarray(self.crop_size) // 2
            start = clamp_start(centre - size // 2, np.asarray(run.shape), size)
            source = extract_crop(run.volume, start, size, pad_value=self.pad_value)
            halo = self.halos[spec.run] * max(1.0, 1.0 / factor)  # the target's reach, in source voxels
            points, labels = points_near_crop(run.points_zyx, run.labels, start, size, halo)
            image, points = resize(source, points, self.crop_size)
        else:
            image = extract_crop(run.volume, spec.start, self.crop_size, pad_value=self.pad_value)
            points, labels = points_near_crop(
                run.points_zyx, run.labels, spec.start, self.crop_size, self.halos[spec.run]
            )
        if self.augment:
            image, points = random_augment(image, points, rng, **self.augment_kwargs)
        out_shape = tuple(s // self.output_stride for s in self.crop_size)
        options = asdict(self.target_options)
        target = self._draw(out_shape, points, labels, voxel_size=run.voxel_size, stride=self.output_stride, **options)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=self._target_dtype)),
            "run": run.name,
            "center": torch.tensor(np.asarray(spec.start) + np.asarray(self.crop_size) // 2, dtype=torch.int64),
            "positive": spec.positive,
            "hard_negative": spec.hard_negative,
        }
