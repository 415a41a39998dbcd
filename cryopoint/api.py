"""The public entry points: ``cryopoint.load(checkpoint)`` and ``cryopoint.detect(tomogram, model)``.

>>> import cryopoint
>>> picks = cryopoint.detect("TS_5_4/VoxelSpacing10.000/denoised.zarr", "runs/quickstart/best.pt")  # doctest: +SKIP
>>> picks.groupby("particle_type").size()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from cryopoint.checkpoint import inference_weights, load_checkpoint
from cryopoint.config import Config, config_from_dict
from cryopoint.coords import VOXEL_COLUMNS, angstrom_to_voxel, as_voxel_size
from cryopoint.data.polarity import check_polarity_setting, orient
from cryopoint.errors import (
    AdjustedSettingWarning,
    CheckpointError,
    ConfigError,
    DataNotFoundError,
    PolarityWarning,
    ResampleWarning,
    VoxelSizeError,
)
from cryopoint.infer import _input_multiple, predict_peaks
from cryopoint.io import read_tomogram
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.thresholds import apply_thresholds
from cryopoint.tomogram import Tomogram, check_volume

__all__ = [
    "Detector",
    "load",
    "detect",
    "as_tomogram",
    "check_settings",
    "MODEL_ENV",
    "MODEL_NAMES",
    "SAME_VOXEL_RTOL",
    "WARN_UPSAMPLE",
    "WARN_DOWNSAMPLE",
    "MAX_RESAMPLED_VOXELS",
]

#: Environment variable naming the checkpoint ``detect`` uses when no model is passed.
MODEL_ENV = "CRYOPOINT_MODEL"
#: Model names that are not paths, and what they stand for.
MODEL_NAMES = {"default": "the shipped model", "blob": "the training-free baseline, for detect only"}
#: Voxel sizes within this relative difference of the model's are used as they are (10.012 vs 10.0 Å).
SAME_VOXEL_RTOL = 0.02
#: Any resampling factor the volume can bear is used; beyond these a warning says the particles will look
#: unlike training: upsampling (a coarser tomogram than the model's) cannot restore the missing detail, and
#: downsampling by more than 4x is far from how the training tomograms were made (a 5 Å tomogram for a 10 Å
#: model, 2x, is ordinary binning and passes quietly).
WARN_UPSAMPLE = 2.0
WARN_DOWNSAMPLE = 4.0
#: Largest resampled volume in voxels (2^30 float32 voxels are 4 GiB, about 15 CZII tomograms of 184 x 630 x 630):
#: beyond it the voxel size is almost surely wrong.
MAX_RESAMPLED_VOXELS = 2**30
COLUMNS = ["particle_type", "x", "y", "z", "score", *VOXEL_COLUMNS]


@dataclass
class Detector:
    """A loaded detector: the network plus everything its checkpoint says about it.

    Attributes:
        model: The network, in eval mode, on the CPU until ``detect`` moves it.
        config: The resolved training config, typed and checked as training checks it
            (:func:`cryopoint.config.config_from_dict`): ``config.infer`` and ``config.post`` are the settings
            ``detect`` uses unless told otherwise.
        particles: The catalogue the model was trained with (``{name, radius, weight, label}`` dicts).
        voxel_size: Å per voxel (z, y, x) of the training data.
        thresholds: Tuned per-class score thresholds (empty when none were tuned).
        kept_density: Per class, the peaks per µm³ the thresholds kept on reference data (empty when not
            measured); with ``config.post.adaptive_alpha > 0`` ``detect`` caps each tomogram's kept peaks at that
            multiple of it (:mod:`cryopoint.post.adaptive`).
        path: The checkpoint file.
    """

    model: nn.Module
    config: Config
    particles: list[dict[str, Any]]
    voxel_size: tuple[float, float, float]
    thresholds: dict[str, float] = field(default_factory=dict)
    kept_density: dict[str, float] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, Config):
            raise TypeError(
                f"Detector.config must be a cryopoint.config.Config; got {type(self.config).__name__} "
                "(build one from a nested dict with cryopoint.config.config_from_dict)."
            )

    @property
    def roi(self) -> tuple[int, int, int]:
        """Sliding-window size in voxels (z, y, x): the config's ``infer.roi``."""
        return tuple(int(r) for r in self.config.infer.roi)  # type: ignore[return-value]

    @property
    def default_thresholds(self) -> dict[str, float]:
        """Per-class thresholds ``detect`` applies by default: tuned ones, else ``post.default_threshold``."""
        fallback = float(self.config.post.default_threshold)
        return {name: float(self.thresholds.get(name, fallback)) for name in PARTICLE_NAMES}

    @property
    def adapts(self) -> bool:
        """Whether its own thresholds are raised per tomogram (``post.adaptive_alpha > 0`` and a reference)."""
        alpha = float(self.config.post.adaptive_alpha)
        if alpha > 0 and not self.kept_density:
            warnings.warn(
                f"post.adaptive_alpha is {alpha:g} but {self.path or 'this detector'} carries no reference density "
                "(kept_density): its thresholds are used as they are. Make a copy with one: python -m "
                "benchmarks.adaptive_thresholds --model MODEL --save-as MODEL_ADAPTIVE.pt",
                AdjustedSettingWarning,
                stacklevel=3,
            )
        return alpha > 0 and bool(self.kept_density)

    def with_adaptive_alpha(self, alpha: float) -> Detector:
        """This detector with ``post.adaptive_alpha = alpha`` (0 = off); the model is shared, not copied.

        Raises:
            ConfigError: ``alpha`` below 0, or above 0 for a checkpoint without a reference density.
        """
        if not alpha >= 0:
            raise ConfigError(f"adaptive alpha must be >= 0 (0 = off); got {alpha}.")
        if alpha > 0 and not self.kept_density:
            raise ConfigError(
                f"{self.path or 'this detector'} carries no reference density (kept_density), so its thresholds "
                "cannot adapt per tomogram. Make a copy with one: python -m benchmarks.adaptive_thresholds "
                "--model MODEL --save-as MODEL_ADAPTIVE.pt"
            )
        post = dataclasses.replace(self.config.post, adaptive_alpha=float(alpha))
        return dataclasses.replace(self, config=dataclasses.replace(self.config, post=post))

    def with_noise_tail(self, on: bool) -> Detector:
        """This detector with ``post.noise_tail = on``; the model is shared, not copied."""
        if not isinstance(on, bool):
            raise ConfigError(f"noise_tail must be True or False; got {on!r}.")
        post = dataclasses.replace(self.config.post, noise_tail=on)
        return dataclasses.replace(self, config=dataclasses.replace(self.config, post=post))

    def thresholds_for(
        self, peaks: pd.DataFrame, shape: Sequence[int], voxel_size: float | Sequence[float]
    ) -> dict[str, float]:
        """The thresholds ``detect`` applies to one tomogram's ``peaks`` by default: :attr:`default_thresholds`,
        raised per class where ``post.noise_tail`` is on to where the peaks stand above this tomogram's own
        background tail (:mod:`cryopoint.post.noise_tail`), and where :attr:`adapts` to keep at most
        ``post.adaptive_alpha`` times the reference density of peaks (:mod:`cryopoint.post.adaptive`); with both,
        the higher. ``shape`` (z, y, x) and ``voxel_size`` (Å) are the tomogram's, in the frame of ``peaks``."""
        thresholds = self.default_thresholds
        tail, adapts = bool(self.config.post.noise_tail), self.adapts
        if not (tail or adapts):
            return thresholds
        from cryopoint.post.adaptive import density_thresholds, volume_um3
        from cryopoint.post.noise_tail import noise_tail_thresholds

        size = volume_um3(shape, voxel_size)
        if tail:
            thresholds = noise_tail_thresholds(peaks, thresholds, size)
        if adapts:
            alpha = float(self.config.post.adaptive_alpha)
            thresholds = density_thresholds(peaks, thresholds, self.kept_density, size, alpha)
        return thresholds

    def flooded(
        self, picks: pd.DataFrame, shape: Sequence[int], voxel_size: float | Sequence[float]
    ) -> dict[str, tuple[int, float]]:
        """Classes whose picks in one tomogram are suspiciously dense: ``{class: (picks, ratio)}``.

        ``ratio`` is the picks per µm³ over the density this model's thresholds keep on its reference data
        (:func:`cryopoint.post.adaptive.density_ratios`); a class is listed when the ratio is at least
        ``FLOOD_FACTOR`` and it holds at least ``FLOOD_MIN_PICKS`` picks. Label-free: it cannot tell a crowded
        sample from false positives, only that the thresholds keep far more than on data like the reference.
        Empty for a model without a reference density. ``shape`` (z, y, x) and ``voxel_size`` (Å) are the
        tomogram's."""
        if not self.kept_density:
            return {}
        from cryopoint.post.adaptive import FLOOD_FACTOR, FLOOD_MIN_PICKS, density_ratios, volume_um3

        counts = picks["particle_type"].value_counts() if len(picks) else pd.Series(dtype=int)
        ratios = density_ratios(picks, self.kept_density, volume_um3(shape, voxel_size))
        return {
            name: (int(counts.get(name, 0)), ratio)
            for name, ratio in ratios.items()
            if ratio >= FLOOD_FACTOR and counts.get(name, 0) >= FLOOD_MIN_PICKS
        }

    def detect(self, tomogram: Any, **kwargs: Any) -> pd.DataFrame:
        """Shorthand for ``cryopoint.detect(tomogram, self, **kwargs)``."""
        return detect(tomogram, self, **kwargs)


