"""The report of ``benchmarks/compare.py``: learning-curve tables, the plain-words verdict, the figure, JSON.

A *row* is one (source, method, steps, preprocessing, recipe variant) result: ``score`` (weighted F-beta at
thresholds tuned on all pooled out-of-fold predictions), ``score_crossfold`` (each fold at thresholds tuned on the other
folds), ``per_class`` (precision, recall, fbeta, tp, fp, fn at the tuned thresholds, and the ``_crossfold``
precision, recall and fbeta), ``train_s`` (all folds), ``train_s_per_model``, ``infer_s_per_tomo``,
``peak_mib``, ``params`` and ``miss_causes`` (per class: true, missed and the count of each cause of
:mod:`cryopoint.viz.misses`, at the cross-fold thresholds). ``preds`` and ``crossfold_preds`` (the picks) are
left out of the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.compare_plan import BLOB, FINETUNED  # noqa: E402
from cryopoint.particles import PARTICLE_NAMES, PARTICLES  # noqa: E402

SCORED = [p.name for p in PARTICLES if p.weight > 0]
CURVE_METHODS = ("heatmap25d", "unet3d", FINETUNED)
STYLE = {"heatmap25d": ("tab:blue", "o"), "unet3d": ("tab:orange", "s"), FINETUNED: ("tab:green", "^")}


def _curve_rows(rows: list[dict], source: str, method: str) -> list[dict]:
    out = [
        r
        for r in rows
        if r["source"] == source and r["method"] == method and r["preprocess"] == "none" and _variant(r) == "none"
    ]
    return sorted(out, key=lambda r: r["steps"] or 0)


def _variant(r: dict) -> str:
    """A row's recipe variant (``--variant``), ``"none"`` for the plain recipe (and rows from before variants)."""
    return r.get("variant", "none")


def _variant_pairs(rows: list[dict], meta: dict) -> list[tuple[dict, dict]]:
    """``(plain, variant)`` row pairs at the variants' steps, per source, in run order."""
    steps = meta.get("variant_steps")
    pairs = []
    for src in _sources(rows):
        plain = next((r for r in _curve_rows(rows, src, "heatmap25d") if r["steps"] == steps), None)
        if plain is None:
            continue
        pairs += [(plain, r) for r in rows if r["source"] == src and _variant(r) != "none"]
    return pairs


def _blob(rows: list[dict], source: str, preprocess: str = "none") -> dict | None:
    return next(
        (r for r in rows if r["source"] == source and r["method"] == BLOB and r["preprocess"] == preprocess), None
    )


def _sources(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["source"] for r in rows))


def uncertainty(counts: dict[str, int]) -> str:
    """A sentence on how far one particle moves a class's score, from the true counts of the scored classes."""
    scored = {n: c for n, c in counts.items() if n in SCORED}
    rare = min(scored, key=scored.get)
    n = scored[rare]
    if n == 0:
        return f"{rare} has no true particle here: its F-beta measures nothing, and neither do small differences."
    return (
        f"The rarest scored class, {rare}, has {n} true particles: one particle found or missed moves its recall "
        f"by {1 / max(n, 1):.2f} and, at its weight, the weighted F-beta by up to about "
        f"{_weight(rare) / sum(_weight(k) for k in SCORED) / max(n, 1):.3f}. With one seed and one split of "
        "this few tomograms, read differences of a few hundredths in weighted F-beta as noise."
    )


def _weight(name: str) -> float:
    return next(p.weight for p in PARTICLES if p.name == name)


def gap_interval(a: dict, b: dict) -> str:
    """`` [lo, hi]``: the 90 % interval of row ``a``'s cross-fold weighted score minus row ``b``'s, from a paired
    bootstrap over the tomograms (``run_counts``); empty when a row lacks them (results of older versions)."""
    if a.get("runs") is None or a.get("runs") != b.get("runs"):
        return ""
    from benchmarks.bench_common import bootstrap_fbeta_gap

    weights = [p.weight for p in PARTICLES]
    g = bootstrap_fbeta_gap(a["run_counts"], b["run_counts"], weights=weights)
    return f" [{float(g['lo']):+.3f}, {float(g['hi']):+.3f}]"


