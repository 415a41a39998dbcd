"""Fine-tuning the shipped model on a few labelled tomograms of new data: what it buys, draw after draw.

A user with k labelled tomograms can recalibrate the shipped model's thresholds on them
(``tools/tune_thresholds.py --checkpoint default``) or fine-tune the whole network on them
(``tools/train.py configs/finetune.yaml data.root=MY_DATA``). This benchmark does both, as a user would, on the
generalisation benchmark's held-out sources (none seen in training): per source, ``--draws`` random draws of
k labelled runs out of ``--test-runs`` fresh runs; the fine-tuning trains on k - 1 of them and validates (and
tunes its thresholds) on the last; every pick of the other runs is scored pooled. Per draw:

* ``untouched``: the shipped model as it is (no labels used);
* ``recalibrated``: its thresholds tuned on the k runs and shrunk toward its own (the ``--checkpoint`` prior);
* ``fine-tuned, validation alone``: the fine-tuned model at the thresholds its one validation run chose alone
  (``thresholds_tuned_alone`` in ``metrics.jsonl``), what fine-tuning gave before the prior;
* ``fine-tuned``: the fine-tuned ``best.pt`` as the user loads it (thresholds shrunk toward the shipped
  model's, ``post.threshold_prior_strength``);
* ``ranking``, per model: the oracle, its thresholds tuned on the held-out answers (what a better threshold
  could at most add; the gap between the two models' oracles is the ranking fine-tuning changed);
* with ``--kfold``, ``k-fold ensemble``: the same k runs fine-tuned k times (``data.fold=all``, one labelled run
  held out per fold), thresholds tuned once on the pooled out-of-fold predictions and shrunk toward the shipped
  model's, the k fold models averaged at inference (``ensemble.pt`` as the user loads it), and its oracle.

Trainings are resumable: a finished one (``done.json`` in the work folder) is reused, and each draw's scores
are kept beside it::

    python -m benchmarks.finetune_runs --seed-offset 5000 --draws 4
    python -m benchmarks.finetune_runs --predictions DIR ...   # shipped peaks from default_model --save-predictions
    python -m benchmarks.finetune_runs --kfold --draws 1 --out benchmarks/results/finetune_runs_kfold

Writes ``benchmarks/results/finetune_runs.md``, ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from benchmarks.bench_common import machine, own_picks
from benchmarks.labelled_runs import draw_splits, picks_at, rule_thresholds

REPO = Path(__file__).resolve().parents[1]
console = Console()

#: The columns of a draw, in report order.
ARMS = ("untouched", "recalibrated", "fine-tuned, validation alone", "fine-tuned")
ORACLES = ("untouched oracle", "fine-tuned oracle")
#: The ``--kfold`` arm and its oracle.
KFOLD_ARMS = ("k-fold ensemble",)
KFOLD_ORACLES = ("k-fold oracle",)
#: What a finished k-fold fine-tuning's folder holds.
KFOLD_FILES = ("done.json", "ensemble.pt")


def run_key(name: str) -> int:
    """Runs sort by their number (``TS_10`` after ``TS_9``)."""
    return int(name.rsplit("_", 1)[1])


def finetune_overrides(root: Path, labelled: list[str], name: str, work: Path, extra=()) -> list[str]:
    """The ``tools/train.py configs/finetune.yaml`` overrides of one draw: train on all labelled runs but the
    last, validate (and tune thresholds) on the last."""
    if len(labelled) < 2:
        raise ValueError(f"fine-tuning needs two labelled runs at least (one to validate on); got {labelled}")
    return [
        f"data.root={root}",
        f"data.runs=[{','.join(labelled)}]",
        f"data.val_runs=[{labelled[-1]}]",
        f"train.name={name}",
        f"train.out_dir={work}",
        *extra,
    ]


def kfold_overrides(root: Path, labelled: list[str], name: str, work: Path, extra=()) -> list[str]:
    """The ``tools/train.py configs/finetune.yaml data.fold=all`` overrides of one draw: one fold per labelled run
    (each trains on the others and validates on it)."""
    if len(labelled) < 2:
        raise ValueError(f"k-fold fine-tuning needs two labelled runs at least (one fold each); got {labelled}")
    return [
        f"data.root={root}",
        f"data.runs=[{','.join(labelled)}]",
        "data.val_runs=[]",
        "data.fold=all",
        f"data.n_folds={len(labelled)}",
        f"train.name={name}",
        f"train.out_dir={work}",
        *extra,
    ]


def kfold_once(cfg) -> tuple[Path, dict]:
    """Train a draw's k-fold fine-tuning (every fold, pooled thresholds, ``ensemble.pt``), or reuse the finished
    one of the same name. An interrupted one resumes its folds (a finished fold is not trained again).

    Returns:
        ``(k-fold folder, record)``: the record's ``train_s`` is the whole k-fold training's wall time (its
        validations included), measured when it was trained.
    """
    import copy

    from benchmarks.compare_plan import finished_run
    from cryopoint.engine import train_kfold
    from cryopoint.io.atomic import atomic_write_text

    out_dir = Path(cfg.train.out_dir)
    done = finished_run(out_dir, cfg.train.name, KFOLD_FILES)
    if done is not None:
        return done, json.loads((done / "done.json").read_text())
    cfg = copy.deepcopy(cfg)
    cfg.train.resume = any(out_dir.glob(f"{cfg.train.name}*/fold*/last.pt"))
    start = time.perf_counter()
    run_dir = Path(train_kfold(cfg))
    record = {"steps": int(cfg.train.steps), "folds": int(cfg.data.n_folds), "train_s": time.perf_counter() - start}
    atomic_write_text(run_dir / "done.json", json.dumps(record) + "\n")
    return run_dir, record


def held_out_peaks(ckpt: Path, root: Path, held: list[str]):
    """Every peak of ``ckpt`` on the held-out runs, kept beside it (``held_out_peaks.csv``) and read back on a rerun."""
    from benchmarks.generalization import predict
    from cryopoint.io import read_submission_csv
    from cryopoint.io.atomic import atomic_write_text

    cached = ckpt.parent / "held_out_peaks.csv"
    if cached.is_file():
        return read_submission_csv(cached)
    peaks = predict(ckpt, root, held)
    atomic_write_text(cached, peaks.to_csv(index=False))
    return peaks


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as the report names run folders)."""
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def alone_thresholds(run_dir: Path) -> dict[str, float]:
    """The thresholds the last validation chose on its own runs, before any prior moved them."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    vals = [r for r in records if r.get("type") == "val"]
    if not vals:
        raise SystemExit(f"{run_dir / 'metrics.jsonl'} has no validation record: the training did not finish.")
    last = vals[-1]
    return last.get("thresholds_tuned_alone") or last["thresholds"]


def check_reused(run_dir: Path, cfg) -> None:
    """Stop if a finished training in the work folder was trained with another config than this draw's (say,
    other ``--set`` overrides): resuming must not mix trainings of two recipes in one table."""
    from cryopoint.config import config_to_dict, load_config

    def recipe(c) -> dict:
        d = config_to_dict(c)
        d["train"] = {k: v for k, v in d["train"].items() if k not in ("name", "out_dir", "resume")}
        return d

    done = recipe(load_config(run_dir / "config.yaml"))
    want = recipe(cfg)
    diff = [f"{s}.{k}" for s in want for k in want[s] if done.get(s, {}).get(k) != want[s][k]]
    if diff:
        raise SystemExit(
            f"{run_dir} was trained with other settings ({', '.join(diff)}) than this run asks for; "
            "give this run another --work folder (or delete that one) instead of mixing the two."
        )


def draw_scores(det, ft, alone: dict, truth, peaks, ft_peaks, labelled: list[str], held: list[str], geometry, strength):
    """The scores of one draw on its held-out runs (``ARMS`` and ``ORACLES``).

    ``det``: the shipped detector; ``peaks``: its peaks on every run; ``ft`` / ``ft_peaks``: the fine-tuned
    detector and its peaks on the held-out runs; ``alone``: the fine-tuned validation's own thresholds.
    """
    from cryopoint.metric import score
    from cryopoint.post.thresholds import tune_thresholds

    t_l, p_l = truth[truth.experiment.isin(labelled)], peaks[peaks.experiment.isin(labelled)]
    t_h, p_h = truth[truth.experiment.isin(held)], peaks[peaks.experiment.isin(held)]
    f_h = ft_peaks[ft_peaks.experiment.isin(held)]
    recal = rule_thresholds(t_l, p_l, det.default_thresholds, strength)["prior"]
    return {
        "untouched": float(score(t_h, own_picks(det, p_h, geometry)).score),
        "recalibrated": float(score(t_h, picks_at(det, recal, p_h, geometry)).score),
        "fine-tuned, validation alone": float(score(t_h, picks_at(ft, alone, f_h, geometry)).score),
        "fine-tuned": float(score(t_h, own_picks(ft, f_h, geometry)).score),
        "untouched oracle": float(tune_thresholds(t_h, p_h).score_after),
        "fine-tuned oracle": float(tune_thresholds(t_h, f_h).score_after),
    }


def kfold_scores(ens, truth, ens_peaks, held: list[str], geometry) -> dict:
    """The k-fold arm of one draw on its held-out runs: the ensemble as loaded (``KFOLD_ARMS``) and its oracle
    (``KFOLD_ORACLES``). ``ens_peaks``: the ensemble's peaks on the held-out runs."""
    from cryopoint.metric import score
    from cryopoint.post.thresholds import tune_thresholds

    t_h, e_h = truth[truth.experiment.isin(held)], ens_peaks[ens_peaks.experiment.isin(held)]
    return {
        "k-fold ensemble": float(score(t_h, own_picks(ens, e_h, geometry)).score),
        "k-fold oracle": float(tune_thresholds(t_h, e_h).score_after),
    }


