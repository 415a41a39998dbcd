"""Run folders, checkpoints and the metrics log: everything the training loop writes to disk.

A run folder ``train.out_dir/train.name`` holds ``config.yaml`` (the resolved config), ``metrics.jsonl``
(one JSON record per line: the run's data, training-loss logs, validations), ``last.pt`` (everything needed
to resume), ``best.pt`` (the best validation step's weights and tuned thresholds) and
``oof_predictions.csv`` (the best step's out-of-fold peaks with scores). Every file is written atomically.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cryopoint.checkpoint import catalogue_payload, load_checkpoint, save_checkpoint
from cryopoint.config import Config, config_to_dict
from cryopoint.errors import DataNotFoundError
from cryopoint.io.atomic import atomic_write_text

__all__ = ["resolve_run_dir", "checkpoint_payload", "rng_state", "set_rng_state", "load_resume", "MetricsLog"]


def resolve_run_dir(cfg: Config, resume_from: str = "last.pt") -> Path:
    """Where this run writes: ``out_dir/name``, or ``name-2``, ``name-3``, ... if that exists already.

    With ``train.resume`` it is the most recently written existing ``name`` / ``name-k`` folder that
    holds a ``last.pt`` (files matching the glob pattern ``resume_from``: ``fold*/last.pt`` for a k-fold run).

    Raises:
        DataNotFoundError: resuming, but no such folder has a ``last.pt``.
    """
    base = Path(cfg.train.out_dir).expanduser().absolute() / cfg.train.name
    pattern = re.compile(rf"{re.escape(base.name)}-\d+")
    siblings = [p for p in base.parent.glob(f"{base.name}-*") if pattern.fullmatch(p.name)]
    if cfg.train.resume:
        written = {p: [f.stat().st_mtime_ns for f in p.glob(resume_from) if f.is_file()] for p in (base, *siblings)}
        candidates = {p: max(times) for p, times in written.items() if times}
        if not candidates:
            raise DataNotFoundError(
                f"Nothing to resume: no {resume_from} in {base} (or {base.name}-N next to it). "
                "Start the run without --resume / train.resume=true."
            )
        return max(candidates, key=candidates.get)
    if not base.exists():
        return base
    k = 2
    while (base.parent / f"{base.name}-{k}").exists():
        k += 1
    return base.parent / f"{base.name}-{k}"


def rng_state() -> dict[str, Any]:
    """Torch's global RNG states (CPU and, if present, every CUDA device) as tensors."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_payload(
    cfg: Config,
    model: nn.Module,
    ema_state: dict[str, torch.Tensor] | None,
    *,
    voxel_size: tuple[float, float, float],
    thresholds: dict[str, float],
    metrics: dict[str, Any],
    step: int,
    resume_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A self-describing checkpoint dict (see :mod:`cryopoint.checkpoint`), weights-only loadable.

    ``resume_state`` (optimizer, scheduler, EMA update count, RNG) is added for ``last.pt`` only.
    """
    payload = {
        "model_state": model.state_dict(),
        "ema_state": ema_state,
        "config": config_to_dict(cfg),
        "particles": catalogue_payload(),
        "voxel_size": [float(v) for v in voxel_size],
        "thresholds": {str(k): float(v) for k, v in thresholds.items()},
        "metrics": metrics,
        "step": int(step),
    }
    if resume_state is not None:
        payload.update(resume_state)
    return payload


def load_resume(run_dir: Path, device: torch.device) -> dict[str, Any]:
    """``last.pt`` of a run folder, loaded weights-only onto ``device``."""
    return load_checkpoint(run_dir / "last.pt", map_location=device)


def save(path: Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically."""
    return save_checkpoint(path, payload)


class MetricsLog:
    """``metrics.jsonl``: one JSON record per line, rewritten atomically on every append.

    On resume, records logged after the resumed step (the tail an interrupted run wrote after its last
    checkpoint) are dropped so the log matches an uninterrupted run.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lines: list[str] = self.path.read_text().splitlines() if self.path.is_file() else []

    def truncate_after(self, step: int) -> None:
        """Forget records whose ``step`` is greater than ``step``."""
        self.lines = [line for line in self.lines if json.loads(line).get("step", 0) <= step]
        self._flush()

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (JSON-serialisable dict)."""
        self.lines.append(json.dumps(record, sort_keys=False))
        self._flush()

    def records(self) -> list[dict[str, Any]]:
        """Every record, in order."""
        return [json.loads(line) for line in self.lines]

    def _flush(self) -> None:
        atomic_write_text(self.path, "".join(line + "\n" for line in self.lines))
