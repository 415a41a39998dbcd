"""The public entry points: ``cryopoint.load(checkpoint)`` and ``cryopoint.detect(tomogram, model)``.

>>> import cryopoint
>>> picks = cryopoint.detect("TS_5_4/VoxelSpacing10.000/denoised.zarr", "runs/quickstart/best.pt")  # doctest: +SKIP
>>> picks.groupby("particle_type").size()  # doctest: +SKIP
"""

from __future__ import annotations

import os
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
from cryopoint.coords import VOXEL_COLUMNS, angstrom_to_voxel, as_voxel_size
from cryopoint.errors import CheckpointError, VoxelSizeError
from cryopoint.infer import predict_peaks
from cryopoint.io import read_tomogram
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.thresholds import apply_thresholds
from cryopoint.tomogram import Tomogram, check_volume

__all__ = ["Detector", "load", "detect", "as_tomogram", "MODEL_ENV", "MAX_RESAMPLE_FACTOR", "SAME_VOXEL_RTOL"]

#: Environment variable naming the checkpoint ``detect`` uses when no model is passed.
MODEL_ENV = "CRYOPOINT_MODEL"
#: Voxel sizes within this relative difference of the model's are used as they are (10.012 vs 10.0 Å).
SAME_VOXEL_RTOL = 0.02
#: Largest resampling factor per axis: beyond 2x the particles' look (noise, CTF, blur) differs from
#: what the model saw in training, and a 2x upsampled 630^3-class tomogram already takes 8x the memory.
MAX_RESAMPLE_FACTOR = 2.0
COLUMNS = ["particle_type", "x", "y", "z", "score", *VOXEL_COLUMNS]


@dataclass
class Detector:
    """A loaded detector: the network plus everything its checkpoint says about it.

    Attributes:
        model: The network, in eval mode, on the CPU until ``detect`` moves it.
        config: The resolved training config (plain nested dict).
        particles: The catalogue the model was trained with (``{name, radius, weight, label}`` dicts).
        voxel_size: Å per voxel (z, y, x) of the training data.
        thresholds: Tuned per-class score thresholds (empty when none were tuned).
        path: The checkpoint file.
    """

    model: nn.Module
    config: dict[str, Any]
    particles: list[dict[str, Any]]
    voxel_size: tuple[float, float, float]
    thresholds: dict[str, float] = field(default_factory=dict)
    path: Path | None = None

    def section(self, name: str) -> dict[str, Any]:
        """The checkpoint's ``infer`` or ``post`` config section over the config's own defaults (one home)."""
        from dataclasses import asdict

        from cryopoint.config import InferConfig, PostConfig

        defaults = {"infer": InferConfig, "post": PostConfig}[name]()
        return {**asdict(defaults), **(self.config.get(name) or {})}

    @property
    def roi(self) -> tuple[int, int, int]:
        """Sliding-window size in voxels (z, y, x): the config's ``infer.roi``."""
        return tuple(int(r) for r in self.section("infer")["roi"])  # type: ignore[return-value]

    @property
    def default_thresholds(self) -> dict[str, float]:
        """Per-class thresholds ``detect`` applies by default: tuned ones, else ``post.default_threshold``."""
        fallback = float(self.section("post")["default_threshold"])
        return {name: float(self.thresholds.get(name, fallback)) for name in PARTICLE_NAMES}

    def detect(self, tomogram: Any, **kwargs: Any) -> pd.DataFrame:
        """Shorthand for ``cryopoint.detect(tomogram, self, **kwargs)``."""
        return detect(tomogram, self, **kwargs)


def load(checkpoint: str | os.PathLike) -> Detector:
    """Rebuild a detector from a self-describing checkpoint (safe ``weights_only`` loading).

    EMA weights are used when the checkpoint has them (they are the ones validated during training).
    ``"default"`` loads the model shipped with cryopoint (``docs/models.md``). Weights stored in fp16 (the
    shipped model) are cast to the network's fp32 parameters.

    >>> detector = cryopoint.load("runs/quickstart/best.pt")  # doctest: +SKIP
    >>> detector.voxel_size, detector.thresholds  # doctest: +SKIP

    Raises:
        DataNotFoundError: no file at ``checkpoint``.
        CheckpointError: not a cryopoint checkpoint, a different particle catalogue, or weights that do
            not fit the architecture its config describes.
    """
    from cryopoint.model import build_model
    from cryopoint.weights import resolve_checkpoint

    checkpoint = resolve_checkpoint(checkpoint)
    payload = load_checkpoint(checkpoint)
    names = [p["name"] for p in payload["particles"]]
    if tuple(names) != PARTICLE_NAMES:
        raise CheckpointError(
            f"{checkpoint} was trained for particles {names}; this cryopoint's catalogue is {list(PARTICLE_NAMES)}."
        )
    model_kwargs = dict(payload["config"].get("model") or {})
    if model_kwargs.get("pretrained"):  # the checkpoint holds every weight; the training machine's file is not needed
        model_kwargs["pretrained"] = ""
    model = build_model(**model_kwargs)
    state = inference_weights(payload)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the model its config describes ({exc}).") from exc
    return Detector(
        model=model.eval(),
        config=payload["config"],
        particles=payload["particles"],
        voxel_size=as_voxel_size(payload["voxel_size"]),
        thresholds={str(k): float(v) for k, v in (payload.get("thresholds") or {}).items()},
        path=Path(checkpoint),
    )


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