def arms_of(results: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The arms and oracles every draw of ``results`` has (the k-fold ones only when all draws have them)."""
    draws = [d for row in results.values() for d in row["draws"]]
    kfold = bool(draws) and all(KFOLD_ARMS[0] in d["scores"] for d in draws)
    return (ARMS + KFOLD_ARMS, ORACLES + KFOLD_ORACLES) if kfold else (ARMS, ORACLES)


def plot(results: dict, path: Path) -> Path:
    """Per source, each draw's score under each arm (one grey line per draw), the mean in colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(results)
    arms = arms_of(results)[0]
    labels = {"fine-tuned, validation alone": "fine-tuned,\nval. alone", "k-fold ensemble": "k-fold\nensemble"}
    fig, axes = plt.subplots(1, len(sources), figsize=(max(6.0, 4.4 * len(sources)), 3.8), sharey=True, squeeze=False)
    xs = np.arange(len(arms))
    for ax, source in zip(axes[0], sources):
        draws = results[source]["draws"]
        for d in draws:
            ax.plot(xs, [d["scores"][a] for a in arms], color="grey", alpha=0.5, lw=0.8, marker="o", ms=3)
        means = [np.mean([d["scores"][a] for d in draws]) for a in arms]
        ax.plot(xs, means, color="tab:blue", lw=2, marker="o", label="mean over draws")
        oracle = np.mean([d["scores"]["untouched oracle"] for d in draws])
        ax.axhline(oracle, color="k", ls=":", lw=0.8, label="untouched, oracle thresholds")
        ax.set_xticks(xs, [labels.get(a, a) for a in arms], fontsize=8)
        ax.set_title(f"source {source} ({len(draws)} draw{'s' if len(draws) != 1 else ''})")
    axes[0][0].set_ylabel("weighted F-beta on the other runs")
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle("The shipped model on a held-out source: untouched, and with k labelled runs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> Path:
    from benchmarks.compare import train_once
    from benchmarks.generalization import BUDGETS, FRESH_SEED_OFFSET, SOURCES, predict, run_geometry, source_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="which cached source datasets")
    parser.add_argument("--sources", nargs="+", choices=sorted(SOURCES), default=sorted(SOURCES))
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache-dir")
    parser.add_argument("--test-runs", type=int, default=16, metavar="N", help="fresh runs per source")
    parser.add_argument("--seed-offset", type=int, default=FRESH_SEED_OFFSET)
    parser.add_argument("--predictions", type=Path, metavar="DIR", help="the model's peaks on the fresh runs")
    parser.add_argument("--k", type=int, default=4, help="labelled runs per draw (the last one validates)")
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "finetune.yaml")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides of --config")
    parser.add_argument(
        "--kfold", action="store_true", help="also fine-tune every draw k-fold (data.fold=all) and score its ensemble"
    )
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "finetune_runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "finetune_runs")
    args = parser.parse_args(argv)
    if not 2 <= args.k < args.test_runs:
        parser.error(f"--k must be 2 .. {args.test_runs - 1}: one labelled run validates, one run at least is held out")

    import cryopoint
    from cryopoint.checkpoint import sha256
    from cryopoint.config import load_config
    from cryopoint.io import list_runs, read_submission_csv, read_truth
    from cryopoint.io.atomic import atomic_write_text
    from cryopoint.weights import resolve_checkpoint

    b = BUDGETS[args.budget]
    ckpt = resolve_checkpoint(args.model)
    det = cryopoint.load(ckpt)
    base = load_config(args.config)
    strength = float(base.post.threshold_prior_strength)
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for source in args.sources:
        root = source_root(source, b, args.cache_dir, fresh_runs=args.test_runs, fresh_offset=args.seed_offset)
        runs = sorted(list_runs(root), key=run_key)
        truth = read_truth(root)
        geometry = run_geometry(root, runs)
        if args.predictions is not None:
            peaks = read_submission_csv(args.predictions / f"source_{source}.csv")
            if set(peaks.experiment) - set(runs):
                raise SystemExit(
                    f"{args.predictions} holds runs that are not offset {args.seed_offset}'s source {source}."
                )
        else:
            cached = args.work / f"untouched_{source}_{args.seed_offset}.csv"
            if cached.is_file():
                peaks = read_submission_csv(cached)
            else:
                peaks = predict(ckpt, root, runs)
                atomic_write_text(cached, peaks.to_csv(index=False))
        draws = []
        splits = draw_splits(runs, args.k, args.draws, np.random.default_rng(args.seed))
        for i, (labelled, held) in enumerate(splits):
            labelled = sorted(labelled, key=run_key)
            name = f"{source}_{args.seed_offset}_k{args.k}_s{args.seed}_d{i}"
            console.rule(f"source {source}, draw {i + 1}/{args.draws}: labelled {', '.join(labelled)}")
            cfg = load_config(args.config, finetune_overrides(root, labelled, name, args.work, args.set))
            run_dir, record = train_once(cfg, report_only=False)  # not compare's --report-only state
            check_reused(run_dir, cfg)  # a reused training must be this recipe's
            ft_peaks = held_out_peaks(run_dir / "best.pt", root, held)
            ft = cryopoint.load(run_dir / "best.pt")
            scores = draw_scores(
                det, ft, alone_thresholds(run_dir), truth, peaks, ft_peaks, labelled, held, geometry, strength
            )
            t_h = truth[truth.experiment.isin(held)]
            draw = {
                "labelled": labelled,
                "held_particles": int((t_h.particle_type != "beta-amylase").sum()),
                "train_min": record["train_s"] / 60,
                "steps": record["steps"],
                "run": shown(run_dir),
                "scores": scores,
            }
            if args.kfold:
                kcfg = load_config(args.config, kfold_overrides(root, labelled, f"{name}_kfold", args.work, args.set))
                krun, krecord = kfold_once(kcfg)
                check_reused(krun, kcfg)
                ens_peaks = held_out_peaks(krun / "ensemble.pt", root, held)
                ens = cryopoint.load(krun / "ensemble.pt")
                scores.update(kfold_scores(ens, truth, ens_peaks, held, geometry))
                draw["kfold_train_min"] = krecord["train_s"] / 60
                draw["kfold_run"] = shown(krun)
            draws.append(draw)
            console.print({k: round(v, 3) for k, v in scores.items()})
        results[source] = {"draws": draws}
    meta = {
        "command": "python -m benchmarks.finetune_runs " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": str(ckpt),
        "sha256": sha256(ckpt),
        "config": shown(args.config),
        "overrides": list(args.set),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
        "seconds": time.perf_counter() - start,
        "prior_strength": strength,
        "k": args.k,
        "test_runs": args.test_runs,
        "seed_offset": args.seed_offset,
        "kfold": bool(args.kfold),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"meta": meta, "results": results}, indent=2))
    png = plot(results, args.out.with_suffix(".png"))
    md = args.out.with_suffix(".md")
    atomic_write_text(md, "\n".join(report_lines(results, meta, ckpt.name, png.name)) + "\n")
    console.print(f"Wrote {md}")
    return md


