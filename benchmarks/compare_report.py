"""The report of ``benchmarks/compare.py``: the markdown tables, the plain-words verdict on the issue's goal, JSON.

Every method's result is a dict with ``score`` (weighted F-beta at thresholds tuned on the pooled out-of-fold
predictions), ``score_crossfold``, ``per_class`` (precision, recall, fbeta, tp, fp, fn per class), ``train_s``,
``infer_s_per_tomo``, ``peak_mib`` and ``params``.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryopoint.particles import PARTICLE_NAMES, PARTICLES


def _summary_row(label: str, r: dict) -> str:
    scored = [p.name for p in PARTICLES if p.weight > 0]
    per = " | ".join(f"{r['per_class'][n]['fbeta']:.3f}" for n in scored)
    return (
        f"| {label} | **{r['score']:.3f}** | {r['score_crossfold']:.3f} | {per} | {r['train_s']:.0f} | "
        f"{r['infer_s_per_tomo']:.2f} | {r['peak_mib']:.0f} | {r['params'] / 1e6:.2f} |"
    )


def verdict(results: dict) -> list[str]:
    """Plain sentences on the issue's goal, computed from the numbers (no spin)."""
    lines = []
    hm, un, bl = results.get("heatmap25d"), results.get("unet3d + NMS"), results.get("blob (LoG)")
    if hm and un:
        best_un = max(un["score"], results.get("unet3d + components", un)["score"])
        beats = hm["score"] > best_un and hm["score_crossfold"] > un["score_crossfold"]
        lines.append(
            f"- heatmap25d vs unet3d at equal steps and crop: {hm['score']:.3f} vs {best_un:.3f} (tuned OOF), "
            f"{hm['score_crossfold']:.3f} vs {un['score_crossfold']:.3f} (cross-fold) — "
            + ("**goal met**." if beats else "**goal NOT met**: the heatmap model does not beat the 3D U-Net here.")
        )
    if hm and bl:
        margins = {
            p.name: hm["per_class"][p.name]["fbeta"] - bl["per_class"][p.name]["fbeta"] for p in PARTICLES if p.weight
        }
        worst = min(margins, key=margins.get)
        wide = all(m >= 0.2 for m in margins.values())
        lines.append(
            "- heatmap25d vs blob, per scored class F-beta margin: "
            + ", ".join(f"{k} {v:+.3f}" for k, v in margins.items())
            + (" — **goal met** (every class by >= 0.2)." if wide else f" — **goal NOT met** (smallest: {worst}).")
        )
    if "unet3d + NMS" in results and "unet3d + components" in results:
        a, c = results["unet3d + NMS"], results["unet3d + components"]
        better = "NMS on class probabilities" if a["score"] >= c["score"] else "connected components"
        lines.append(f"- unet3d centroids: NMS {a['score']:.3f} vs connected components {c['score']:.3f}: {better}.")
    return lines


def write_report(results: dict, extras: dict, meta: dict, out: Path) -> None:
    """``out.md`` (tables + verdict) and ``out.json`` (every number), both atomic."""
    from cryopoint.io.atomic import atomic_write_text

    scored = [p.name for p in PARTICLES if p.weight > 0]
    head = "| method | weighted F-beta (tuned OOF) | cross-fold | " + " | ".join(scored)
    head += " | train s | infer s/tomo | peak MiB | params (M) |"
    sep = "|" + "---|" * (7 + len(scored))
    b = meta["budget"]
    enc = f" with encoder `{b['encoder']}`" if b["encoder"] else ""
    lines = [
        "# Head-to-head: blob vs unet3d vs heatmap25d",
        "",
        "Command(s): " + " then ".join(f"`{c}`" for c in meta["commands"]),
        "",
        f"Budget **{meta['budget_name']}** (with the overrides above), finished {meta['date']} on {meta['machine']}.",
        "",
        f"Data: synthetic `realistic` preset, {b['runs']} runs of {tuple(b['shape'])} voxels, {b['folds']} "
        f"whole-tomogram folds. Both networks: {b['steps']} steps, batch {b['batch_size']}, crop {tuple(b['crop'])}, "
        f"same engine; heatmap25d from `{b['heatmap_config']}`{enc}, unet3d channels {tuple(b['unet_channels'])}.",
        "True particles scored (all runs, out of fold): "
        + ", ".join(f"{n} {c}" for n, c in meta["truth_counts"].items())
        + ". With this few, a class's F-beta moves a lot with one particle: read small differences as noise.",
        "Weighted F-beta (β=4) with thresholds tuned on all pooled out-of-fold predictions (optimistic, the "
        "challenge CV habit) and with cross-fold thresholds (each fold thresholded by the other folds: honest). "
        "Train seconds exclude the engine's validation passes. Inference seconds per tomogram: the engine's "
        "final validation pass (EMA weights, Gaussian-blended sliding window, NMS, threshold tuning) divided by "
        "its runs; blob: LoG + NMS. Peak memory: resident memory above the process baseline during training and "
        "validation (blob: detection), sampled every 20 ms (GPU: max allocated); memory the process already "
        "holds from an earlier row is not counted again.",
        "",
        *[f"- **Note:** {n}" for n in meta.get("notes", [])],
        "",
        "## Main comparison (per scored class: F-beta at the tuned thresholds)",
        "",
        head,
        sep,
        *[_summary_row(k, v) for k, v in results.items()],
        "",
        "## Verdict",
        "",
        *verdict(results),
        "",
    ]
    for title, rows in extras.items():
        lines += [f"## {title}", "", head, sep, *[_summary_row(k, v) for k, v in rows.items()], ""]
    lines += ["## Per-class precision / recall / F-beta (tuned OOF thresholds)", ""]
    lines += ["| method | " + " | ".join(PARTICLE_NAMES) + " |", "|" + "---|" * (len(PARTICLE_NAMES) + 1)]
    extra_rows = {f"{t}: {m}": r for t, rows in extras.items() for m, r in rows.items()}
    # Extra rows that repeat a main row (the "no low-pass" / "realistic only" references) are listed once.
    repeats = {k for k, r in extra_rows.items() if any(r["per_class"] == m["per_class"] for m in results.values())}
    for k, v in {**results, **{k: r for k, r in extra_rows.items() if k not in repeats}}.items():
        cells = [f"{c['precision']:.2f} / {c['recall']:.2f} / {c['fbeta']:.2f}" for c in v["per_class"].values()]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "beta-amylase has weight 0 (not scored) but is trained on and reported.", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines))
    strip = lambda d: {k: {kk: vv for kk, vv in v.items() if kk != "preds"} for k, v in d.items()}  # noqa: E731
    payload = {**meta, "results": strip(results), "extras": {t: strip(r) for t, r in extras.items()}}
    atomic_write_text(out.with_suffix(".json"), json.dumps(payload, indent=2) + "\n")