def load(checkpoint: str | os.PathLike) -> Detector:
    """Rebuild a detector from a self-describing checkpoint (safe ``weights_only`` loading).

    EMA weights are used when the checkpoint has them (they are the ones validated during training). An ensemble
    checkpoint of a k-fold training (``runs/NAME/ensemble.pt``) gives a detector whose ``model`` is an
    :class:`~cryopoint.model.ensemble.Ensemble` of the fold models (their probabilities averaged).
    ``"default"`` loads the model shipped with cryopoint (``docs/models.md``). Weights stored in fp16 (the
    shipped model) are cast to the network's fp32 parameters. The checkpoint's config is checked as a
    training config is (:func:`cryopoint.config.config_from_dict`); keys that older cryopoint versions did
    not write take their defaults, and renamed keys are mapped.

    >>> detector = cryopoint.load("runs/quickstart/best.pt")  # doctest: +SKIP
    >>> detector.voxel_size, detector.thresholds  # doctest: +SKIP

    Raises:
        DataNotFoundError: no file at ``checkpoint``.
        CheckpointError: not a cryopoint checkpoint, a different particle catalogue, a config this version
            cannot read (the message names the dotted key), or weights that do not fit the architecture its
            config describes.
    """
    from cryopoint.model import build_model
    from cryopoint.model.ensemble import build_ensemble, ensemble_size
    from cryopoint.weights import resolve_checkpoint

    name, checkpoint = str(checkpoint), resolve_checkpoint(checkpoint)
    try:
        payload = load_checkpoint(checkpoint)
    except DataNotFoundError as exc:
        raise _unknown_model(name, exc) from exc
    names = [p["name"] for p in payload["particles"]]
    if tuple(names) != PARTICLE_NAMES:
        raise CheckpointError(
            f"{checkpoint} was trained for particles {names}; this cryopoint's catalogue is {list(PARTICLE_NAMES)}."
        )
    try:
        config = config_from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{checkpoint}: its config cannot be used: {exc}") from exc
    model_kwargs = dataclasses.asdict(config.model)
    if model_kwargs.get("pretrained"):  # the checkpoint holds every weight; the training machine's file is not needed
        model_kwargs["pretrained"] = ""
    members = ensemble_size(payload)  # a k-fold ensemble (runs/NAME/ensemble.pt) holds one network per fold
    model = build_ensemble(members, **model_kwargs) if members else build_model(**model_kwargs)
    state = inference_weights(payload)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the model its config describes ({exc}).") from exc
    return Detector(
        model=model.eval(),
        config=config,
        particles=payload["particles"],
        voxel_size=as_voxel_size(payload["voxel_size"]),
        thresholds={str(k): float(v) for k, v in (payload.get("thresholds") or {}).items()},
        kept_density={str(k): float(v) for k, v in (payload.get("kept_density") or {}).items()},
        path=Path(checkpoint),
    )