def report_lines(results: dict, meta: dict, name: str, png: str) -> list[str]:
    """The Markdown report: every draw's scores, the mean per source and over sources."""
    k = meta["k"]
    arms, oracles = arms_of(results)
    kfold = arms != ARMS
    lines = [
        "# Fine-tuning on a few labelled runs of a held-out source",
        "",
        f"`{meta['command'].strip()}` — {meta['date']}, {meta['machine']}, {meta['seconds'] / 60:.1f} min. "
        f"Checkpoint `{name}` (sha256 `{meta['sha256'][:16]}…`). Per source, {meta['test_runs']} fresh runs at "
        f"seed offset {meta['seed_offset']} (none seen in training). Each draw labels {k} random runs: "
        f"`{meta['config']}` (overrides: {', '.join(meta['overrides']) or 'none'}) trains on {k - 1} and validates "
        f"on the last; recalibration tunes the shipped model's thresholds on all {k}, shrunk toward its own (prior "
        f"worth {meta['prior_strength']:g} particles per class). Every pick of the other {meta['test_runs'] - k} runs "
        "scored pooled (weighted F-beta, β = 4). Oracle columns: thresholds tuned on those held-out answers "
        "(ranking only, not a result)."
        + (
            f" k-fold ensemble: the same {k} runs fine-tuned {k} times (`data.fold=all`, each fold validated on one "
            "of them), thresholds tuned once on the pooled out-of-fold predictions (shrunk toward the shipped "
            f"model's), the {k} fold models averaged at inference (`ensemble.pt`). Its train minutes are the "
            "whole k-fold run's (every fold's validation and the pooling included; the single fine-tuning's "
            "exclude its validation)."
            if kfold
            else ""
        ),
        "",
        "| source | draw | labelled runs | particles scored | "
        + " | ".join(arms)
        + " | "
        + " | ".join(oracles)
        + (" | train min | k-fold train min |" if kfold else " | train min |"),
        "|---|---|---|---|" + "---|" * (len(arms) + len(oracles) + 1 + kfold),
    ]
    for source, row in results.items():
        for i, d in enumerate(row["draws"]):
            s = d["scores"]
            best = max(s[a] for a in arms)
            cells = [f"**{s[a]:.3f}**" if s[a] == best else f"{s[a]:.3f}" for a in arms]
            cells += [f"{s[o]:.3f}" for o in oracles]
            cells.append(f"{d['train_min']:.1f}")
            if kfold:
                cells.append(f"{d['kfold_train_min']:.1f}")
            head = f"| {source} | {i} | {', '.join(d['labelled'])} | {d['held_particles']} | "
            lines.append(head + " | ".join(cells) + " |")
    lines += ["", "Means over draws:", "", "| source | draws | " + " | ".join((*arms, *oracles)) + " |"]
    lines.append("|---|---|" + "---|" * (len(arms) + len(oracles)))
    all_draws = []
    for source, row in results.items():
        all_draws += row["draws"]
        means = [np.mean([d["scores"][a] for d in row["draws"]]) for a in (*arms, *oracles)]
        lines.append(f"| {source} | {len(row['draws'])} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    if len(results) > 1:
        means = [np.mean([d["scores"][a] for d in all_draws]) for a in (*arms, *oracles)]
        lines.append(f"| all | {len(all_draws)} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    wins = sum(d["scores"]["fine-tuned"] > d["scores"]["recalibrated"] for d in all_draws)
    kwins = sum(d["scores"][KFOLD_ARMS[0]] > d["scores"]["fine-tuned"] for d in all_draws) if kfold else 0
    lines += [
        "",
        f"Fine-tuned above recalibrated in {wins} of {len(all_draws)} draws"
        + (f"; k-fold ensemble above fine-tuned in {kwins} of {len(all_draws)}" if kfold else "")
        + ". The held-out runs of one source "
        "overlap between draws, so draws are not independent; with a few hundred particles per draw, read "
        "differences under about 0.02 as noise.",
        "",
        f"![scores per draw]({png})",
    ]
    return lines


if __name__ == "__main__":
    main()
