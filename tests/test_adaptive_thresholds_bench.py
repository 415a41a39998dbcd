"""benchmarks/adaptive_thresholds.py at smoke size: alpha chosen on development data, and the saved copy makes
cryopoint.detect keep exactly the picks the benchmark scored (the cap alone: the copy's noise-tail rule off)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd


def test_selection_report_and_saved_copy_agree_with_detect(tmp_path):
    import cryopoint
    from benchmarks import adaptive_thresholds as bench
    from benchmarks.generalization import BUDGETS, source_root
    from cryopoint.checkpoint import set_thresholds
    from cryopoint.io import list_runs, tomogram_path
    from cryopoint.post.thresholds import apply_thresholds
    from cryopoint.weights import default_checkpoint

    out, copy, cache = tmp_path / "adaptive", tmp_path / "adaptive.pt", str(tmp_path / "cache")
    # The shipped weights with fixed low thresholds: the reference density is what they keep on the smoke
    # reference runs, and the shipped thresholds may keep nothing on runs that small (a zero density caps nothing).
    model = tmp_path / "model.pt"
    shutil.copyfile(default_checkpoint(), model)
    set_thresholds(model, {name: 0.1 for name in cryopoint.particles.PARTICLE_NAMES})
    argv = ["--budget", "smoke", "--ref-runs", "2", "--test-runs", "2", "--alphas", "0.05", "0.1"]
    bench.main([*argv, "--model", str(model), "--cache-dir", cache, "--out", str(out), "--save-as", str(copy)])
    result = json.loads(out.with_suffix(".json").read_text())
    means = result["development_mean"]
    assert result["selected_alpha"] == max((0.05, 0.1), key=lambda a: (means[str(a)], a))
    assert set(result["development"]) == {"A", "B", "C", "reference"}
    assert means["0.1"] == np.mean([r["alpha"]["0.1"] for r in result["development"].values()])
    md = out.with_suffix(".md").read_text()
    assert f"Selected: **alpha {result['selected_alpha']:g}**" in md and out.with_suffix(".png").is_file()

    det = cryopoint.load(copy)
    assert det.config.post.adaptive_alpha == result["selected_alpha"]
    assert det.kept_density == result["kept_density"]
    root = source_root("B", BUDGETS["smoke"], cache, fresh_runs=2)
    det = det.with_noise_tail(False)  # the copy keeps the noise-tail rule too; the benchmark scores the cap alone
    # Low floors (0.05 for every class, not the shipped ones): the smoke runs are small, and with the shipped floors
    # they hold about one pick per class, which no cap (at least one pick per class) can remove. Fixed rather than a
    # fraction of the shipped thresholds, so that a new default file cannot make the cap idle. Detect and the
    # benchmark get the same floors.
    det = dataclasses.replace(det, thresholds={k: 0.05 for k in det.thresholds})
    kept, capped = 0, 0
    for run in sorted(list_runs(root)):  # every run: a single small one may hold too few picks for the cap to bite
        path = tomogram_path(root, run)
        peaks = cryopoint.detect(path, det, thresholds=0.0).assign(experiment=run)
        expected = bench.adapted(
            peaks,
            det.default_thresholds,
            det.kept_density,
            bench.run_volumes(root, [run]),
            det.config.post.adaptive_alpha,
        )
        got = cryopoint.detect(path, det)  # the copy applies its own per-tomogram thresholds
        key = ["particle_type", "x", "y", "z"]
        pd.testing.assert_frame_equal(
            got[key].sort_values(key).reset_index(drop=True), expected[key].sort_values(key).reset_index(drop=True)
        )
        kept += len(apply_thresholds(peaks, det.default_thresholds))
        capped += len(got)
    assert capped < kept  # small multiples: the cap removed picks, so the comparisons above mean something
