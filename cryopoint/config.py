"""Typed, strict training configuration: nested dataclasses loaded from YAML, with dotted CLI overrides.

>>> cfg = load_config("configs/smoke.yaml", ["train.lr=3e-4", "data.fold=1"])  # doctest: +SKIP
>>> cfg.train.lr  # doctest: +SKIP
0.0003

Strictness: an unknown key or a value of the wrong type raises :class:`~cryopoint.errors.ConfigError`
naming the dotted key and the expected type. Two conveniences only: an integer is accepted where a float
is expected, and a string such as ``"3e-4"`` (which YAML 1.1 reads as text, not a number) is accepted for
a float field when it parses as one.

``cfg.model`` holds exactly the keyword arguments of :func:`cryopoint.model.build_model`, so a model is
rebuilt from a config with ``build_model(**dataclasses.asdict(cfg.model))``.

This module is the one home of the defaults: functions that take the same settings as keyword arguments
(model constructors, target drawers, the sliding window, the peak finder) default to these dataclasses'
values (``top_k: int = PostConfig.top_k``) rather than retyping them.

Combinations that cannot work are refused when the config is built, naming the dotted key and what would
fit: each model section declares the kind of target its network learns (``target_kind``), and
:data:`TARGET_KINDS` maps each kind to its target options section (``data.target_options``) and to the
losses (``train.loss``) that fit it. Old configs and checkpoints still load: missing keys take their
defaults and renamed keys (:data:`RENAMED_KEYS`) are mapped to their new names.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from cryopoint.errors import ConfigError, DataNotFoundError

__all__ = [
    "Config",
    "ModelConfig",
    "Heatmap25DConfig",
    "UNet3DConfig",
    "MODEL_CONFIGS",
    "TargetOptions",
    "HeatmapTargetOptions",
    "SegmentationTargetOptions",
    "TargetKind",
    "TARGET_KINDS",
    "RENAMED_KEYS",
    "DataConfig",
    "ALL_FOLDS",
    "AugmentConfig",
    "TrainConfig",
    "InferConfig",
    "PostConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "save_config",
]


#: Decoder widths of ``heatmap25d``, coarsest level first; finer levels beyond the list keep halving (at least 8).
DEFAULT_DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32, 16)
#: Encoder widths of ``unet3d``, one per level, finest first.
DEFAULT_UNET_CHANNELS: tuple[int, ...] = (16, 32, 64, 128)


@dataclass
class ModelConfig:
    """Base of the model sections: ``arch`` picks the architecture and with it the section's other keys.

    ``target_kind`` (not a key: fixed by the architecture) is the kind of target the network learns, a key of
    :data:`TARGET_KINDS`; the model class's own ``target_kind`` attribute is this value.
    """

    target_kind: ClassVar[str] = "heatmap"
    arch: str = "heatmap25d"


@dataclass
class Heatmap25DConfig(ModelConfig):
    """Keyword arguments of the ``heatmap25d`` architecture (:class:`cryopoint.model.heatmap25d.Heatmap25D`)."""

    target_kind: ClassVar[str] = "heatmap"
    arch: str = "heatmap25d"
    encoder: str = "resnet34"
    slab: int = 5
    slab_step: int = 1
    output_stride: int = 2
    decoder_channels: list[int] = field(default_factory=lambda: list(DEFAULT_DECODER_CHANNELS))
    depth_pool: list[int] = field(default_factory=list)
    decoder_norm: str = "group"
    prior: float = 0.01
    pretrained: str = ""


@dataclass
class UNet3DConfig(ModelConfig):
    """Keyword arguments of the ``unet3d`` segmentation baseline (:class:`cryopoint.model.unet3d.UNet3D`).

    ``prior`` was called ``prior_prob`` before; configs and checkpoints with the old name still load.
    """

    target_kind: ClassVar[str] = "segmentation"
    arch: str = "unet3d"
    channels: list[int] = field(default_factory=lambda: list(DEFAULT_UNET_CHANNELS))
    output_stride: int = 1
    prior: float = 0.01


#: Model section type per architecture name (``model.arch``).
MODEL_CONFIGS: dict[str, type[ModelConfig]] = {"heatmap25d": Heatmap25DConfig, "unet3d": UNet3DConfig}

#: Keys renamed since configs were first written: ``(section, old name) -> new name``. A config or checkpoint
#: with an old name loads as if it used the new one (both at once is an error).
RENAMED_KEYS: dict[tuple[str, str], str] = {("model", "prior_prob"): "prior"}


@dataclass
class TargetOptions:
    """Base of the ``data.target_options`` sections: the keyword arguments of the target drawer."""


@dataclass
class HeatmapTargetOptions(TargetOptions):
    """Gaussian heatmap targets (:func:`cryopoint.data.targets.draw_heatmaps`).

    ``sigma_factor``: Gaussian sigma as a fraction of the particle radius. 0.5 puts the Gaussian at
    exp(-1/2) ~ 0.61 at the challenge's match distance (0.5 x radius), so the whole scoring tolerance lies on
    the informative slope of the peak, and two non-overlapping particles (centres >= 2 radii = 4 sigma apart)
    keep separate peaks (overlap < 4e-4). ``truncate``: each Gaussian is drawn out to this many sigmas.
    """

    sigma_factor: float = 0.5
    truncate: float = 3.0

    def __post_init__(self) -> None:
        if not (self.sigma_factor > 0 and self.truncate > 0):
            raise ConfigError(
                "data.target_options.sigma_factor and .truncate must be positive (e.g. 0.5 and 3); "
                f"got {self.sigma_factor} and {self.truncate}."
            )


@dataclass
class SegmentationTargetOptions(TargetOptions):
    """Sphere-label targets (:func:`cryopoint.data.sphere_targets.draw_sphere_labels`).

    ``radius_fraction``: ball radius as a fraction of each particle's catalogue radius (the challenge's
    segmentation entries used 0.4-0.5).
    """

    radius_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not self.radius_fraction > 0:
            raise ConfigError(
                f"data.target_options.radius_fraction must be > 0 (e.g. 0.5); got {self.radius_fraction}."
            )


@dataclass(frozen=True)
class TargetKind:
    """What goes with one kind of target: its options section and the losses (``train.loss``) that fit it."""

    options: type[TargetOptions]
    losses: tuple[str, ...]


#: Target kind (a model section's ``target_kind``) -> its ``data.target_options`` section and fitting losses.
#: Every loss of :data:`cryopoint.engine.losses.LOSSES` is listed under exactly one kind.
TARGET_KINDS: dict[str, TargetKind] = {
    "heatmap": TargetKind(HeatmapTargetOptions, ("mse", "focal")),
    "segmentation": TargetKind(SegmentationTargetOptions, ("dice_ce",)),
}


#: Axes a training crop may be flipped along (0 = z, 1 = y, 2 = x): all three.
DEFAULT_FLIP_AXES: tuple[int, ...] = (0, 1, 2)


@dataclass
class AugmentConfig:
    """Training augmentations (:func:`cryopoint.data.transforms.random_augment` keyword arguments).

    ``enabled: false`` turns them all off. Geometry: ``flip_axes``, ``rot90``, ``transpose``; intensity:
    ``scale``, ``shift``, ``noise`` (white, normalised units). Appearance (:mod:`cryopoint.data.appearance`;
    all 0 = off, the default, which leaves crops bit for bit as without them), for generalising to other
    simulators and to real tomograms:

    * ``blur``: largest Gaussian blur sigma in voxels (z and y/x drawn separately), on half of the crops;
    * ``sharpen``: largest unsharp-mask gain, on the other half;
    * ``gamma``: log-range of a contrast factor (signal vs noise) and of sign-preserving gamma exponents;
    * ``noise_color``: largest sd (normalised units) of added white and/or correlated noise;
    * ``bandpass``: probability (0-1) of a random difference-of-Gaussians band-pass;
    * ``nonlinearity``: largest blend (0-1) of a random smooth increasing intensity curve;
    * ``local_norm``: probability (0-1) of local mean/sd normalisation.

    Scale: ``zoom`` (0 = off) resamples each crop so that particles look up to ``1 + zoom`` times larger or
    smaller (log-uniform; :class:`cryopoint.data.dataset.CropDataset`), labels unchanged: particle size seen
    through another generator's or a real sample's density model, filtering and voxel size is never exactly
    the catalogue radius.

    A recipe meant to generalise: ``blur: 1.5, sharpen: 1.0, gamma: 0.4, noise_color: 0.3, bandpass: 0.3,
    nonlinearity: 0.5, local_norm: 0.2``.
    """

    enabled: bool = True
    flip_axes: list[int] = field(default_factory=lambda: list(DEFAULT_FLIP_AXES))
    rot90: bool = True
    transpose: bool = True
    scale: float = 0.1
    shift: float = 0.1
    noise: float = 0.05
    blur: float = 0.0
    sharpen: float = 0.0
    gamma: float = 0.0
    noise_color: float = 0.0
    bandpass: float = 0.0
    nonlinearity: float = 0.0
    local_norm: float = 0.0
    zoom: float = 0.0

    def __post_init__(self) -> None:
        # Checked here, when the config is loaded, rather than at the first training crop.
        for name in ("blur", "sharpen", "gamma", "noise_color", "bandpass", "nonlinearity", "local_norm", "zoom"):
            value = getattr(self, name)
            top = 1.0 if name in ("bandpass", "nonlinearity", "local_norm", "zoom") else float("inf")
            if not 0.0 <= value <= top:
                raise ConfigError(f"data.augment.{name} must be in [0, {top:g}]; got {value!r}.")


#: ``data.fold`` value that trains every fold, one after another, then writes one ensemble
#: (:func:`cryopoint.engine.kfold.train_kfold`).
ALL_FOLDS = "all"


@dataclass
class DataConfig:
    """Where the tomograms come from, how runs are split, and how training crops are drawn.

    ``fold``: the fold validated on, ``0 .. n_folds - 1`` (runs are split by whole tomograms,
    :mod:`cryopoint.data.folds`; ``val_runs`` names the validation runs instead), or ``"all"``: train every
    fold one after another and combine them into one ensemble checkpoint (:mod:`cryopoint.engine.kfold`).

    ``root`` empty means: use the embedded synthetic dataset (``synth_*`` fields), generated on first use
    into the cache folder (``cache_dir``, default ``$CRYOPOINT_CACHE`` or ``~/.cache/cryopoint``) and reused.
    ``target_options`` go to the target drawer; their section follows the model's target kind
    (:data:`TARGET_KINDS`): :class:`HeatmapTargetOptions` (``sigma_factor``, ``truncate``) for heatmaps,
    :class:`SegmentationTargetOptions` (``radius_fraction``) for segmentation. ``None`` (only before the
    :class:`Config` is built) means the kind's defaults. With ``cache_volumes`` the normalised tomograms are
    kept as memory-mapped ``.npy`` files in the cache.

    ``hard_negative_fraction``: the share of crops centred on *decoys*, particle-sized dark blobs away from
    every labelled particle, mined from each training tomogram with the LoG blob detector (at most
    ``hard_negatives_per_run`` per run; :mod:`cryopoint.engine.hard_negatives`); the rest after
    ``positive_fraction`` stay uniform. 0 = off.

    ``polarity``: the training tomograms' contrast, as ``cryopoint.detect``'s (:mod:`cryopoint.data.polarity`):
    models learn protein darker than the ice. ``check`` warns about runs of ``root`` that look inverted (judged by
    their labelled particles where a run has enough, else by the label-free check; the embedded synthetic data is
    written dark and not checked), ``auto`` also inverts them, ``bright`` inverts every run, ``dark`` uses them as
    they are.
    """

    root: str = ""
    split: str = "train"
    kind: str = "denoised"
    runs: list[str] = field(default_factory=list)
    n_folds: int = 4
    fold: int | str = 0
    val_runs: list[str] = field(default_factory=list)
    synth_preset: str = "easy"
    synth_runs: int = 4
    synth_shape: list[int] = field(default_factory=lambda: [64, 192, 192])
    synth_seed: int = 0
    cache_dir: str = ""
    crop: list[int] = field(default_factory=lambda: [32, 128, 128])
    samples_per_epoch: int = 256
    positive_fraction: float = 0.6
    hard_negative_fraction: float = 0.0
    hard_negatives_per_run: int = 32
    target_options: TargetOptions | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_volumes: bool = True
    num_workers: int = 0
    polarity: str = "check"

    def __post_init__(self) -> None:
        from cryopoint.data.polarity import check_polarity_setting

        check_polarity_setting(self.polarity)
        fold = self.fold
        if fold == ALL_FOLDS:
            if self.val_runs:
                raise ConfigError(
                    "data.fold=all trains one model per fold, but data.val_runs fixes the validation runs: "
                    "leave data.val_runs empty for k-fold training, or give a single data.fold."
                )
        elif isinstance(fold, str) or (not self.val_runs and not 0 <= fold < self.n_folds):
            raise ConfigError(
                f"data.fold must be a fold number in [0, {self.n_folds - 1}] (data.n_folds={self.n_folds}) or 'all' "
                f"(train every fold, then one ensemble); got {fold!r}."
            )


@dataclass
class TrainConfig:
    """Optimisation, schedule, validation cadence and where runs are written.

    ``steps`` counts optimiser steps; ``batch_size`` is per process (per GPU under ``torchrun``).
    ``warmup_steps`` of linear warmup, then cosine decay to ``min_lr_ratio x lr``. ``grad_clip`` is the
    maximum gradient norm (0 = off). ``ema_decay`` 0 makes the EMA a plain copy. ``loss``: a name of
    :data:`cryopoint.engine.losses.LOSSES` that fits the model's targets (:data:`TARGET_KINDS`); empty
    means the first that fits (``mse`` for heatmaps, ``dice_ce`` for segmentation), filled in when the
    :class:`Config` is built. ``loss_options``: the loss's keyword options, e.g. ``{pos_weight: 30}`` for
    ``dice_ce`` or ``{alpha: 2, beta: 4}`` for ``focal`` (empty = its defaults; an option the loss does not
    take is refused when training starts, listing the ones it does). ``class_weights``: one per catalogue
    class (empty = all 1). Every
    ``val_every`` steps (and at the end) the EMA model is validated and ``last.pt`` written; ``log_every``
    steps the mean loss goes to ``metrics.jsonl``.
    ``device``: ``auto`` (CUDA if present), ``cpu``, ``cuda``; ``amp`` enables bf16 autocast on CUDA only.
    ``threads``: torch CPU threads (0 = torch's default). The run folder is ``out_dir/name`` (``name``
    defaults to the config file's stem; an existing folder gets ``-2``, ``-3``, ...); ``resume``
    continues the latest such folder from its ``last.pt``. ``init_from``: a cryopoint checkpoint whose
    weights initialise the whole network (encoder, decoder and head) before training, for fine-tuning; the
    model section must match the checkpoint's (refused otherwise).
    """

    seed: int = 0
    steps: int = 2000
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    loss: str = ""
    loss_options: dict[str, float] = field(default_factory=dict)
    class_weights: list[float] = field(default_factory=list)
    val_every: int = 500
    log_every: int = 10
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    out_dir: str = "runs"
    name: str = ""
    resume: bool = False
    init_from: str = ""


#: What runs the network on a CPU (``infer.runtime``).
RUNTIMES = ("torch", "onnxruntime", "auto")


@dataclass
class InferConfig:
    """Sliding-window inference used for validation (and stored as the detector's default).

    ``fast_cpu``: on a CPU, run an inference copy of the network with BatchNorm folded into the convolutions and
    NHWC (channels_last) layout (:mod:`cryopoint.model.optimize`): same scores to float rounding, faster.
    ``cpu_bf16``: on a CPU, compute in bfloat16 under autocast (faster where the CPU has bf16 instructions;
    heatmaps differ slightly). On CUDA, bf16 autocast is always on. ``runtime``: what runs the network on
    a CPU: ``torch``, ``onnxruntime`` (the ``cryopoint[onnx]`` extra; exported once per window shape and cached)
    or ``auto`` (ONNX Runtime where installed, else PyTorch). Speed and score of each variant:
    ``benchmarks/results/inference.md``.
    """

    roi: list[int] = field(default_factory=lambda: [64, 128, 128])
    overlap: float = 0.25
    batch_size: int = 2
    tta: bool = False
    blend: str = "gaussian"
    fast_cpu: bool = True
    cpu_bf16: bool = False
    runtime: str = "torch"


@dataclass
class PostConfig:
    """Peak finding (:func:`cryopoint.post.nms.find_peaks`) and the fixed threshold of the untuned score.

    Validation keeps every peak above ``min_score`` (at most ``top_k`` per class) for threshold tuning;
    ``default_threshold`` is the one threshold for all classes behind the honest, untuned score.
    ``threshold_tolerance``: the tuned (and checkpoint-stored) threshold of a class is the lowest one whose
    validation F-beta is within this much of the class's best (0 = the argmax; see
    :func:`cryopoint.post.thresholds.tune_thresholds`): thresholds meant to travel should lean low.
    ``adaptive_alpha``: above 0, ``detect`` raises each class's threshold per tomogram so that it keeps at most
    this multiple of the kept-peak density the checkpoint measured on reference data (``kept_density``; label
    free, :mod:`cryopoint.post.adaptive`); 0 = off, and off for a checkpoint without a reference.
    ``noise_tail``: ``detect`` raises each class's threshold per tomogram to where its peaks stand above the
    tomogram's own background tail (label free, no reference needed, :mod:`cryopoint.post.noise_tail`). With
    both on, each class takes the higher of the two thresholds.
    ``threshold_prior_strength``: when training starts from a checkpoint with thresholds (``train.init_from``,
    fine-tuning), the thresholds validation tunes are shrunk toward that checkpoint's, which weigh as much as
    this many validation particles per class (:func:`cryopoint.post.thresholds.shrink_to_prior`; 0 = off):
    thresholds tuned on the few validation tomograms of a fine-tuning follow their noise.
    """

    kernel_factor: float = 0.5
    min_score: float = 0.05
    top_k: int = 2000
    default_threshold: float = 0.5
    threshold_tolerance: float = 0.0
    adaptive_alpha: float = 0.0
    noise_tail: bool = False
    threshold_prior_strength: float = 25.0


@dataclass
class Config:
    """The whole training configuration (and, in a checkpoint, the detector's own settings).

    Building one fills in what depends on the model's target kind: ``data.target_options`` (its defaults when
    None; options of another kind are refused) and an empty ``train.loss`` (the kind's first loss).
    """

    model: ModelConfig = field(default_factory=Heatmap25DConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    post: PostConfig = field(default_factory=PostConfig)

    def __post_init__(self) -> None:
        kind = TARGET_KINDS[self.model.target_kind]
        if not self.train.loss:
            self.train.loss = kind.losses[0]
        if self.data.target_options is None:
            self.data.target_options = kind.options()
        elif type(self.data.target_options) is not kind.options:
            raise ConfigError(
                f"data.target_options is a {type(self.data.target_options).__name__}, but model.arch "
                f"{self.model.arch!r} learns {self.model.target_kind} targets: use {kind.options.__name__} "
                f"(keys: {', '.join(f.name for f in dataclasses.fields(kind.options))})."
            )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (recursively) and return it in canonical form."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        options = " or ".join(_type_name(option) for option in typing.get_args(tp))
        raise ConfigError(f"Config key {key!r} expects {options}; got {value!r} ({type(value).__name__}).")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"Config key {key!r} must be a mapping (section {tp.__name__}); got {value!r}.")
        if tp is ModelConfig:
            tp = _model_section(value, key)
        return _build(tp, value, key + ".")
    if origin is dict:
        key_tp, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"Config key {key!r} expects a mapping of {_type_name(item_tp)}; got {value!r}.")
        return {_convert(k, key_tp, key): _convert(v, item_tp, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"Config key {key!r} expects a list of {_type_name(item_tp)}; got {value!r}.")
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"Config key {key!r} expects {_type_name(tp)}; got {value!r} ({type(value).__name__}).")


def _model_section(value: dict, key: str) -> type[ModelConfig]:
    arch = value.get("arch", "heatmap25d")
    if arch not in MODEL_CONFIGS:
        raise ConfigError(f"Unknown {key}.arch {arch!r}; options: {', '.join(MODEL_CONFIGS)}.")
    return MODEL_CONFIGS[arch]


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"section {prefix[:-1]!r}" if prefix else "the top level"
        raise ConfigError(
            f"Unknown config key(s) {', '.join(repr(prefix + str(k)) for k in unknown)}; "
            f"valid keys in {where}: {', '.join(names)}."
        )
    return cls(**{k: _convert(v, hints[k], prefix + k) for k, v in data.items()})


def config_from_dict(data: dict | None) -> Config:
    """Build a :class:`Config` from a nested dict; missing keys take their defaults, old names are mapped.

    Training configs and checkpoint configs (:func:`cryopoint.load`) both come through here, so a detector
    holds a config checked exactly as training checks it.

    Raises:
        ConfigError: unknown key, wrong type, invalid value or a combination that cannot work (the message
            names the dotted key and what would fit).
    """
    data = _renamed(dict(data or {}))
    targets = None
    if isinstance(data.get("data"), dict) and "target_options" in data["data"]:
        data["data"] = dict(data["data"])
        targets = data["data"].pop("target_options")  # its section depends on the model: converted below
    cfg = _build(Config, data)
    if targets is not None:
        cfg.data.target_options = _target_options(targets, cfg.model)
    _validate(cfg)
    return cfg


def _renamed(data: dict) -> dict:
    """``data`` with the old key names of :data:`RENAMED_KEYS` replaced by the new ones."""
    for (section, old), new in RENAMED_KEYS.items():
        part = data.get(section)
        if isinstance(part, dict) and old in part:
            if new in part:
                raise ConfigError(f"{section}.{old} is the old name of {section}.{new}; give only {section}.{new}.")
            data[section] = {(new if k == old else k): v for k, v in part.items()}
    return data


def _target_options(value: Any, model: ModelConfig) -> TargetOptions:
    """``data.target_options`` as the section of the model's target kind (unknown keys name the valid ones)."""
    kind = TARGET_KINDS[model.target_kind]
    try:
        return _convert(value, kind.options, "data.target_options")
    except ConfigError as exc:
        where = f"model.arch {model.arch!r} learns {model.target_kind} targets"
        raise ConfigError(f"{str(exc).rstrip('.')} ({where}).") from None


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as a plain nested dict of built-in values (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(cfg)


def _parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"Override {text!r} must look like section.key=value, e.g. train.lr=3e-4.")
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply dotted ``key=value`` overrides to a nested dict (values parsed as YAML); returns a new dict.

    >>> apply_overrides({"train": {"lr": 0.1}}, ["train.lr=3e-4", "data.crop=[16,64,64]"])
    {'train': {'lr': '3e-4'}, 'data': {'crop': [16, 64, 64]}}
    """
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for text in overrides:
        path, value = _parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"Override {text!r}: {part!r} is a value, not a section.")
            else:
                child = node[part] = dict(child)
            node = child
        node[path[-1]] = value
    return out


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (``yaml.safe_load``), apply dotted overrides, check every key and type.

    ``train.name`` defaults to the config file's stem (the run folder is ``train.out_dir/train.name``).

    Args:
        path: YAML file.
        overrides: ``["train.lr=3e-4", "data.fold=2", ...]``.

    Raises:
        DataNotFoundError: no such file.
        ConfigError: YAML error, unknown key, wrong type or invalid value.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"No config file at {path}. Configs ship in the repository's configs/ folder.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (model, data, train, ...).")
    data = apply_overrides(data or {}, list(overrides))
    cfg = config_from_dict(data)
    if not cfg.train.name:
        cfg.train.name = path.stem
    return cfg


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically); ``load_config`` reads it back to an equal config."""
    from cryopoint.io.atomic import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def _validate(cfg: Config) -> None:
    """Value checks that types alone cannot express."""
    checks = [
        (len(cfg.data.crop) == 3 and min(cfg.data.crop) > 0, "data.crop must be three positive sizes (z, y, x)"),
        (len(cfg.data.synth_shape) == 3, "data.synth_shape must be three sizes (z, y, x)"),
        (len(cfg.infer.roi) == 3 and min(cfg.infer.roi) > 0, "infer.roi must be three positive sizes (z, y, x)"),
        (0.0 <= cfg.data.positive_fraction <= 1.0, "data.positive_fraction must be in [0, 1]"),
        (
            0.0 <= cfg.data.hard_negative_fraction <= 1.0 - cfg.data.positive_fraction + 1e-12,
            "data.hard_negative_fraction must be in [0, 1 - data.positive_fraction] (the rest are uniform crops)",
        ),
        (cfg.data.hard_negatives_per_run > 0, "data.hard_negatives_per_run must be positive"),
        (cfg.train.steps > 0 and cfg.train.batch_size > 0, "train.steps and train.batch_size must be positive"),
        (cfg.train.val_every > 0 and cfg.train.log_every > 0, "train.val_every and train.log_every must be positive"),
        (0.0 <= cfg.train.ema_decay < 1.0, "train.ema_decay must be in [0, 1)"),
        (0.0 <= cfg.infer.overlap < 1.0, "infer.overlap must be in [0, 1)"),
        (cfg.infer.runtime in RUNTIMES, f"infer.runtime must be one of {', '.join(RUNTIMES)}"),
        (0.0 <= cfg.post.threshold_tolerance < 1.0, "post.threshold_tolerance must be in [0, 1) (F-beta units)"),
        (cfg.post.adaptive_alpha >= 0.0, "post.adaptive_alpha must be >= 0 (0 = off)"),
        (cfg.data.samples_per_epoch > 0, "data.samples_per_epoch must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message + ".")
    _check_loss(cfg)


def _check_loss(cfg: Config) -> None:
    """``train.loss`` must fit the target kind of ``model.arch`` (a heatmap loss on labels broadcasts garbage)."""
    kind = cfg.model.target_kind
    fits = TARGET_KINDS[kind].losses
    if cfg.train.loss in fits:
        return
    known = [name for k in TARGET_KINDS.values() for name in k.losses]
    if cfg.train.loss not in known:
        raise ConfigError(f"Unknown train.loss {cfg.train.loss!r}; options: {', '.join(known)}.")
    raise ConfigError(
        f"train.loss={cfg.train.loss!r} does not fit model.arch={cfg.model.arch!r}, which learns {kind} targets; "
        f"use train.loss={' or '.join(fits)} (or a model.arch whose targets fit {cfg.train.loss!r})."
    )