def verdict(rows: list[dict], meta: dict) -> list[str]:
    """Plain sentences on the issue's goal, computed from the numbers (no spin)."""
    lines = []
    for src in _sources(rows):
        hm, un = _curve_rows(rows, src, "heatmap25d"), {r["steps"]: r for r in _curve_rows(rows, src, "unet3d")}
        pairs = [(h["steps"], h["score_crossfold"], un[h["steps"]]["score_crossfold"]) for h in hm if h["steps"] in un]
        spans = {h["steps"]: gap_interval(h, un[h["steps"]]) for h in hm if h["steps"] in un}
        if pairs:
            behind = [s for s, h, u in pairs if h <= u]
            unpaired = sorted({h["steps"] for h in hm} ^ set(un))
            lines.append(
                f"- {src}, heatmap25d vs unet3d (cross-fold weighted F-beta, equal steps and crop; in brackets the "
                "90 % interval of the gap from resampling tomograms): "
                + ", ".join(f"{s} steps {h:.3f} vs {u:.3f} ({h - u:+.3f}{spans[s]})" for s, h, u in pairs)
                + (
                    " — **heatmap25d ahead at every budget**."
                    if not behind
                    else f" — **goal NOT met**: not ahead at {', '.join(map(str, behind))} steps."
                )
                + (
                    f" Not compared at {', '.join(map(str, unpaired))} steps: only one of the two networks was "
                    "trained there."
                    if unpaired
                    else ""
                )
            )
        blob = _blob(rows, src)
        if hm and blob:
            top = hm[-1]
            margins = {
                n: top["per_class"][n]["fbeta_crossfold"] - blob["per_class"][n]["fbeta_crossfold"] for n in SCORED
            }
            weak = [n for n, m in margins.items() if m < 0.2]
            lines.append(
                f"- {src}, heatmap25d at {top['steps']} steps vs blob, per scored class (cross-fold F-beta): "
                + ", ".join(f"{k} {v:+.3f}" for k, v in margins.items())
                + (" — every class by >= 0.2." if not weak else f" — under 0.2 on {', '.join(weak)}.")
            )
        ft = {r["steps"]: r for r in _curve_rows(rows, src, FINETUNED)}
        both = [(h["steps"], ft[h["steps"]]["score_crossfold"] - h["score_crossfold"]) for h in hm if h["steps"] in ft]
        if both:
            lines.append(
                f"- {src}, fine-tuned minus from scratch (cross-fold): "
                + ", ".join(f"{s} steps {d:+.3f}" for s, d in both)
                + " (the fine-tuned network had the pretraining on top; see Transfer)."
            )
        for plain, var in _variant_pairs(rows, meta):
            if var["source"] != src:
                continue
            d = var["score_crossfold"] - plain["score_crossfold"]
            lines.append(
                f"- {src}, heatmap25d with **{_variant(var)}** vs the plain recipe at {var['steps']} steps "
                f"(cross-fold): "
                f"{var['score_crossfold']:.3f} vs {plain['score_crossfold']:.3f} ({d:+.3f}; tuned OOF "
                f"{var['score']:.3f} vs {plain['score']:.3f}, {var['score'] - plain['score']:+.3f})."
            )
    return lines


def _head(counts: dict[str, int], first: str = "method | steps") -> list[str]:
    cls = " | ".join(f"{n} (n={counts[n]})" for n in SCORED)
    head = f"| {first} | cross-fold | tuned OOF | {cls} | train min / model | infer s / tomo | peak MiB | params (M) |"
    return [head, "|" + "---|" * (head.count("|") - 1)]


def _row(r: dict, label: str | None = None) -> str:
    label = label or f"{r['method']} | {r['steps'] or '—'}"
    per = " | ".join(f"{r['per_class'][n]['fbeta_crossfold']:.3f}" for n in SCORED)
    return (
        f"| {label} | **{r['score_crossfold']:.3f}** | {r['score']:.3f} | {per} | {r['train_s_per_model'] / 60:.1f} | "
        f"{r['infer_s_per_tomo']:.2f} | {r['peak_mib']:.0f} | {r['params'] / 1e6:.2f} |"
    )


