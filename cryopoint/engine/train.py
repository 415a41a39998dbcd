"""The training loop: ``train(cfg) -> run folder``.

One process, or one per GPU under ``torchrun`` (DDP). Step-based: ``train.steps`` optimiser steps of
``train.batch_size`` crops per process, AdamW with linear warmup and cosine decay, gradient clipping, an
EMA of the weights (validated and saved), bf16 autocast on CUDA (fp32 on CPU). Every ``train.val_every``
steps (and at the end) rank 0 validates on the held-out runs (:mod:`cryopoint.engine.validate`), writes
``last.pt`` and, on a new best, ``best.pt`` and ``oof_predictions.csv``.

Reproducibility: the model is initialised from ``train.seed``; crop ``i`` of epoch ``e`` depends only on
``(seed, e, i)``; ``last.pt`` holds the optimiser, scheduler, EMA and RNG states. On CPU, an interrupted
run resumed from ``last.pt`` (``train.resume=true``) therefore ends with the same weights and metrics as
an uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cryopoint.config import ALL_FOLDS, Config, config_to_dict, save_config
from cryopoint.engine import state
from cryopoint.engine.data import TrainData, batches, load_data, steps_per_epoch
from cryopoint.engine.distributed import DistInfo, barrier, broadcast_object, cleanup, init_distributed
from cryopoint.engine.ema import ModelEMA
from cryopoint.engine.losses import build_loss
from cryopoint.engine.schedule import build_scheduler
from cryopoint.engine.validate import ValResult, results_table, threshold_prior, val_record, validate
from cryopoint.errors import ConfigError
from cryopoint.io.atomic import atomic_path

__all__ = ["train"]

# Logs often go to a file or CI, where rich would fall back to 80 columns and squeeze the tables.
console = Console(width=None if sys.stdout.isatty() else 120)


def train(cfg: Config, *, stop_after: int | None = None) -> Path:
    """Train a model as ``cfg`` says and return the run folder.

    Args:
        cfg: A resolved :class:`~cryopoint.config.Config` (see :func:`cryopoint.config.load_config`).
        stop_after: Stop once this many steps are done (checkpointing ``last.pt``) as if interrupted, to
            be continued with ``train.resume=true``; ``None`` trains to ``train.steps``.

    Returns:
        The run folder (``config.yaml``, ``metrics.jsonl``, ``last.pt``, ``best.pt``, ``oof_predictions.csv``).

    Raises:
        ConfigError: ``data.fold`` is ``"all"``: that is :func:`cryopoint.engine.kfold.train_kfold`'s job.

    >>> run = train(load_config("configs/smoke.yaml"))  # doctest: +SKIP
    """
    if cfg.data.fold == ALL_FOLDS:
        raise ConfigError(
            "train() trains one fold; data.fold=all (every fold, then an ensemble) is "
            "cryopoint.engine.train_kfold(cfg), which tools/train.py calls for it."
        )
    joined = torch.distributed.is_initialized()  # a caller that set up the process group (k-fold) keeps it
    info = init_distributed(cfg.train.device)
    try:
        return _Trainer(cfg, info).run(stop_after)
    finally:
        if not joined:
            cleanup(info)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only, not on biases and norm scales."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


class _Trainer:
    def __init__(self, cfg: Config, info: DistInfo) -> None:
        from cryopoint.model import build_model

        self.cfg, self.info, self.device = cfg, info, info.device
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.run_dir = Path(broadcast_object(str(state.resolve_run_dir(cfg)), info))
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(**config_to_dict(cfg)["model"])
        if cfg.train.init_from and not cfg.train.resume:
            from cryopoint.checkpoint import init_from_checkpoint

            init_from_checkpoint(self.model, cfg.train.init_from)
        self.model = self.model.to(self.device)
        self.data: TrainData = load_data(
            cfg, info, target_kind=self.model.target_kind, output_stride=int(self.model.output_stride)
        )
        self.ema = ModelEMA(self.model, cfg.train.ema_decay)
        self.threshold_prior = threshold_prior(cfg)  # fine-tuning: the start's thresholds, for validation's
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, cfg.train.weight_decay), lr=cfg.train.lr)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.train.steps, cfg.train.warmup_steps, cfg.train.min_lr_ratio
        )
        self.loss_fn = build_loss(cfg.train.loss, cfg.train.loss_options)
        weights = cfg.train.class_weights
        self.class_weights = torch.tensor(weights, dtype=torch.float32, device=self.device) if weights else None
        self.net = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if info.distributed
            else self.model
        )
        self.step = 0
        self.best = {"score": float("-inf"), "step": -1, "thresholds": {}}
        self.last_thresholds: dict[str, float] = {}
        self.log = state.MetricsLog(self.run_dir / "metrics.jsonl") if info.is_main else None

    # -- set-up ------------------------------------------------------------------------------------------
    def _start(self) -> None:
        cfg = self.cfg
        if cfg.train.resume:
            self._resume()
        elif self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.log.append(
                {
                    "type": "run",
                    "step": 0,
                    "data_root": str(self.data.root),
                    "train_runs": [r.name for r in self.data.train_runs],
                    "val_runs": [r.name for r in self.data.val_runs],
                    "world_size": self.info.world_size,
                }
            )
        if self.info.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        barrier(self.info)

    def _resume(self) -> None:
        ck = state.load_resume(self.run_dir, self.device)
        self.model.load_state_dict(ck["model_state"])
        self.ema.load_state_dict(ck["ema_state"], ck["ema_updates"])
        self.optimizer.load_state_dict(ck["optimizer_state"])
        self.scheduler.load_state_dict(ck["scheduler_state"])
        state.set_rng_state(ck["rng_state"])
        self.step = int(ck["step"])
        self.best = dict(ck["best"])
        self.last_thresholds = dict(ck["thresholds"])
        if self.info.is_main:
            self.log.truncate_after(self.step)
            console.print(f"Resuming {self.run_dir} from step {self.step} of {self.cfg.train.steps}")

    # -- loop --------------------------------------------------------------------------------------------
    def run(self, stop_after: int | None) -> Path:
        cfg, info = self.cfg, self.info
        self._start()
        end = cfg.train.steps if stop_after is None else min(cfg.train.steps, stop_after)
        per_epoch = steps_per_epoch(cfg, info)
        autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=cfg.train.amp and self.device.type == "cuda"
        )
        progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not info.is_main,
        )
        task = progress.add_task("train", total=cfg.train.steps, completed=self.step, stats="")
        self.net.train()
        loss_sum, loss_n, t0 = torch.zeros((), device=self.device), 0, time.perf_counter()
        with progress:
            for batch in batches(self.data, cfg, info, start_step=self.step, end_step=end, per_epoch=per_epoch):
                image = batch["image"].to(self.device, non_blocking=True)
                target = batch["target"].to(self.device, non_blocking=True)
                with autocast:
                    logits = self.net(image)
                loss = self.loss_fn(logits, target, self.class_weights)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.ema.update(self.model)
                self.step += 1
                loss_sum += loss.detach()
                loss_n += 1
                if self.step % cfg.train.log_every == 0 or self.step == end:
                    stats = self._log_train(loss_sum, loss_n, time.perf_counter() - t0)
                    progress.update(task, completed=self.step, stats=stats)
                    loss_sum, loss_n, t0 = torch.zeros((), device=self.device), 0, time.perf_counter()
                else:
                    progress.update(task, completed=self.step)
                if self.step % cfg.train.val_every == 0 or self.step == cfg.train.steps:
                    self._validate_and_save(progress)
                    self.net.train()
                elif self.step == end:
                    self._save_last()
        barrier(info)
        if info.is_main and self.step == cfg.train.steps:
            self._summary()
        return self.run_dir

    def _log_train(self, loss_sum: torch.Tensor, n: int, seconds: float) -> str:
        if self.info.distributed:
            torch.distributed.all_reduce(loss_sum)
            loss_sum = loss_sum / self.info.world_size
        loss = float(loss_sum) / max(n, 1)
        lr = self.optimizer.param_groups[0]["lr"]
        speed = n * self.cfg.train.batch_size * self.info.world_size / max(seconds, 1e-9)
        if self.info.is_main:
            self.log.append({"type": "train", "step": self.step, "loss": loss, "lr": lr, "samples_per_s": speed})
        return f"loss {loss:.4g}  lr {lr:.2e}  {speed:.1f} samples/s"

    # -- validation and checkpoints ----------------------------------------------------------------------
    def _validate_and_save(self, progress: Progress) -> None:
        if self.info.is_main:
            progress.console.print(f"Validating on {', '.join(r.name for r in self.data.val_runs)} ...")
            result = validate(self.ema.module, self.data.val_runs, self.cfg, self.device, self.threshold_prior)
            progress.console.print(results_table(result, self.step))
            if self.threshold_prior is not None:
                progress.console.print(
                    f"Thresholds shrunk toward {self.cfg.train.init_from}'s, which weigh as much as "
                    f"{self.cfg.post.threshold_prior_strength:g} validation particles per class "
                    "(post.threshold_prior_strength; 0 keeps validation's own)."
                )
            self.log.append(val_record(result, self.step))
            self.last_thresholds = result.thresholds
            if result.score > self.best["score"]:
                self.best = {"score": result.score, "step": self.step, "thresholds": result.thresholds}
                self.best["score_fixed"] = result.score_fixed
                self._save_best(result)
        self._save_last()

    def _metrics(self, result: ValResult | None = None) -> dict:
        out = {"best_score": self.best["score"], "best_step": self.best["step"]}
        if result is not None:
            out.update(score=result.score, score_fixed=result.score_fixed, default_threshold=result.default_threshold)
        return out

    def _save_best(self, result: ValResult) -> None:
        payload = state.checkpoint_payload(
            self.cfg,
            self.model,
            self.ema.state_dict(),
            voxel_size=self.data.voxel_size,
            thresholds=result.thresholds,
            metrics=self._metrics(result),
            step=self.step,
        )
        state.save(self.run_dir / "best.pt", payload)
        with atomic_path(self.run_dir / "oof_predictions.csv") as tmp:
            result.predictions.to_csv(tmp, index=False)

    def _save_last(self) -> None:
        if not self.info.is_main:
            barrier(self.info)
            return
        resume_state = {
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "ema_updates": self.ema.updates,
            "rng_state": state.rng_state(),
            "best": self.best,
        }
        payload = state.checkpoint_payload(
            self.cfg,
            self.model,
            self.ema.state_dict(),
            voxel_size=self.data.voxel_size,
            thresholds=self.last_thresholds,
            metrics=self._metrics(),
            step=self.step,
            resume_state=resume_state,
        )
        state.save(self.run_dir / "last.pt", payload)
        barrier(self.info)

    def _summary(self) -> None:
        best = self.best
        # A fine-tuning's own validation is a tomogram or two: re-tuning on it keeps the start's thresholds as
        # the prior, as validation did (the tool without --prior would fit those few tomograms alone).
        prior_arg = (
            f" --prior {self.cfg.train.init_from} --prior-strength {self.cfg.post.threshold_prior_strength:g}"
            if self.threshold_prior is not None
            else ""
        )
        lines = [
            f"Best weighted F-beta (beta=4) on held-out run(s) {', '.join(r.name for r in self.data.val_runs)}: "
            f"[bold]{best['score']:.4f}[/bold] with per-class thresholds tuned on them (optimistic), "
            f"{best.get('score_fixed', float('nan')):.4f} at threshold {self.cfg.post.default_threshold:g}, "
            f"at step {best['step']}.",
            f"Run folder: {self.run_dir}",
            "  best.pt (EMA weights + tuned thresholds), last.pt (for --resume), metrics.jsonl, config.yaml,",
            "  oof_predictions.csv (every peak with its score, for threshold tuning across folds)",
            "Tune thresholds on pooled out-of-fold predictions:",
            f"  python tools/tune_thresholds.py --predictions {self.run_dir}/oof_predictions.csv "
            f"--truth {self.data.root} --out {self.run_dir}/thresholds.yaml{prior_arg}",
            "Detect particles:",
            f"  python tools/detect.py --model {self.run_dir}/best.pt --files TOMOGRAM.zarr --out predictions/",
        ]
        console.print(Panel("\n".join(lines), title="Training finished"))
