"""benchmarks/compare.py: scoring helpers on hand-made tables, the report, and the whole benchmark at smoke budget."""

import json

import numpy as np
import pandas as pd
import pytest

from cryopoint.particles import PARTICLE_NAMES, PARTICLES
from tests._independent_metric import score_by_hand

SCORED = [p.name for p in PARTICLES if p.weight > 0]
FT = "heatmap25d fine-tuned"


@pytest.fixture(scope="module")
def compare():
    from benchmarks import compare as module  # a package module: `python -m benchmarks.compare`

    return module


def _truth_and_preds():
    rows, preds = [], []
    for run in ("r0", "r1"):
        for i, p in enumerate(PARTICLES):
            xyz = (100.0 * i, 50.0, 50.0)
            rows.append((run, p.name, *xyz))
            preds.append((run, p.name, *xyz, 0.9))  # a confident hit
            preds.append((run, p.name, xyz[0], 900.0, 900.0, 0.2))  # a weak false positive
    cols = ["experiment", "particle_type", "x", "y", "z"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(preds, columns=[*cols, "score"])


def test_evaluate_tunes_and_cross_tunes(compare):
    truth, preds = _truth_and_preds()
    res = compare.evaluate(preds, truth, {"r0": 0, "r1": 1})
    assert res["score"] == pytest.approx(1.0) and res["score_crossfold"] == pytest.approx(1.0)
    assert set(res["per_class"]) == set(PARTICLE_NAMES)
    assert all(0.2 < t <= 0.9 for t in res["thresholds"].values())
    # Fold r1 has only weak picks: thresholds tuned on r0 (0.9) reject them, so cross-fold is lower.
    weak = preds.assign(score=np.where(preds["experiment"] == "r1", preds["score"] * 0.1, preds["score"]))
    res = compare.evaluate(weak, truth, {"r0": 0, "r1": 1})
    assert res["score_crossfold"] < res["score"]
    # fold1 (r1) is thresholded with what r0 alone says (0.9), fold0 with what r1 alone says (0.09 at most).
    assert res["thresholds_by_fold"]["fold1"]["ribosome"] == pytest.approx(0.9)
    assert res["thresholds_by_fold"]["fold0"]["ribosome"] == pytest.approx(0.09)
    assert res["per_class"]["ribosome"]["recall_crossfold"] == pytest.approx(0.5)
    # The kept picks are r0's at 0.09 (all) and none of r1's (all under 0.9): r1's particles are missed. Their
    # own picks (0.09) score under half of 0.9, so they are not counted as near misses: no peak. The miss counts
    # are the cross-fold false negatives.
    kept = res["crossfold_preds"]
    assert set(kept["experiment"]) == {"r0"} and len(kept) == 2 * len(PARTICLES)
    for n in PARTICLE_NAMES:
        c = res["miss_causes"][n]
        assert c["true"] == 2 and c["missed"] == 1 == c["no peak"], n
        assert c["true"] * (1 - res["per_class"][n]["recall_crossfold"]) == pytest.approx(c["missed"]), n
    # At 0.5 instead, r1's hits (0.5) miss a 0.9 threshold but clear half of it: below threshold.
    half = preds.assign(score=np.where(preds["experiment"] == "r1", 0.5, preds["score"]))
    res = compare.evaluate(half, truth, {"r0": 0, "r1": 1})
    assert all(res["miss_causes"][n]["below threshold"] == 1 == res["miss_causes"][n]["missed"] for n in SCORED)


def _row(source, method, steps, total, preprocess="none"):
    per = {
        n: {"precision": 0.5, "recall": 0.5, "fbeta": total, "tp": 1, "fp": 1, "fn": 1}
        | {"precision_crossfold": 0.4, "recall_crossfold": 0.4, "fbeta_crossfold": total}
        for n in PARTICLE_NAMES
    }
    return {
        "source": source,
        "method": method,
        "steps": steps,
        "preprocess": preprocess,
        "score": total + 0.05,
        "score_crossfold": total,
        "per_class": per,
        "train_s": 120.0,
        "train_s_per_model": 60.0 * (steps or 0) / 100,
        "infer_s_per_tomo": 0.5,
        "peak_mib": 10.0,
        "params": 1000,
        "miss_causes": {
            n: {"true": 10, "missed": 6, "below threshold": 1, "off-centre": 2, "other class": 0, "no peak": 3}
            for n in PARTICLE_NAMES
        },
    }


def _meta(compare):
    import dataclasses

    counts = dict(zip(PARTICLE_NAMES, (42, 8, 14, 45, 27, 17)))
    src = {"description": "d", "root": "/x", "folds": {}, "truth_counts": counts}
    return {
        "commands": ["first"],
        "notes": [],
        "budget_name": "smoke",
        "budget": json.loads(json.dumps(dataclasses.asdict(compare.BUDGETS["smoke"]))),
        "preprocess_steps": 100,
        "preprocessings": {"bandpass": "a band-pass"},
        "sources": {"realistic": src, "B": src},
        "machine": "here",
        "date": "now",
        "wall_s": 60.0,
        "trained": ["a"],
        "reused": [],
        "figure": "compare_curves.png",
        "pretrain": {"spec": "randomized", "checkpoint": "p.pt", "corpus": "c", "steps": 1000, "train_s": 600.0},
    }


def test_report_tables_verdict_and_figure(compare, tmp_path):
    from benchmarks.compare_report import verdict, write_figure, write_report

    rows = []
    for src in ("realistic", "B"):
        rows.append(_row(src, "blob (LoG)", None, 0.1))
        for steps, h, u, f in ((100, 0.3, 0.35, 0.4), (200, 0.5, 0.4, 0.55)):
            rows += [_row(src, "heatmap25d", steps, h), _row(src, "unet3d", steps, u)]
            rows.append(_row(src, "heatmap25d fine-tuned", steps, f))
    del rows[4]["miss_causes"]["apo-ferritin"]  # realistic heatmap25d 200 steps: as if no apo-ferritin there
    rows += [
        _row("realistic", "blob (LoG)", None, 0.12, "bandpass"),
        _row("realistic", "heatmap25d", 100, 0.2, "bandpass"),
    ]
    meta = _meta(compare)
    lines = verdict(rows, meta)
    # unet3d leads at 100 steps: said plainly, with the budget named.
    assert "goal NOT met**: not ahead at 100 steps" in lines[0] and "+0.100" in lines[0]
    assert "fine-tuned minus from scratch" in lines[2] and "100 steps +0.100" in lines[2]
    md = write_report(rows, meta, tmp_path / "compare")
    text = md.read_text()
    assert "## Learning curves: realistic" in text and "## Learning curves: B" in text
    assert "apo-ferritin (n=42)" in text and "rarest scored class, beta-galactosidase, has 14 true particles" in text
    assert "| heatmap25d | 200 | **0.500** | 0.550 |" in text  # cross-fold first, tuned OOF beside it
    assert "**It is not equal budget**" in text and "N + 1000 steps" in text
    assert "not counted here" not in text  # a network trained in one go: its steps are all of them
    meta["pretrain"]["continued_from"] = "stage3.pt"  # a staged network: its config holds the last stage only
    text = write_report(rows, meta, tmp_path / "staged").read_text()
    assert "1000 steps (its last training only: that one started from `stage3.pt`" in text
    assert "N + 1000 or more steps" in text
    assert "| heatmap25d | bandpass |" in text and "| heatmap25d | none |" in text
    assert "## Why particles were missed" in text
    assert "| realistic | heatmap25d, 200 steps | - | " in text  # apo-ferritin: no truth in this source's row
    assert "| B | heatmap25d, 200 steps | " + " | ".join(["6/10 (1, 2, 0, 3)"] * len(SCORED)) + " |" in text
    payload = json.loads((tmp_path / "compare.json").read_text())
    assert len(payload["rows"]) == len(rows) and "preds" not in payload["rows"][0]
    assert payload["rows"][0]["miss_causes"]["ribosome"]["no peak"] == 3
    png = write_figure(rows, meta, tmp_path / "compare_curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_verdict_names_budgets_only_one_network_reached(compare):
    from benchmarks.compare_report import verdict

    rows = [_row("B", "blob (LoG)", None, 0.1)]
    rows += [_row("B", "heatmap25d", 100, 0.3), _row("B", "unet3d", 100, 0.2), _row("B", "heatmap25d", 200, 0.5)]
    line = verdict(rows, _meta(compare))[0]
    assert "100 steps 0.300 vs 0.200 (+0.100)" in line and "200 steps 0.5" not in line
    assert "Not compared at 200 steps: only one of the two networks was trained there." in line


def test_report_only_trains_nothing_and_lists_what_is_missing(compare, tmp_path):
    """After a kill with nothing finished: blob is scored, every network arm is listed as not trained."""
    out, work = tmp_path / "compare", tmp_path / "work"
    md = compare.main(
        ["--budget", "smoke", "--sources", "realistic", "--curve", "1", "--report-only", "--preprocess", "localnorm"]
        + ["--out", str(out), "--work", str(work), "--cache-dir", str(tmp_path / "cache")]
    )
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["trained"] == [] and not list(work.rglob("best.pt"))
    assert {r["method"] for r in payload["rows"]} == {"blob (LoG)"}  # plain and preprocessed blob only
    missing = payload["missing"]
    assert any(m.startswith("realistic/heatmap25d/s1 (no finished fold0)") for m in missing)
    assert any(m.startswith("realistic/unet3d/s1") for m in missing)
    assert any(m.startswith("realistic/heatmap25d-localnorm/s1") for m in missing)
    assert "the transfer arm (its pretraining has not finished)" in missing
    assert "**Not trained** (`--report-only`" in md.read_text()


def test_peak_rss_measures_an_allocation(compare):
    with compare.PeakRSS() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block.sum()
    assert mem.mib > 32


def test_preprocessings_reuse_the_appearance_filters(compare):
    from cryopoint.data import appearance

    vol = np.random.default_rng(0).normal(size=(16, 24, 24)).astype(np.float32)
    assert compare.largest_radius_voxels((10.0, 10.0, 10.0)) == pytest.approx(15.0)  # ribosome, 150 Å
    np.testing.assert_array_equal(
        compare.PREPROCESSINGS["bandpass"][1](vol, 5.0), appearance.bandpass_filter(vol, 1, 5)
    )
    np.testing.assert_array_equal(compare.PREPROCESSINGS["localnorm"][1](vol, 5.0), appearance.local_normalize(vol, 5))


@pytest.mark.slow
def test_smoke_curves_resume_preprocessing_and_transfer(compare, tmp_path):
    """Two sources at one budget, then realistic extended to two budgets: only the new budget is trained."""
    from cryopoint.io import read_truth
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    out, work = tmp_path / "compare", tmp_path / "work"
    common = ["--budget", "smoke", "--out", str(out), "--work", str(work), "--cache-dir", str(tmp_path / "cache")]
    common += ["--preprocess", "localnorm", "--preprocess-steps", "1"]
    compare.main([*common, "--sources", "realistic", "B", "--curve", "1"])
    first = json.loads(out.with_suffix(".json").read_text())
    # 2 sources x (heatmap25d, unet3d, fine-tuned) x 2 folds, 1 preprocessing x 2 folds, 1 pretraining.
    assert len(first["trained"]) == 12 + 2 + 1 and first["reused"] == []
    assert {(r["source"], r["method"]) for r in first["rows"] if r["steps"] == 1} >= {("B", "unet3d"), ("B", FT)}
    best = {p: p.stat().st_mtime_ns for p in work.rglob("best.pt")}
    assert len(best) == 15

    # Extended to a second budget on realistic: only the new budget is trained, the rest reused as it was.
    md = compare.main([*common, "--sources", "realistic", "--curve", "1", "2"])
    payload = json.loads(out.with_suffix(".json").read_text())
    assert len(payload["trained"]) == 6 and all("/realistic/" in p and "/s2/" in p for p in payload["trained"])
    assert sorted(payload["reused"]) == sorted(p for p in first["trained"] if "/B/" not in p)
    assert {p: p.stat().st_mtime_ns for p in best} == best  # nothing finished was trained again

    rows = {(r["source"], r["method"], r["steps"], r["preprocess"]): r for r in payload["rows"]}
    for src in ("realistic",):
        assert (src, "blob (LoG)", None, "none") in rows
        for method in ("heatmap25d", "unet3d", FT):
            for steps in (1, 2):
                r = rows[(src, method, steps, "none")]
                assert np.isfinite([r["score"], r["score_crossfold"], r["train_s_per_model"]]).all(), (src, method)
                assert r["infer_s_per_tomo"] > 0 and r["params"] > 0 and r["peak_mib"] >= 0
                assert all(np.isfinite(r["per_class"][n]["fbeta_crossfold"]) for n in PARTICLE_NAMES)
    for prep in ("localnorm",):
        assert rows[("realistic", "heatmap25d", 1, prep)]["prep_s_per_tomo"] > 0
        assert ("realistic", "blob (LoG)", None, prep) in rows
    assert payload["pretrain"]["steps"] == 2 and payload["pretrain"]["spec"] == "randomized"
    text = md.read_text()
    assert "## Learning curves: realistic" in text and "**It is not equal budget**" in text and "N + 2 steps" in text
    assert (out.parent / "compare_curves.png").read_bytes()[:4] == b"\x89PNG"

    # The cross-fold score is recomputed by hand from the saved picks: each fold at thresholds tuned on the
    # other fold's picks only, all kept picks scored by the independent metric.
    meta = payload["sources"]["realistic"]
    truth, folds = read_truth(meta["root"]), meta["folds"]
    for key, stem in (
        (("realistic", "heatmap25d", 2, "none"), "heatmap25d-2-steps"),
        (("realistic", "blob (LoG)", None, "none"), "blob-log"),
    ):
        res = rows[key]
        picks = pd.read_csv(work / "predictions" / "realistic" / f"{stem}.csv")
        assert set(picks["experiment"]) <= set(folds), key
        kept = []
        for k in sorted(set(folds.values())):
            mine = [r for r, f in folds.items() if f == k]
            rest = picks[~picks["experiment"].isin(mine)]
            thr = tune_thresholds(truth[truth["experiment"].isin(set(folds) - set(mine))], rest).thresholds
            assert thr == pytest.approx(res["thresholds_by_fold"][f"fold{k}"]), key
            kept.append(apply_thresholds(picks[picks["experiment"].isin(mine)], thr))
        assert res["score_crossfold"] == pytest.approx(score_by_hand(truth, pd.concat(kept))), key
        # ... and the saved cross-fold picks (what an honest report is drawn from) are exactly those kept.
        saved = pd.read_csv(work / "predictions" / "realistic" / f"{stem}.crossfold.csv")
        pd.testing.assert_frame_equal(
            saved.sort_values(["experiment", "particle_type", "x"]).reset_index(drop=True),
            pd.concat(kept).sort_values(["experiment", "particle_type", "x"]).reset_index(drop=True),
            check_dtype=False,
        )


def test_variant_rows_are_reported_beside_the_plain_recipe(compare, tmp_path):
    """A recipe variant (--variant) gets its own section and verdict line against the plain recipe at the same
    steps, and stays out of the learning curves."""
    from benchmarks.compare_report import verdict, write_report

    rows = [_row("B", "blob (LoG)", None, 0.1), _row("B", "heatmap25d", 100, 0.3), _row("B", "heatmap25d", 200, 0.4)]
    rows.append(_row("B", "heatmap25d", 100, 0.45) | {"variant": "hard negatives"})
    meta = _meta(compare) | {"variant_steps": 100, "variants": {"hard negatives": ["data.hard_negative_fraction=0.2"]}}
    lines = verdict(rows, meta)
    assert any("with **hard negatives** vs the plain recipe at 100 steps" in x and "0.450 vs 0.300 (+0.150" in x
               for x in lines)  # fmt: skip
    text = write_report(rows, meta, tmp_path / "compare").read_text()
    assert "## Recipe variants (heatmap25d at 100 steps" in text and "`data.hard_negative_fraction=0.2`" in text
    assert "| plain | 100 | **0.300** |" in text and "| hard negatives | 100 | **0.450** |" in text
    assert "| hard negatives | " + " | ".join(["0.40 / 0.40, 6/10 (3)"] * len(SCORED)) + " |" in text
    curve = text.split("## Learning curves: B")[1].split("##")[0]
    assert "**0.450**" not in curve and "**0.300**" in curve  # the variant is no point of the plain curve
    assert compare.row_label(rows[-1]) == "heatmap25d, 100 steps, hard negatives"
    from benchmarks.compare_report import write_figure

    png = write_figure(rows, meta, tmp_path / "curves.png")  # the variant is drawn as its own marker
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_only_lists_an_untrained_variant(compare, tmp_path):
    out, work = tmp_path / "compare", tmp_path / "work"
    compare.main(
        ["--budget", "smoke", "--sources", "B", "--curve", "1", "--report-only", "--preprocess", "--no-transfer"]
        + ["--variant", "hard negatives", "data.hard_negative_fraction=0.2"]
        + ["--out", str(out), "--work", str(work), "--cache-dir", str(tmp_path / "cache")]
    )
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["variants"] == {"hard negatives": ["data.hard_negative_fraction=0.2"]}
    assert any(m.startswith("B/heatmap25d-variant-hard-negatives/s1 (no finished fold0)") for m in payload["missing"])
    with pytest.raises(SystemExit):
        compare.main(["--budget", "smoke", "--variant", "no overrides"])


def test_the_gap_to_unet_carries_an_interval_over_tomograms(compare):
    from benchmarks.compare_report import gap_interval

    truth, preds = _truth_and_preds()
    folds = {"r0": 0, "r1": 1}
    good = compare.evaluate(preds, truth, folds)
    bad = compare.evaluate(preds[preds.score < 0.5], truth, folds)  # only the false positives
    assert good["runs"] == ["r0", "r1"] and np.asarray(good["run_counts"]).shape == (2, 3, len(PARTICLE_NAMES))
    span = gap_interval(good, bad)
    lo, hi = (float(v) for v in span.strip(" []").split(","))
    assert lo > 0.5 and hi <= 1.0  # every particle against none, on both tomograms
    assert gap_interval(good, good) == " [+0.000, +0.000]"
    assert gap_interval(good, {**bad, "runs": ["r0"]}) == ""  # other tomograms: no paired interval