def _resample_factors(tomo_vs: tuple[float, ...], model_vs: tuple[float, ...]) -> tuple[float, ...] | None:
    """Zoom factors (z, y, x) that bring the tomogram to the model's voxel size; None when close enough."""
    ratios = tuple(t / m for t, m in zip(tomo_vs, model_vs))
    if all(abs(r - 1) <= SAME_VOXEL_RTOL for r in ratios):
        return None
    if any(r > MAX_RESAMPLE_FACTOR or r < 1 / MAX_RESAMPLE_FACTOR for r in ratios):
        raise VoxelSizeError(
            f"The tomogram's voxel size {tomo_vs} Å differs from the model's {model_vs} Å by more than "
            f"{MAX_RESAMPLE_FACTOR:g}x. Read a matching pyramid level (read_tomogram(path, level=...)), bin or "
            "unbin the tomogram first, or train a model at this voxel size."
        )
    return ratios


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
    factors = _resample_factors(tomo.voxel_size, detector.voxel_size)
    work = tomo
    if factors is not None:
        data = ndimage.zoom(tomo.data, factors, order=1)
        # zoom maps the first and last voxel centres onto each other, so Å = index x this spacing
        # puts every peak back in the input's frame (voxel 0 at 0 Å in both).
        spacing = tuple(v * (n - 1) / max(m - 1, 1) for v, n, m in zip(tomo.voxel_size, tomo.shape, data.shape))
        work = Tomogram(data, voxel_size=spacing, name=tomo.name)
    given = {"roi": roi, "overlap": overlap, "batch_size": batch_size, "tta": tta}
    infer = {**detector.section("infer"), **{k: v for k, v in given.items() if v is not None}}
    model = detector.model
    was_training, old_device = model.training, next(model.parameters()).device
    try:
        model.eval().to(device)
        peaks, _ = predict_peaks(
            model, work, infer=infer, post=detector.section("post"), device=device, progress=progress
        )
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
            ``post.default_threshold``. ``0.0`` keeps every peak (for re-thresholding later).
        device: Compute device; default CUDA when available, else CPU.
        tta: Average flipped predictions (4 passes: slower). None: the checkpoint's ``infer.tta``.
        batch_size: Windows per forward pass (lower it if the device runs out of memory). None: ``infer.batch_size``.
        overlap: Window overlap in ``[0, 1)``. None: the checkpoint's ``infer.overlap``.
        roi: Window size in voxels ``(z, y, x)``. None: the checkpoint's ``infer.roi``. Host memory grows
            with ``batch_size x roi`` (a 2.5D model runs ``roi_z`` images of ``roi_y x roi_x`` per window).
        progress: Called as ``progress(windows_done, windows_total)``.

    Returns:
        Picks table: ``particle_type``, ``x, y, z`` (Å, in the input's frame: Å = index x its voxel size),
        ``score``, and ``z_vox, y_vox, x_vox`` (voxels of the input), sorted by class then falling score.

    >>> picks = cryopoint.detect(volume, "best.pt", voxel_size=10.012444)  # doctest: +SKIP

    Raises:
        CheckpointError: no model given and ``$CRYOPOINT_MODEL`` unset, or an unusable checkpoint.
        VoxelSizeError: missing voxel size, or one more than ``MAX_RESAMPLE_FACTOR`` away from the model's.
        InvalidVolumeError: not 3-D, empty, NaN/Inf, or smaller than the model's field of view.
    """
    detector = _resolve_model(model)
    tomo = as_tomogram(tomogram, voxel_size)
    if isinstance(detector, str):  # "blob"
        from cryopoint.baselines.blob import detect_blobs

        picks = detect_blobs(tomo.data, tomo.voxel_size, thresholds=_as_threshold_dict(thresholds))
    else:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        settings = {"tta": tta, "batch_size": batch_size, "overlap": overlap, "roi": roi}
        picks = _run_model(detector, tomo, device=device, progress=progress, **settings)
        picks = apply_thresholds(
            picks, detector.default_thresholds if thresholds is None else _as_threshold_dict(thresholds)
        )
    return _tidy(picks, tomo.voxel_size)


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
