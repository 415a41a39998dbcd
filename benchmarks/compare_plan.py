"""Which trainings a head-to-head (``benchmarks/compare.py``) runs, in which order, and how long they should take.

:func:`plan` is the one list :func:`benchmarks.compare.main` works through, so ``--plan`` shows exactly what a
command would train. :func:`estimate` prices it from the trainings already finished in the work folder (their
``done.json``: seconds per step of each kind of network and seconds of each final validation pass, measured on
this machine), so a user can check a command against a time budget before starting it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_common import slug

#: The report's methods of the training-free baseline and of the transfer arm (heatmap25d pretrained elsewhere,
#: fine-tuned as a whole).
BLOB, FINETUNED = "blob (LoG)", "heatmap25d fine-tuned"


@dataclass(frozen=True)
class Job:
    """One arm at one budget: its network trained once per whole-tomogram fold.

    ``arm`` is its folder under ``<work>/<source>/`` (``heatmap25d``, ``unet3d``, ``heatmap25d-bandpass``,
    ``heatmap25d-variant-<slug>``, ``finetuned-<tag>``); ``group`` ends with a report when its last job is done.
    """

    source: str
    method: str
    steps: int
    arm: str
    preprocess: str = "none"
    variant: str = "none"
    group: str = ""

    @property
    def network(self) -> str:
        return "unet3d" if self.method == "unet3d" else "heatmap25d"

    def out_dir(self, work: Path) -> Path:
        return work / self.source / self.arm / f"s{self.steps}"


def plan(
    sources: list[str],
    methods: list[str],
    curve: tuple[int, ...],
    preprocess: list[str] = (),
    preprocess_steps: int | None = None,
    variants: dict[str, list[str]] | None = None,
    variant_steps: int | None = None,
    transfer_tag: str | None = None,
    transfer_curve: tuple[int, ...] | None = None,
) -> list[Job]:
    """Every arm of a head-to-head in training order.

    The curve first, cheapest budget first (a killed run has whole low budgets to report); then the
    preprocessings (first source, ``preprocess_steps``); then the recipe variants (every source, beside the
    plain recipe at ``variant_steps``, added when the curve lacks it); then the transfer arm at the budgets of
    ``transfer_curve`` (default: the curve; ``transfer_tag`` names its starting network; None: no transfer).
    """
    jobs = [
        Job(src, method, steps, method, group=f"curve {steps}")
        for steps in curve
        for src in sources
        for method in methods
    ]
    for prep in preprocess:
        jobs.append(Job(sources[0], "heatmap25d", preprocess_steps, f"heatmap25d-{prep}", prep, group=f"prep {prep}"))
    for src in sources if variants else ():
        group = f"variants {src}"
        if not any(j.source == src and j.arm == "heatmap25d" and j.steps == variant_steps for j in jobs):
            jobs.append(Job(src, "heatmap25d", variant_steps, "heatmap25d", group=group))
        for name in variants:
            jobs.append(
                Job(src, "heatmap25d", variant_steps, f"heatmap25d-variant-{slug(name)}", variant=name, group=group)
            )
    if transfer_tag is not None:
        jobs += [
            Job(src, FINETUNED, steps, f"finetuned-{transfer_tag}", group=f"transfer {steps}")
            for steps in (curve if transfer_curve is None else transfer_curve)
            for src in sources
        ]
    return jobs


#: What a finished training's folder holds (a k-fold training: ``("done.json", "ensemble.pt")``).
FINISHED_FILES = ("done.json", "best.pt", "oof_predictions.csv")


def finished_run(out_dir: Path, name: str, files: tuple[str, ...] = FINISHED_FILES) -> Path | None:
    """A finished training of that name (``name`` or the engine's ``name-N``): every one of ``files`` there."""
    pattern = re.compile(rf"{re.escape(name)}(-\d+)?")
    for p in sorted(out_dir.glob(f"{name}*")):
        if pattern.fullmatch(p.name) and all((p / f).is_file() for f in files):
            return p
    return None


def _rate_key(arm: str) -> str:
    """Which measured trainings price an arm: unet3d, the fine-tuned network (its own architecture), or
    heatmap25d (from scratch, preprocessed inputs and variants alike)."""
    return "unet3d" if arm == "unet3d" else "finetuned" if arm.startswith("finetuned-") else "heatmap25d"


def measured_rates(work: Path) -> dict[str, dict[str, float]]:
    """Seconds per training step and per final validation pass of each kind of network, from the finished
    trainings in ``work`` (``<source>/<arm>/s<steps>/fold<k>[-N]/done.json``).

    Returns:
        ``{kind: {"s_per_step", "val_s", "n"}}`` for the kinds with at least one finished training.
    """
    pooled: dict[str, list[dict]] = defaultdict(list)
    for done in sorted(Path(work).glob("*/*/s*/*/done.json")):
        rec = json.loads(done.read_text())
        if rec.get("steps"):
            pooled[_rate_key(done.parents[2].name)].append(rec)
    return {
        kind: {
            "s_per_step": sum(r["train_s"] for r in recs) / sum(r["steps"] for r in recs),
            "val_s": sum(r["val_s"] for r in recs) / len(recs),
            "n": len(recs),
        }
        for kind, recs in pooled.items()
    }


def estimate(jobs: list[Job], folds: int, work: Path, rates: dict[str, dict[str, float]]) -> list[dict]:
    """Each job's status in ``work`` and the seconds its unfinished folds should take at ``rates``.

    A kind without a measurement is priced as heatmap25d from scratch (the fine-tuned network may be larger:
    then the figure is low, and says so with ``priced_as``); with no measurement at all, ``seconds`` is None.

    Returns:
        One dict per job: ``job``, ``finished`` (folds already trained), ``todo``, ``seconds``, ``priced_as``.
    """
    out = []
    for job in jobs:
        finished = sum(finished_run(job.out_dir(work), f"fold{f}") is not None for f in range(folds))
        kind = _rate_key(job.arm)
        priced_as = kind if kind in rates else "heatmap25d" if "heatmap25d" in rates else None
        todo = folds - finished
        seconds = None
        if priced_as is not None:
            r = rates[priced_as]
            seconds = todo * (r["s_per_step"] * job.steps + r["val_s"])
        out.append({"job": job, "finished": finished, "todo": todo, "seconds": seconds, "priced_as": priced_as})
    return out


def total_seconds(priced: list[dict]) -> float | None:
    """The whole plan's training seconds, or None when any unfinished job has no price."""
    if any(p["todo"] and p["seconds"] is None for p in priced):
        return None
    return float(sum(p["seconds"] or 0.0 for p in priced))