def _unknown_model(name: str, missing: DataNotFoundError) -> DataNotFoundError:
    """``missing`` with the model names close to ``name`` (``"Blob"`` -> ``'blob'``) and which names are not paths."""
    close = difflib.get_close_matches(name.lower(), list(MODEL_NAMES), n=2, cutoff=0.6)
    known = ", ".join(f"{n!r} ({what})" for n, what in MODEL_NAMES.items())
    known = f"Model names: {known}; anything else is a checkpoint path."
    if close:
        return DataNotFoundError(f"No checkpoint at {name}. Did you mean {' or '.join(map(repr, close))}? {known}")
    return DataNotFoundError(f"{missing} {known}")


def check_settings(
    *, batch_size: int | None = None, overlap: float | None = None, roi: Sequence[int] | None = None
) -> None:
    """Check the inference settings a user may pass (None: the checkpoint's own), before any work starts.

    Raises:
        ConfigError: ``batch_size`` below 1, ``overlap`` outside ``[0, 1)``, or ``roi`` not three positive sizes.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1):
        raise ConfigError(f"batch_size must be a whole number >= 1 (windows per forward pass); got {batch_size}.")
    if overlap is not None and not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1) (the share of a window its neighbour sees too); got {overlap}.")
    if roi is not None:
        sizes = list(roi)
        if len(sizes) != 3 or any(isinstance(r, bool) or int(r) != r or r < 1 for r in sizes):
            raise ConfigError(f"roi must be three whole window sizes >= 1 voxel (z, y, x); got {roi}.")


def as_tomogram(tomogram: Any, voxel_size: float | Sequence[float] | None = None) -> Tomogram:
    """Turn what a user passes (array, tensor, path, ``Tomogram``) into a validated ``Tomogram``.

    Raises:
        VoxelSizeError: an array or tensor without ``voxel_size``, or a ``Tomogram`` with a different one.
        InvalidVolumeError: not 3-D, empty, or NaN/Inf voxels.
        DataNotFoundError: a path that does not exist.
    """
    if isinstance(tomogram, Tomogram):
        if voxel_size is not None and as_voxel_size(voxel_size) != tomogram.voxel_size:
            raise VoxelSizeError(
                f"voxel_size={voxel_size} contradicts the Tomogram's own {tomogram.voxel_size}; pass one of them."
            )
        tomo = tomogram
    elif isinstance(tomogram, (str, os.PathLike)):
        tomo = read_tomogram(tomogram, voxel_size=voxel_size)
    elif isinstance(tomogram, (np.ndarray, torch.Tensor)):
        if voxel_size is None:
            raise VoxelSizeError(
                "An array carries no voxel size: call detect(volume, model, voxel_size=<Å per voxel>) "
                "(e.g. 10.012444 for the CZII challenge data)."
            )
        data = tomogram.detach().cpu().numpy() if isinstance(tomogram, torch.Tensor) else tomogram
        tomo = Tomogram(np.asarray(data, dtype=np.float32), voxel_size=voxel_size)
    else:
        raise TypeError(
            f"tomogram must be a numpy array, a torch tensor, a .zarr/.mrc path or a Tomogram; got {type(tomogram)}."
        )
    check_volume(tomo.data, name=f"tomogram {tomo.name}".strip())
    return tomo


def _resolve_model(model: Detector | str | os.PathLike | None) -> Detector | str:
    if isinstance(model, Detector) or model == "blob":
        return model  # type: ignore[return-value]
    if model is None:  # $CRYOPOINT_MODEL, else the shipped default model
        model = os.environ.get(MODEL_ENV) or "default"
    return load(model)


def _resample_factors(tomo: Tomogram, detector: Detector) -> tuple[float, float, float] | None:
    """Zoom factors (z, y, x) that bring the tomogram to the model's voxel size; None when close enough.

    Any factor is allowed while the resampled volume holds the model's field of view and stays below
    :data:`MAX_RESAMPLED_VOXELS`; a large one warns (:data:`WARN_UPSAMPLE`, :data:`WARN_DOWNSAMPLE`).

    Raises:
        VoxelSizeError: the resampled volume would be smaller than the model's field of view, or absurdly large.
    """
    model_vs = detector.voxel_size
    ratios = tuple(t / m for t, m in zip(tomo.voxel_size, model_vs))
    if all(abs(r - 1) <= SAME_VOXEL_RTOL for r in ratios):
        return None
    shape = tuple(max(1, round(n * r)) for n, r in zip(tomo.shape, ratios))
    fov = _input_multiple(detector.model)
    what = (
        f"{f'Tomogram {tomo.name}' if tomo.name else 'The tomogram'} at {_fmt(tomo.voxel_size)} Å per voxel "
        f"(z, y, x) is resampled by "
        f"{_fmt(ratios)} to the model's {_fmt(model_vs)} Å: that makes {shape} voxels"
    )
    if any(n < f for n, f in zip(shape, fov)):
        raise VoxelSizeError(
            f"{what}, smaller than the model's field of view {fov}. Check the voxel size, or use a less binned one."
        )
    if math.prod(shape) > MAX_RESAMPLED_VOXELS:
        fix = (
            f"or bin the tomogram to about {_fmt(model_vs)} Å first (read_tomogram(path, level=...) reads a binned "
            "pyramid level of an OME-Zarr store)"
            if max(ratios) <= 1
            else "or use a model trained near the tomogram's voxel size"
        )
        raise VoxelSizeError(
            f"{what} ({math.prod(shape) * 4 / 2**30:.0f} GiB as float32), too large to process. Check the voxel "
            f"size, {fix}."
        )
    if max(ratios) > WARN_UPSAMPLE or min(ratios) < 1 / WARN_DOWNSAMPLE:
        unset = " 1 Å is what many programs write when the voxel size is unknown." if 1.0 in tomo.voxel_size else ""
        warnings.warn(
            f"{what}: particles will look unlike the ones the model was trained on, so expect fewer and worse "
            f"picks. For best results reconstruct or bin the tomogram near {_fmt(model_vs)} Å.{unset}",
            ResampleWarning,
            stacklevel=4,
        )
    return ratios


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _resample(tomo: Tomogram, factors: Sequence[float]) -> Tomogram:
    """The tomogram zoomed by ``factors`` (linear), low-passed first along axes that shrink (no aliasing)."""
    data = np.asarray(tomo.data, dtype=np.float32)
    sigma = [max(0.0, (1 / f - 1) / 2) for f in factors]  # the anti-aliasing width skimage's rescale uses
    if any(sigma):
        data = ndimage.gaussian_filter(data, sigma)
    data = ndimage.zoom(data, factors, order=1)
    # zoom maps the first and last voxel centres onto each other, so Å = index x this spacing
    # puts every peak back in the input's frame (voxel 0 at 0 Å in both).
    spacing = tuple(v * (n - 1) / max(m - 1, 1) for v, n, m in zip(tomo.voxel_size, tomo.shape, data.shape))
    return Tomogram(data, voxel_size=spacing, name=tomo.name)


def _window_floor(detector: Detector) -> tuple[int, int, int]:
    """Smallest useful window (z, y, x voxels): it must hold the largest particle of the catalogue."""
    diameter = 2 * max(float(p["radius"]) for p in detector.particles)
    return tuple(math.ceil(diameter / v) for v in detector.voxel_size)  # type: ignore[return-value]


def _run_model(
    detector: Detector,
    tomo: Tomogram,
    *,
    device: torch.device,
    tta: bool | None,
    batch_size: int | None,
    overlap: float | None,
    roi: Sequence[int] | None,
    progress: Callable[[int, int], None] | None,
) -> pd.DataFrame:
    """All peaks above the config's ``post.min_score`` (no class thresholds), in Å of the input's frame."""
    factors = _resample_factors(tomo, detector)
    work = tomo if factors is None else _resample(tomo, factors)
    if roi is not None:
        floor = tuple(min(f, n) for f, n in zip(_window_floor(detector), work.shape))  # no wider than the volume
        if any(int(r) < f for r, f in zip(roi, floor)):
            wider = tuple(max(int(r), f) for r, f in zip(roi, floor))
            warnings.warn(
                f"roi {tuple(roi)} is smaller than the smallest useful window {floor} voxels (the largest particle, "
                f"{2 * max(float(p['radius']) for p in detector.particles):.0f} Å across, at the model's "
                f"{_fmt(detector.voxel_size)} Å per voxel): using {wider}. Smaller windows see too little and "
                "multiply the number of windows.",
                AdjustedSettingWarning,
                stacklevel=3,
            )
            roi = wider
    given = {"roi": roi, "overlap": overlap, "batch_size": batch_size, "tta": tta}
    infer = dataclasses.replace(detector.config.infer, **{k: v for k, v in given.items() if v is not None})
    model = detector.model
    was_training, old_device = model.training, next(model.parameters()).device
    try:
        model.eval().to(device)
        peaks, _ = predict_peaks(model, work, infer=infer, post=detector.config.post, device=device, progress=progress)
    finally:
        model.train(was_training).to(old_device)
    return peaks


def detect(
    tomogram: Any,
    model: Detector | str | os.PathLike | None = None,
    *,
    voxel_size: float | Sequence[float] | None = None,
    thresholds: Mapping[str, float] | float | None = None,
    device: str | torch.device | None = None,
    tta: bool | None = None,
    batch_size: int | None = None,
    overlap: float | None = None,
    roi: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    polarity: str = "check",
) -> pd.DataFrame:
    """Find particles in a tomogram.

    Args:
        tomogram: ``(Z, Y, X)`` numpy array or torch tensor (then ``voxel_size`` is required), a path to a
            ``.zarr`` store or an MRC file, or a :class:`~cryopoint.tomogram.Tomogram`.
        model: A checkpoint path, a :class:`Detector` from :func:`load`, ``"blob"`` (training-free
            baseline), or None to use the checkpoint named by ``$CRYOPOINT_MODEL``.
        voxel_size: Å per voxel (one value or z, y, x); overrides a file's header.
        thresholds: Per-class minimum scores ``{name: score}`` (classes left out keep every peak), or one
            score for all classes. None: the detector's tuned thresholds, else its config's
            ``post.default_threshold``; raised per tomogram where the config asks (:meth:`Detector.thresholds_for`:
            ``post.noise_tail``, ``post.adaptive_alpha``). ``0.0`` keeps every peak (for re-thresholding later).
        device: Compute device; default CUDA when available, else CPU.
        tta: Average flipped predictions (4 passes: slower). None: the checkpoint's ``infer.tta``.
        batch_size: Windows per forward pass (lower it if the device runs out of memory). None: ``infer.batch_size``.
        overlap: Window overlap in ``[0, 1)``. None: the checkpoint's ``infer.overlap``.
        roi: Window size in voxels ``(z, y, x)``. None: the checkpoint's ``infer.roi``. Host memory grows
            with ``batch_size x roi`` (a 2.5D model runs ``roi_z`` images of ``roi_y x roi_x`` per window).
            A window smaller than the largest particle is widened (with an ``AdjustedSettingWarning``);
            any window is clipped to the (padded) tomogram.
        progress: Called as ``progress(windows_done, windows_total)``.
        polarity: The tomogram's contrast. Models and the blob detector expect protein darker than the ice
            (the reconstruction convention). ``"check"``: find out (:mod:`cryopoint.data.polarity`, label and
            model free) and warn (``PolarityWarning``) when it looks inverted; ``"auto"``: find out and invert an
            inverted tomogram (with the warning; with a model, only where the model is also more confident in
            it inverted than as it is, so a misread correct tomogram is kept as it is, at the cost of a second
            pass for tomograms the check calls inverted); ``"bright"``: it is inverted, invert it; ``"dark"``: use as
            it is, no check. The input is never modified.

    Returns:
        Picks table: ``particle_type``, ``x, y, z`` (Å, in the input's frame: Å = index x its voxel size),
        ``score``, and ``z_vox, y_vox, x_vox`` (voxels of the input), sorted by class then falling score.

    >>> picks = cryopoint.detect(volume, "best.pt", voxel_size=10.012444)  # doctest: +SKIP

    Raises:
        CheckpointError: an unusable checkpoint.
        DataNotFoundError: no checkpoint at ``model`` (the message suggests the model names close to it).
        ConfigError: ``batch_size < 1``, ``overlap`` outside ``[0, 1)``, or ``roi`` not three positive sizes.
        VoxelSizeError: missing or implausible voxel size (outside 1-100 Å), or one so far from the model's
            that the resampled tomogram would be smaller than the model's field of view or absurdly large
            (a large factor only warns: ``ResampleWarning``).
        InvalidVolumeError: not 3-D, empty, NaN/Inf, or smaller than the model's field of view.
    """
    check_settings(batch_size=batch_size, overlap=overlap, roi=roi)
    check_polarity_setting(polarity)
    detector = _resolve_model(model)
    tomo = as_tomogram(tomogram, voxel_size)
    if isinstance(detector, str):  # "blob"
        from cryopoint.baselines.blob import detect_blobs

        tomo = _with_polarity(tomo, polarity)
        picks = detect_blobs(tomo.data, tomo.voxel_size, thresholds=_as_threshold_dict(thresholds))
    else:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        settings = {"tta": tta, "batch_size": batch_size, "overlap": overlap, "roi": roi}
        run = functools.partial(_run_model, detector, device=device, progress=progress, **settings)
        tomo, picks = _oriented_peaks(tomo, polarity, detector, run)
        picks = apply_thresholds(
            picks,
            detector.thresholds_for(picks, tomo.shape, tomo.voxel_size)
            if thresholds is None
            else _as_threshold_dict(thresholds),
        )
    return _tidy(picks, tomo.voxel_size)


def _oriented_peaks(tomo: Tomogram, polarity: str, detector: Detector, run: Callable[[Tomogram], pd.DataFrame]):
    """``(tomo, peaks)``: the tomogram as the model will see it and every peak of ``run`` on it.

    As :func:`_with_polarity`, except where ``polarity="auto"`` and the label-free check says "inverted": there the
    model has the last word, because a correct tomogram that the check misreads (another pipeline's fringes or
    background) would otherwise be inverted and lose nearly every particle. The model runs on the tomogram as it is
    and inverted, and keeps the orientation whose peaks above the detector's tuned thresholds carry the larger total
    score (a tie keeps it as it is). The total, not the count: on an inverted tomogram a model trained on dark
    protein still passes a few weak peaks, and the per-tomogram noise-tail rule can leave it more of them than on
    the right orientation, but it is confident only where it sees particles. This costs a second pass only for
    tomograms the check calls inverted.
    """
    if polarity != "auto":
        tomo = _with_polarity(tomo, polarity)
        return tomo, run(tomo)
    _, estimate = orient(tomo.data, tomo.voxel_size, "check")
    if estimate is None or estimate.polarity != "bright":
        tomo = _with_polarity(tomo, polarity, estimate=estimate)
        return tomo, run(tomo)
    flipped = Tomogram(orient(tomo.data, tomo.voxel_size, "bright")[0], voxel_size=tomo.voxel_size, name=tomo.name)
    peaks = {"as it is": run(tomo), "inverted": run(flipped)}
    kept = {k: float(apply_thresholds(p, detector.default_thresholds).score.sum()) for k, p in peaks.items()}
    name = f"{tomo.name} " if tomo.name else ""
    seen = (
        f"The tomogram {name}looks inverted to the label-free check (polarity score {estimate.score:+.2f}; below "
        f"{-estimate.margin:.2f} means inverted at this size), and the model's confident picks carry a total score of "
        f"{kept['inverted']:.1f} inverted against {kept['as it is']:.1f} as it is: "
    )
    if kept["inverted"] > kept["as it is"]:
        warnings.warn(
            seen + "inverted it for detection (polarity='auto'); pass polarity='dark' (--polarity dark) to use it as "
            "it is.",
            PolarityWarning,
            stacklevel=3,
        )
        return flipped, peaks["inverted"]
    warnings.warn(
        seen + "used it as it is (polarity='auto'). Pass polarity='bright' (--polarity bright) if you know it is "
        "inverted, or polarity='dark' to skip the check.",
        PolarityWarning,
        stacklevel=3,
    )
    return tomo, peaks["as it is"]


def _with_polarity(tomo: Tomogram, polarity: str, estimate=None) -> Tomogram:
    """``tomo`` with protein dark, as :func:`detect`'s ``polarity`` says (:func:`cryopoint.data.polarity.orient`),
    with a ``PolarityWarning`` where it looks inverted. ``estimate``: the check's result when it has already run."""
    if estimate is None:
        data, estimate = orient(tomo.data, tomo.voxel_size, polarity)
    else:
        data = tomo.data  # checked and not inverted ("auto" with any verdict but "bright")
    if polarity == "auto" and estimate is not None and not math.isfinite(estimate.margin):
        name = f"{tomo.name} " if tomo.name else ""
        warnings.warn(
            f"The tomogram {name}({' x '.join(map(str, tomo.shape))} voxels) is too small for the polarity check to "
            "judge whether it is inverted, so polarity='auto' used it as it is. Pass polarity='dark' or 'bright' "
            "(--polarity) if you know its contrast, or check the whole tomogram it was cut from.",
            PolarityWarning,
            stacklevel=3,
        )
    if estimate is not None and estimate.polarity == "bright":
        name = f"{tomo.name} " if tomo.name else ""
        seen = (
            f"The tomogram {name}looks inverted: its strongest particle-sized blobs are brighter than the ice, not "
            f"darker (polarity score {estimate.score:+.2f}; below {-estimate.margin:.2f} means inverted at this size). "
        )
        todo = (
            "Inverted it for detection (polarity='auto'); pass polarity='dark' (--polarity dark) to use it as it is."
            if polarity == "auto"
            else "cryopoint's models and the blob detector expect protein dark and will miss most particles. Pass "
            "polarity='bright' (--polarity bright) to invert it for detection, polarity='auto' to let detect decide "
            "per tomogram (with a model, it inverts only where the model is more confident so), or "
            "polarity='dark' if it is not inverted (this also skips the check)."
        )
        warnings.warn(seen + todo, PolarityWarning, stacklevel=3)
    return tomo if data is tomo.data else Tomogram(data, voxel_size=tomo.voxel_size, name=tomo.name)


def _as_threshold_dict(thresholds: Mapping[str, float] | float | None) -> dict[str, float] | None:
    if thresholds is None or isinstance(thresholds, Mapping):
        return None if thresholds is None else {str(k): float(v) for k, v in thresholds.items()}
    return {name: float(thresholds) for name in PARTICLE_NAMES}


def _tidy(picks: pd.DataFrame, voxel_size: tuple[float, float, float]) -> pd.DataFrame:
    """Standard columns, voxel columns in the input's voxels, sorted by class and falling score."""
    picks = picks.copy()
    if "score" not in picks:
        picks["score"] = 1.0
    xyz = picks[["x", "y", "z"]].to_numpy(dtype=np.float64)
    picks[list(VOXEL_COLUMNS)] = angstrom_to_voxel(xyz, voxel_size) if len(picks) else np.empty((0, 3))
    rank = picks["particle_type"].map({name: i for i, name in enumerate(PARTICLE_NAMES)})
    picks = picks.assign(_rank=rank, _neg=-picks["score"]).sort_values(["_rank", "_neg"], kind="stable")
    return picks[COLUMNS].reset_index(drop=True)
