"""Encoder weights from a local file only: never a download, never an unpickled object."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import nn

from cryopoint.errors import CheckpointError, DataNotFoundError

__all__ = ["load_encoder_weights"]


def _state_dict_from(payload: object, path: Path) -> dict[str, torch.Tensor]:
    """The encoder's tensors from a plain state dict, a ``{"state_dict"|"model": ...}`` wrapper or a cryopoint
    checkpoint (whose ``model_state`` keys under ``encoder.`` are kept, without that prefix)."""
    if isinstance(payload, dict) and isinstance(payload.get("model_state"), dict):
        prefix = "encoder."
        payload = {k[len(prefix) :]: v for k, v in payload["model_state"].items() if k.startswith(prefix)}
    elif isinstance(payload, dict):
        for key in ("state_dict", "model"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors; save one with torch.save(model.state_dict()).")
    return payload


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike) -> None:
    """Load encoder weights from a local file into a timm ``features_only`` encoder, in place.

    Keys are matched up to ``.``/``_`` (timm's feature wrappers rename ``stem.0`` to ``stem_0``); classifier
    weights in the file are ignored. When the file's first convolution has another number of input channels
    (3 for ImageNet weights), it is adapted to the slab thickness with timm's ``adapt_input_conv``.

    Args:
        encoder: The model's encoder (``timm.create_model(..., features_only=True)``).
        path: A ``.pt``/``.pth`` file loaded with ``torch.load(weights_only=True)``.

    Raises:
        DataNotFoundError: no file at ``path``.
        CheckpointError: unreadable as safe weights, or the weights belong to another encoder (the message
            names the first missing or mismatched keys).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"No pretrained weights file at {path}; give a local path (cryopoint never downloads).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise CheckpointError(f"Cannot load {path} as safe (weights-only) encoder weights: {exc}.") from exc
    state = _state_dict_from(payload, path)
    by_key = {k.replace(".", "_"): v for k, v in state.items()}
    first_conv = encoder.pretrained_cfg.get("first_conv") or ""
    first_conv = (first_conv if isinstance(first_conv, str) else first_conv[0]).replace(".", "_") + "_weight"
    loaded, missing, mismatched = {}, [], []
    for key, own in encoder.state_dict().items():
        value = by_key.get(key.replace(".", "_"))
        if value is None:
            if not key.endswith("num_batches_tracked"):
                missing.append(key)
            continue
        if key.replace(".", "_") == first_conv and value.ndim == 4 and value.shape[1] != own.shape[1]:
            value = adapt_input_conv(own.shape[1], value)
        if value.shape != own.shape:
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own.shape)}")
            continue
        loaded[key] = value
    if missing or mismatched:
        raise CheckpointError(
            f"{path} does not fit encoder {type(encoder).__name__}: missing {missing[:5]} "
            f"({len(missing)} in all), mismatched {mismatched[:5]} ({len(mismatched)} in all). "
            "Are these weights for the same timm encoder name?"
        )
    encoder.load_state_dict(loaded, strict=False)
