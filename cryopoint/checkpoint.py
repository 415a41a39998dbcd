"""Self-describing checkpoints: plain dicts of tensors and built-in values, safe to load.

A checkpoint holds everything needed to rebuild a detector with no YAML at hand (see ``docs/design.md``):

``format_version`` (int), ``model_state`` and ``ema_state`` (state dicts, ``ema_state`` may be None),
``config`` (the resolved config as a plain nested dict), ``particles`` (list of ``{name, radius, weight,
label}``), ``voxel_size`` (three floats, z, y, x, Å), ``thresholds`` (``{particle name: float}``),
``metrics`` (plain dict), ``step`` (int), optionally ``kept_density`` (``{particle name: kept peaks per
µm³}`` on reference data, for per-tomogram thresholds: :mod:`cryopoint.post.adaptive`) and, for resuming,
``optimizer_state``/``scheduler_state``/``rng_state``.
An ensemble checkpoint (k-fold training, :mod:`cryopoint.engine.kfold`) adds ``ensemble`` (``{members, folds,
sources, steps}``) and holds every member's weights in ``model_state`` (``members.0.*``, ``members.1.*``, ...;
:mod:`cryopoint.model.ensemble`).

Loading always uses ``torch.load(..., weights_only=True)``: a checkpoint can never execute code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from cryopoint.errors import CheckpointError, ConfigError, DataNotFoundError
from cryopoint.io.atomic import atomic_path
from cryopoint.particles import PARTICLES

__all__ = [
    "FORMAT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "set_thresholds",
    "catalogue_payload",
    "init_from_checkpoint",
    "inference_weights",
    "export_checkpoint",
    "average_checkpoints",
    "sha256",
]

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_state", "config", "particles", "voxel_size")


def catalogue_payload() -> list[dict[str, Any]]:
    """The particle catalogue as plain dicts, for storing in a checkpoint."""
    return [asdict(p) for p in PARTICLES]


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file, then rename).

    ``format_version`` is added when missing. Values must be tensors or built-in containers/scalars so
    that ``weights_only=True`` loading works.
    """
    payload = {"format_version": FORMAT_VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check it is one of ours.

    Raises:
        DataNotFoundError: the file does not exist.
        CheckpointError: the file is not a cryopoint checkpoint, is from a newer format, or would need
            to execute code to load.
    """
    path = Path(path)
    if not path.is_file():
        nearby = sorted(p.name for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        hint = f" Checkpoints in {path.parent}: {', '.join(nearby)}." if nearby else ""
        raise DataNotFoundError(f"No checkpoint at {path}.{hint} Train one with `python tools/train.py CONFIG`.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise CheckpointError(
            f"Cannot load {path} as a safe (weights-only) checkpoint: {exc}. "
            "cryopoint never unpickles arbitrary objects; re-save the checkpoint with cryopoint."
        ) from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a cryopoint checkpoint dict.")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is not a cryopoint checkpoint: missing {', '.join(missing)}.")
    if int(payload["format_version"]) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload['format_version']}, newer than this cryopoint "
            f"({FORMAT_VERSION}); upgrade cryopoint."
        )
    return payload


def set_thresholds(path: str | os.PathLike, thresholds: dict[str, float]) -> Path:
    """Store tuned per-class thresholds into an existing checkpoint (atomic rewrite of that file)."""
    from cryopoint.particles import get_particle

    for name in thresholds:
        get_particle(name)
    payload = load_checkpoint(path)
    payload["thresholds"] = {str(k): float(v) for k, v in thresholds.items()}
    return save_checkpoint(path, payload)


def inference_weights(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint is used with: its EMA weights where it has them (those were validated)."""
    return payload.get("ema_state") or payload["model_state"]


def init_from_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Initialise every tensor of ``model`` (encoder, decoder, head) from a cryopoint checkpoint, for fine-tuning.

    ``path`` may be ``"default"`` (the shipped model). The checkpoint's weights (its EMA weights where it has
    them, as :func:`cryopoint.load` uses) must fit ``model`` exactly: the
    same architecture, encoder, slab, widths and classes. Anything else is refused rather than half-loaded,
    since a layer left at random initialisation would silently waste the pretraining.

    Returns:
        The checkpoint payload (its config says what it was trained on).

    Raises:
        DataNotFoundError: no file at ``path``.
        CheckpointError: unreadable, or its tensors do not match ``model`` (the message names the model
            settings of both and the first differing tensors).
    """
    from cryopoint.model.ensemble import ensemble_size
    from cryopoint.weights import resolve_checkpoint

    path = resolve_checkpoint(path)
    payload = load_checkpoint(path)
    if ensemble_size(payload):
        raise CheckpointError(
            f"{path} is an ensemble of {ensemble_size(payload)} fold models; fine-tune from one of them instead "
            "(its fold's best.pt, e.g. runs/NAME/fold0/best.pt)."
        )
    state = inference_weights(payload)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        theirs = payload.get("config", {}).get("model", {})
        details = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", mismatched))
            if keys
        )
        raise CheckpointError(
            f"{path} does not fit this model ({details}). It was trained with model settings {theirs}; "
            "fine-tune with the same model section (or drop init_from to train from scratch)."
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return payload


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (the model card records the shipped weights' digest)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    half: bool = True,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
):
    """Write a checkpoint stripped for shipping: the weights :func:`cryopoint.load` uses (EMA where present),
    optionally in fp16, with config, catalogue, voxel size, thresholds and metrics; no optimizer or RNG state.
    An ensemble checkpoint stays an ensemble (every member's weights, in fp16 too).

    ``overrides``: dotted ``infer.*`` / ``post.*`` settings to ship as the detector's defaults (e.g.
    ``infer.roi=[96,320,320]``), validated like a training config; weights and training settings are never
    changed this way.

    Returns:
        ``dst`` as a ``Path``.

    Raises:
        OutputExistsError: ``dst`` exists and ``overwrite`` is False.
    """
    from cryopoint.errors import OutputExistsError

    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    payload = load_checkpoint(src)
    if overrides:
        from cryopoint.config import apply_overrides, config_from_dict, config_to_dict

        wrong = [o for o in overrides if not o.split("=", 1)[0].strip().startswith(("infer.", "post."))]
        if wrong:
            raise ConfigError(f"Only infer.* and post.* settings can be changed on export; got {wrong}.")
        payload["config"] = config_to_dict(config_from_dict(apply_overrides(payload["config"], list(overrides))))
    state = inference_weights(payload)
    cast = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    from cryopoint.model.ensemble import ENSEMBLE_KEY

    keep = ("format_version", "config", "particles", "voxel_size", "thresholds", "kept_density", "metrics", "step")
    keep += (ENSEMBLE_KEY,)
    return save_checkpoint(dst, {**{k: payload[k] for k in keep if k in payload}, "model_state": cast})


def average_checkpoints(srcs: Sequence[str | os.PathLike], dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the uniform weight average of checkpoints of one network (a "model soup" of one lineage).

    Every floating tensor (BatchNorm running statistics included) is averaged in fp32 and stored in the first
    checkpoint's dtype; integer tensors (BatchNorm batch counters) come from the last. Config, catalogue and
    voxel size come from the **last** checkpoint (the newest stage, by convention). The members' thresholds
    and reference densities are dropped: none of them was tuned for the average, so tune its thresholds on
    held-out runs (``tools/tune_thresholds.py``) before use. Averaging only makes sense for checkpoints of one
    lineage (one started from the other, or both from a common parent); that cannot be checked here.

    Raises:
        CheckpointError: fewer than two checkpoints, an ensemble among them, or weights that differ in names,
            shapes, architecture or particle classes.
        OutputExistsError: ``dst`` exists and ``overwrite`` is False.
    """
    from cryopoint.errors import OutputExistsError
    from cryopoint.model.ensemble import ENSEMBLE_KEY

    dst = Path(dst)
    if len(srcs) < 2:
        raise CheckpointError(f"Averaging needs at least two checkpoints; got {len(srcs)}.")
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    payloads = [load_checkpoint(src) for src in srcs]
    for src, payload in zip(srcs, payloads):
        if ENSEMBLE_KEY in payload:
            raise CheckpointError(f"{src} is an ensemble; average single models (an ensemble averages at inference).")
    states = [inference_weights(p) for p in payloads]
    first, last = states[0], states[-1]
    for src, payload, state in zip(srcs[1:], payloads[1:], states[1:]):
        if payload["config"]["model"] != payloads[0]["config"]["model"]:
            raise CheckpointError(f"{src} has another model config than {srcs[0]}: weights of different networks.")
        if payload["particles"] != payloads[0]["particles"]:
            raise CheckpointError(f"{src} has other particle classes than {srcs[0]}.")
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            raise CheckpointError(f"{src} has other weight names or shapes than {srcs[0]}.")
    averaged = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            mean = torch.stack([s[key].float() for s in states]).mean(dim=0)
            averaged[key] = mean.to(tensor.dtype).contiguous()
        else:
            averaged[key] = last[key].clone()
    digests = [sha256(src) for src in srcs]
    newest = payloads[-1]
    payload = {k: newest[k] for k in ("config", "particles", "voxel_size") if k in newest}
    payload |= {"model_state": averaged, "metrics": {"averaged_from": ", ".join(digests)}}
    return save_checkpoint(dst, payload)
