"""Tune per-class score thresholds on scored predictions against ground truth (exact F-beta sweep).

    python tools/tune_thresholds.py --predictions oof.csv --truth DATASET_ROOT --out thresholds.yaml \\
        [--split train] [--runs TS_5_4 TS_6_4] [--checkpoint model.pt] [--plot fbeta.png]
    python tools/tune_thresholds.py --predictions peaks.csv --truth MY_DATA --out thresholds.yaml \\
        --checkpoint default --save-as my_default.pt     # recalibrate the shipped model into a copy

With --checkpoint, its thresholds are the prior: each class's tuned threshold is shrunk toward the
checkpoint's by the labelled particles behind it, (n * tuned + s * prior) / (n + s) with s = --prior-strength
(25 particles; 0 turns it off), because thresholds tuned on a few tomograms follow their noise. --prior takes
them from another checkpoint instead: for a fine-tuned model, the one it started from (train.init_from)::

    python tools/tune_thresholds.py --predictions runs/finetune/oof_predictions.csv --truth MY_DATA \\
        --out thresholds.yaml --prior default

Runs default to those present in the predictions (a run with truth but no prediction row would otherwise
count as all-missed). Predictions that look like voxel indices are refused; truth or predictions outside their
tomogram are counted in a warning. The YAML holds ``thresholds: {particle: score}`` plus the scores before and
after. Every input is checked before anything is written; an existing --out or --plot is replaced only with
--overwrite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from rich.table import Table

from cryopoint import weights
from cryopoint.checkpoint import load_checkpoint, save_checkpoint
from cryopoint.cli import ArgumentParser, entry_point, make_console
from cryopoint.errors import OutputExistsError
from cryopoint.io import read_submission_csv
from cryopoint.io.atomic import atomic_write_text, refuse_inputs
from cryopoint.io.layout import read_truth, tomogram_geometries
from cryopoint.io.picks import check_picks_frame
from cryopoint.post.thresholds import DEFAULT_PRIOR_STRENGTH, RULES, tune_thresholds
from cryopoint.viz.curves import plot_fbeta_curves


@entry_point
def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictions", required=True, type=Path, help="CSV: experiment, particle_type, x, y, z, score")
    ap.add_argument("--truth", required=True, type=Path, help="dataset root in the challenge/copick layout")
    ap.add_argument("--split", default="train")
    ap.add_argument("--runs", nargs="*", help="runs to tune on (default: those in the predictions)")
    ap.add_argument("--beta", type=float, default=4.0)
    ap.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="per class, the lowest threshold within this F-beta of its best (0 = argmax; 0.05 leans low, for "
        "thresholds that must travel to other tomograms)",
    )
    ap.add_argument(
        "--rule",
        choices=RULES,
        help="per-class choice: argmax (default), lean (needs --tolerance), or bootstrap (argmax of the F-beta curve "
        "averaged over 200 resamples of the runs, seed 0; for thresholds tuned on few runs)",
    )
    ap.add_argument(
        "--checkpoint", help="also store the thresholds in this checkpoint (atomic), or 'default' with --save-as"
    )
    ap.add_argument("--save-as", type=Path, help="write a copy of --checkpoint with the thresholds instead")
    ap.add_argument(
        "--prior",
        metavar="CHECKPOINT",
        help="take the prior thresholds from this checkpoint (or 'default') instead of --checkpoint's; for a "
        "fine-tuned model, the checkpoint it started from",
    )
    ap.add_argument(
        "--prior-strength",
        type=float,
        default=DEFAULT_PRIOR_STRENGTH,
        metavar="N",
        help="with --checkpoint or --prior: shrink each class's threshold toward that checkpoint's, which weighs as "
        f"much as N labelled particles of the class (default {DEFAULT_PRIOR_STRENGTH:g}; 0 = the rule's choice stands)",
    )
    ap.add_argument("--out", required=True, type=Path, help="thresholds YAML to write")
    ap.add_argument("--plot", type=Path, help="PNG of F-beta against threshold per class")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out / --plot")
    args = ap.parse_args(argv)
    if not args.prior_strength >= 0 or args.prior_strength == float("inf"):
        ap.error(f"--prior-strength must be a finite number of particles >= 0; got {args.prior_strength}")
    refuse_inputs(args.out, [args.predictions])
    for path in (args.out, args.plot):
        if path is not None and path.is_dir():
            raise OutputExistsError(f"{path} is a folder; give a file name.")
        if path is not None and path.exists() and not args.overwrite:
            raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it, or choose another path.")
    source = weights.resolve_checkpoint(args.checkpoint) if args.checkpoint else None
    if args.save_as and source is None:
        ap.error("--save-as needs --checkpoint (the checkpoint to copy)")
    if source is not None and source.resolve() == weights.DEFAULT_PATH and not args.save_as:
        ap.error("the shipped default model is never modified: add --save-as MY_MODEL.pt for a recalibrated copy")
    if args.save_as:
        refuse_inputs(args.save_as, [args.predictions, source])
        if args.save_as.exists():
            ap.error(f"{args.save_as} exists; choose another --save-as path")
    payload = load_checkpoint(source) if source is not None else None  # a bad --checkpoint fails before any write
    prior_name = args.prior if args.prior is not None else args.checkpoint
    if args.prior is not None:
        prior_payload = load_checkpoint(weights.resolve_checkpoint(args.prior))
        if not prior_payload.get("thresholds"):
            ap.error(
                f"--prior {args.prior} holds no tuned thresholds to shrink toward; give the checkpoint that has them"
            )
    else:
        prior_payload = payload

    preds = read_submission_csv(args.predictions)
    runs = args.runs or sorted(set(preds["experiment"]))
    preds = preds[preds["experiment"].isin(runs)]
    truth = read_truth(args.truth, split=args.split, runs=runs)
    check_picks_frame(preds, truth, tomogram_geometries(args.truth, runs, split=args.split))  # voxels? outside?
    # a checkpoint without tuned thresholds (an empty dict) has no prior to offer
    prior = (prior_payload.get("thresholds") or None) if prior_payload is not None and args.prior_strength > 0 else None
    opts = {"tolerance": args.tolerance, "rule": args.rule, "prior": prior, "prior_strength": args.prior_strength}
    res = tune_thresholds(truth, preds, beta=args.beta, **opts)

    table = Table(title=f"Per-class thresholds ({res.rule}) over {len(runs)} run(s), F-beta (beta={args.beta:g})")
    shrunk = ("tuned", "prior", "n") if prior is not None else ()
    for col in ("particle", "weight", *shrunk, "threshold", "TP", "FP", "FN", "precision", "recall", "F-beta"):
        table.add_column(col, justify="left" if col == "particle" else "right")
    for name, row in res.table.iterrows():
        t = res.thresholds[name]
        extra = ()
        if prior is not None:
            own_prior = f"{float(prior[name]):.4g}" if name in prior else "none"
            extra = (f"{res.chosen[name]:.4g}", own_prior, str(int(row.n_true)))
        cells = (f"{row.weight:g}", *extra, f"{t:.4g}", *(str(int(row[c])) for c in ("tp", "fp", "fn")))
        table.add_row(name, *cells, *(f"{row[c]:.3f}" for c in ("precision", "recall", "fbeta")))
    console = make_console()
    console.print(table)
    if prior is not None:
        console.print(
            f"thresholds shrunk toward {prior_name}'s by the labelled particles per class (n), the prior weighing "
            f"{args.prior_strength:g}; --prior-strength 0 keeps the tuned ones"
        )
    console.print(f"weighted score: {res.score_before:.4f} before -> [bold]{res.score_after:.4f}[/bold] after tuning")

    doc = {"thresholds": res.thresholds, "beta": args.beta, "rule": res.rule, "tolerance": args.tolerance, "runs": runs}
    if prior is not None:
        doc["prior"] = {
            "checkpoint": str(prior_name),
            "strength": args.prior_strength,
            "thresholds": {k: float(v) for k, v in prior.items()},
            "tuned": res.chosen,
        }
    doc.update(score_before=res.score_before, score_after=res.score_after)
    atomic_write_text(args.out, yaml.safe_dump(doc, sort_keys=False))
    console.print(f"thresholds written to {args.out}")
    if payload is not None:
        stored = {**payload, "thresholds": {k: float(v) for k, v in res.thresholds.items()}}
        # The reference density counts what the *old* thresholds kept: with new ones it would misjudge floods
        # and mis-set the adaptive cap, so it goes (re-measure it for these thresholds: docs/models.md).
        dropped_density = bool(stored.pop("kept_density", None))
        save_checkpoint(args.save_as or source, stored)
        console.print(
            f"copy of {source} with these thresholds written to {args.save_as}"
            if args.save_as
            else f"thresholds stored in {source}"
        )
        if dropped_density:
            console.print(
                "its reference density (kept_density, for the flood warning and post.adaptive_alpha) belonged to the "
                "old thresholds and was left out; to measure one for these: python -m benchmarks.adaptive_thresholds "
                "--model MODEL --save-as COPY"
            )
    if args.plot:
        console.print(f"F-beta curves saved to {plot_fbeta_curves(res.curves, res.thresholds, args.plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