def _transfer_lines(rows: list[dict], meta: dict) -> list[str]:
    pre, b = meta.get("pretrain"), meta["budget"]
    if not pre:
        return []
    minutes = f", {pre['train_s'] / 60:.1f} min" if pre.get("train_s") is not None else ""
    steps = pre.get("steps")
    before = pre.get("continued_from")
    earlier = (
        f" (its last training only: that one started from `{before}`, whose own training is not counted here)"
        if before
        else ""
    )
    lines = [
        "## Transfer: pretrained on another corpus, then fine-tuned",
        "",
        f"Pretrained network: `{pre['spec']}` ({pre['checkpoint']}), trained on {pre['corpus']}, "
        f"{steps if steps is not None else 'an unknown number of'} steps{earlier}{minutes}. Every fine-tuned "
        "row starts from this whole network (`train.init_from`: encoder, decoder, head) and then trains exactly "
        "the steps of its from-scratch row on the target source (same crops, batch, folds and schedule length; "
        f"learning rate {b['finetune_lr']:g} instead of {b['lr']:g}). **It is not equal budget**: counting the "
        f"pretraining, a fine-tuned row at N steps cost N + {steps if steps is not None else '?'}"
        f"{' or more' if before else ''} steps (the pretraining is done once and shared by every source and "
        "budget; its minutes are not on the figure's x axis). The pretraining never saw a tomogram of the target "
        "source.",
        "",
    ]
    for src in _sources(rows):
        hm = {r["steps"]: r for r in _curve_rows(rows, src, "heatmap25d")}
        ft = _curve_rows(rows, src, FINETUNED)
        if not ft:
            continue
        lines += [
            f"**{src}** (cross-fold weighted F-beta; tuned OOF in brackets):",
            "",
            "| steps on the target | from scratch | fine-tuned | difference |",
            "|---|---|---|---|",
        ]
        for r in ft:
            h = hm.get(r["steps"])
            scratch = f"{h['score_crossfold']:.3f} ({h['score']:.3f})" if h else "—"
            diff = f"{r['score_crossfold'] - h['score_crossfold']:+.3f}" if h else "—"
            lines.append(f"| {r['steps']} | {scratch} | {r['score_crossfold']:.3f} ({r['score']:.3f}) | {diff} |")
        lines.append("")
    return lines


def _preprocess_lines(rows: list[dict], meta: dict) -> list[str]:
    prep = [r for r in rows if r["preprocess"] != "none"]
    if not prep:
        return []
    src, steps = prep[0]["source"], meta["preprocess_steps"]
    counts = meta["sources"][src]["truth_counts"]
    plain = [r for r in _curve_rows(rows, src, "heatmap25d") if r["steps"] == steps]
    lines = [
        f"## Preprocessing ({src}, heatmap25d at {steps} steps, and blob)",
        "",
        "Each preprocessing was applied to every tomogram of the dataset once (a preprocessed copy), so training, "
        "validation and inference all see the same input; the engine's usual normalisation follows it. "
        "Preprocessing seconds per tomogram are not in the inference column:",
        "",
        *[f"- `{k}`: {v}" for k, v in meta["preprocessings"].items()],
        "",
        *_head(counts, "method | preprocessing"),
    ]
    blob = _blob(rows, src)
    ordered = [*([blob] if blob else []), *[r for r in prep if r["method"] == BLOB]]
    ordered += [*plain, *[r for r in prep if r["method"] != BLOB]]
    for r in ordered:
        extra = f" ({r['prep_s_per_tomo']:.1f} s/tomo)" if "prep_s_per_tomo" in r else ""
        lines.append(_row(r, f"{r['method']} | {r['preprocess']}{extra}"))
    return [*lines, ""]


def _variant_lines(rows: list[dict], meta: dict) -> list[str]:
    """Recipe variants beside the plain recipe at the same steps, per source: scores, P / R, misses."""
    pairs = _variant_pairs(rows, meta)
    if not pairs:
        return []
    lines = [
        f"## Recipe variants (heatmap25d at {meta['variant_steps']} steps, same data, folds, seed and budget)",
        "",
        *[f"- **{k}**: `{' '.join(v)}`" for k, v in meta.get("variants", {}).items()],
        "",
    ]
    for src in _sources(rows):
        mine = [(p, v) for p, v in pairs if p["source"] == src]
        if not mine:
            continue
        counts = meta["sources"][src]["truth_counts"]
        plain = mine[0][0]
        lines += [f"### {src}", "", *_head(counts, "recipe | steps"), _row(plain, f"plain | {plain['steps']}")]
        lines += [_row(v, f"{_variant(v)} | {v['steps']}") for _, v in mine]
        lines += ["", "Cross-fold precision / recall per scored class, and missed of true (no peak near):", ""]
        lines += ["| recipe | " + " | ".join(SCORED) + " |", "|" + "---|" * (len(SCORED) + 1)]
        for r in [mine[0][0], *[v for _, v in mine]]:
            cells = []
            for n in SCORED:
                c, m = r["per_class"][n], r.get("miss_causes", {}).get(n)
                miss = f", {m['missed']}/{m['true']} ({m['no peak']})" if m else ""
                cells.append(f"{c['precision_crossfold']:.2f} / {c['recall_crossfold']:.2f}{miss}")
            lines.append(f"| {_variant(r) if _variant(r) != 'none' else 'plain'} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _miss_lines(rows: list[dict]) -> list[str]:
    """Why each method's misses were missed, per scored class, at its largest budget (cross-fold thresholds)."""
    chosen = [
        r
        for src in _sources(rows)
        for r in [_blob(rows, src), *[(_curve_rows(rows, src, m) or [None])[-1] for m in CURVE_METHODS]]
        if r and r.get("miss_causes")
    ]
    if not chosen:
        return []
    lines = [
        "## Why particles were missed (cross-fold thresholds, each method's largest budget)",
        "",
        "Per scored class: missed of true, then (below threshold, off-centre, other class, no peak), judged "
        "against the picks scoring at least half their fold's threshold. *Below threshold*: a pick of the class "
        "within the match distance scored under its threshold (halving it would recover the particle); "
        "*off-centre*: the "
        "nearest pick of the class lies beyond the match distance but within twice it (seen, misplaced); *other "
        "class*: only another class's kept pick on it; *no peak*: nothing near (`cryopoint.viz.misses`).",
        "",
        "| source | method | " + " | ".join(SCORED) + " |",
        "|" + "---|" * (len(SCORED) + 2),
    ]
    for r in chosen:
        cells = []
        for n in SCORED:
            c = r["miss_causes"].get(n)  # None: no true particle of the class in this source
            if c is None:
                cells.append("-")
                continue
            counts = ", ".join(str(c[k]) for k in ("below threshold", "off-centre", "other class", "no peak"))
            cells.append(f"{c['missed']}/{c['true']} ({counts})")
        label = f"{r['method']}, {r['steps']} steps" if r["steps"] else r["method"]
        lines.append(f"| {r['source']} | {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_report(rows: list[dict], meta: dict, out: Path) -> Path:
    """``out.md`` (tables + verdict) and ``out.json`` (every number), both atomic. Returns the markdown path."""
    from cryopoint.io.atomic import atomic_write_text

    b = meta["budget"]
    enc = f" with encoder `{b['encoder']}`" if b["encoder"] else ""
    lines = [
        "# Head-to-head with learning curves: blob vs unet3d vs heatmap25d",
        "",
        "Command(s): " + " then ".join(f"`{c}`" for c in meta["commands"]),
        "",
        f"Budget **{meta['budget_name']}** (with the overrides above), finished {meta['date']} on {meta['machine']}, "
        f"{meta['wall_s'] / 60:.0f} min for this invocation ({len(meta['trained'])} trainings run, "
        f"{len(meta['reused'])} reused from the work folder).",
        "",
        f"Data: per source {b['runs']} synthetic runs of {tuple(b['shape'])} voxels, {b['folds']} whole-tomogram "
        f"folds. Both networks: steps {', '.join(map(str, b['curve']))} (each budget a full schedule of its own: "
        f"warm-up and cosine decay over its steps), batch {b['batch_size']}, crop {tuple(b['crop'])}, same engine, "
        f"seed and sampling; heatmap25d from `{b['heatmap_config']}`{enc}, unet3d channels "
        f"{tuple(b['unet_channels'])}.",
        "",
        *[
            f"- **{s}**: {m['description']}. True particles: "
            + ", ".join(f"{n} {c}" for n, c in m["truth_counts"].items())
            + f". {uncertainty(m['truth_counts'])}"
            for s, m in meta["sources"].items()
        ],
        "",
        "Weighted F-beta (β=4). **Cross-fold** (the headline): each fold's picks thresholded with per-class "
        "thresholds tuned on the other folds' out-of-fold picks. **Tuned OOF**: thresholds tuned on all pooled "
        "out-of-fold picks (optimistic: they see the answers). Per-class columns: cross-fold F-beta. Train "
        "minutes: one model (mean over folds), without the engine's validation pass. Inference seconds per "
        "tomogram: the engine's final validation pass (EMA weights, sliding window, NMS, threshold tuning) over "
        "its runs; blob: LoG + NMS. Peak memory: resident memory above the process's level when the training "
        "started (GPU: max allocated); the largest over folds.",
        "",
        *[f"- **Note:** {n}" for n in meta.get("notes", [])],
        *(
            ["- **Not trained** (`--report-only` scores finished trainings only): " + "; ".join(meta["missing"]) + "."]
            if meta.get("missing")
            else []
        ),
        "",
        "## Verdict",
        "",
        *verdict(rows, meta),
        "",
        f"![learning curves]({meta['figure']})",
        "",
    ]
    for src in _sources(rows):
        counts = meta["sources"][src]["truth_counts"]
        lines += [f"## Learning curves: {src}", "", *_head(counts)]
        blob = _blob(rows, src)
        lines += [_row(blob)] if blob else []
        lines += [_row(r) for m in CURVE_METHODS for r in _curve_rows(rows, src, m)]
        lines.append("")
    lines += _transfer_lines(rows, meta)
    lines += _preprocess_lines(rows, meta)
    lines += _variant_lines(rows, meta)
    lines += ["## Per-class precision / recall / F-beta (cross-fold thresholds, each method's largest budget)", ""]
    lines += ["| source | method | " + " | ".join(PARTICLE_NAMES) + " |", "|" + "---|" * (len(PARTICLE_NAMES) + 2)]
    for src in _sources(rows):
        chosen = [_blob(rows, src), *[(_curve_rows(rows, src, m) or [None])[-1] for m in CURVE_METHODS]]
        for r in filter(None, chosen):
            cells = [
                f"{c['precision_crossfold']:.2f} / {c['recall_crossfold']:.2f} / {c['fbeta_crossfold']:.2f}"
                for c in r["per_class"].values()
            ]
            label = f"{r['method']}, {r['steps']} steps" if r["steps"] else r["method"]
            lines.append(f"| {src} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "beta-amylase has weight 0 (not scored) but is trained on and reported.", ""]
    lines += _miss_lines(rows)
    md = out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines))
    kept = [{k: v for k, v in r.items() if k not in ("preds", "crossfold_preds")} for r in rows]
    atomic_write_text(out.with_suffix(".json"), json.dumps({**meta, "rows": kept}, indent=2) + "\n")
    return md


def write_figure(rows: list[dict], meta: dict, path: Path) -> Path:
    """Cross-fold weighted F-beta against training minutes per model, one panel per source (atomic PNG)."""
    from cryopoint.io.atomic import atomic_path

    sources = _sources(rows)
    fig, axes = plt.subplots(1, len(sources), figsize=(max(7.5, 5.6 * len(sources)), 5.4), squeeze=False, sharey=True)
    top = max([0.1, *(r["score_crossfold"] for r in rows)]) * 1.15
    for ax, src in zip(axes[0], sources):
        for method in CURVE_METHODS:
            pts = _curve_rows(rows, src, method)
            if not pts:
                continue
            colour, marker = STYLE[method]
            x = [r["train_s_per_model"] / 60 for r in pts]
            y = [r["score_crossfold"] for r in pts]
            label = method
            if method == FINETUNED and meta.get("pretrain"):
                more = "or more " if meta["pretrain"].get("continued_from") else ""
                label += f" (+{meta['pretrain'].get('steps')} {more}pretraining steps, not on x)"
            ax.plot(x, y, marker=marker, color=colour, label=label, linewidth=1.8, markersize=6)
            for xi, yi, r in zip(x, y, pts):
                ax.annotate(
                    str(r["steps"]), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8, color=colour
                )
        variants = [r for r in rows if r["source"] == src and _variant(r) != "none"]
        for k, r in enumerate(variants):
            label = f"{r['method']} + {_variant(r)} ({r['steps']} steps)"
            x, y = r["train_s_per_model"] / 60, r["score_crossfold"]
            ax.plot([x], [y], linestyle="none", marker="*", markersize=13, color=f"C{3 + k}", label=label)
        blob = _blob(rows, src)
        if blob:
            ax.axhline(blob["score_crossfold"], color="0.4", linestyle="--", label=f"{BLOB} (no training)")
        ax.set_title(f"{src}: {sum(meta['sources'][src]['truth_counts'][n] for n in SCORED)} scored particles")
        ax.set_xlabel("training minutes per model (labels: steps)")
        ax.set_ylim(0, top)
        xs = [r["train_s_per_model"] / 60 for r in rows if r["source"] == src and r["method"] != BLOB]
        ax.set_xlim(0, max([1e-3, *xs]) * 1.12)  # room for the markers at the right edge
        ax.grid(alpha=0.3)
        # below the panel: inside, it covered the curves (fine-tuned rows sit high on B)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    axes[0][0].set_ylabel("weighted F-beta, cross-fold thresholds")
    fig.suptitle(f"Learning curves, budget {meta['budget_name']} ({meta['machine']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
