"""tools/tune_thresholds.py end to end on a challenge-layout store, and the curve figures."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from _figures import assert_png
from _layout_helpers import write_challenge_store
from _tool_helpers import run_tool

from cryopoint.checkpoint import catalogue_payload, load_checkpoint, save_checkpoint
from cryopoint.post.thresholds import tune_thresholds
from cryopoint.viz.curves import plot_fbeta_curves, plot_pr_curves

TOOL = Path(__file__).resolve().parents[1] / "tools" / "tune_thresholds.py"


@pytest.fixture
def store(tmp_path):
    """Truth in two runs and predictions: hits with high scores, misses with low ones, and one in-between."""
    root = tmp_path / "data"
    truth, _ = write_challenge_store(root, runs=("TS_a", "TS_b"), shape=(16, 40, 40))
    rng = np.random.default_rng(1)
    hits = truth.assign(score=rng.uniform(0.5, 1.0, len(truth)))
    misses = truth.assign(x=truth.x + 2000.0, score=rng.uniform(0.0, 0.4, len(truth)))
    preds = pd.concat([hits, misses], ignore_index=True)
    csv = tmp_path / "pred.csv"
    preds.to_csv(csv, index=False)
    return root, truth, preds, csv


def _run_main(argv):
    return run_tool(TOOL, argv)


def test_tool_writes_yaml_checkpoint_and_plot(store, tmp_path):
    root, truth, preds, csv = store
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        {
            "model_state": {"w": torch.zeros(1)},
            "config": {},
            "particles": catalogue_payload(),
            "voxel_size": [10.0] * 3,
        },
    )
    out, png = tmp_path / "th.yaml", tmp_path / "fbeta.png"
    argv = ["--predictions", str(csv), "--truth", str(root), "--out", str(out), "--checkpoint", str(ckpt)]
    assert _run_main([*argv, "--plot", str(png)]) == 0
    doc = yaml.safe_load(out.read_text())
    expected = tune_thresholds(truth, preds)
    assert doc["thresholds"] == pytest.approx(expected.thresholds)
    assert doc["score_after"] == pytest.approx(1.0) and doc["score_after"] > doc["score_before"]
    assert doc["runs"] == ["TS_a", "TS_b"]
    assert min(doc["thresholds"].values()) >= 0.5  # every miss scored below every hit
    assert load_checkpoint(ckpt)["thresholds"] == pytest.approx(expected.thresholds)
    assert_png(png)


def test_recalibrating_the_shipped_model_goes_into_a_copy(store, tmp_path, monkeypatch):
    from cryopoint import weights

    root, truth, preds, csv = store
    shipped = save_checkpoint(
        tmp_path / "shipped.pt",
        {
            "model_state": {"w": torch.zeros(1)},
            "config": {},
            "particles": catalogue_payload(),
            "voxel_size": [10.0] * 3,
            "kept_density": {"ribosome": 5.0},  # measured with the shipped thresholds
        },
    )
    before = shipped.read_bytes()
    monkeypatch.setattr(weights, "DEFAULT_PATH", shipped.resolve())
    argv = [
        "--predictions",
        str(csv),
        "--truth",
        str(root),
        "--out",
        str(tmp_path / "th.yaml"),
        "--checkpoint",
        "default",
    ]
    assert _run_main(argv) == 2  # never written into the package
    assert shipped.read_bytes() == before and not (tmp_path / "th.yaml").exists()
    copy = tmp_path / "mine.pt"
    assert _run_main([*argv, "--save-as", str(copy)]) == 0
    assert shipped.read_bytes() == before
    assert load_checkpoint(copy)["thresholds"] == pytest.approx(tune_thresholds(truth, preds).thresholds)
    assert "kept_density" not in load_checkpoint(copy)  # it counted what the old thresholds kept
    assert load_checkpoint(shipped)["kept_density"] == {"ribosome": 5.0}
    assert _run_main([*argv[:5], str(tmp_path / "th2.yaml"), "--checkpoint", "default", "--save-as", str(copy)]) == 2


def test_tool_subprocess_runs_subset_and_refuses_to_overwrite_input(store, tmp_path):
    root, _, _, csv = store
    out = tmp_path / "th_a.yaml"
    cmd = [sys.executable, str(TOOL), "--predictions", str(csv), "--truth", str(root), "--runs", "TS_a"]
    env = {**os.environ, "COLUMNS": "160"}  # rich wraps to the terminal width
    res = subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, text=True, env=env)
    assert "after tuning" in res.stdout and "apo-ferritin" in res.stdout
    assert yaml.safe_load(out.read_text())["runs"] == ["TS_a"]
    before = csv.read_bytes()
    assert _run_main(["--predictions", str(csv), "--truth", str(root), "--out", str(csv), "--overwrite"]) == 2
    assert csv.read_bytes() == before


def test_curve_figures(store, tmp_path):
    _, truth, preds, _ = store
    res = tune_thresholds(truth, preds.assign(particle_type=preds.particle_type.replace("ribosome", "apo-ferritin")))
    assert res.curves["ribosome"].empty  # an empty panel is drawn, not an error
    a = plot_fbeta_curves(res.curves, res.thresholds, tmp_path / "f.png")
    b = plot_pr_curves(res.curves, tmp_path / "sub" / "pr.png")
    assert a == tmp_path / "f.png" and b == tmp_path / "sub" / "pr.png"  # the folder is created
    assert_png(a)  # valid and non-blank; the exact pixel size is matplotlib's business
    assert_png(b)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary files left behind


def test_a_checkpoints_thresholds_are_the_prior_unless_strength_is_zero(store, tmp_path):
    from cryopoint.particles import PARTICLE_NAMES

    root, truth, preds, csv = store
    prior = {name: 0.05 for name in PARTICLE_NAMES}
    payload = {
        "model_state": {"w": torch.zeros(1)},
        "config": {},
        "particles": catalogue_payload(),
        "voxel_size": [10.0] * 3,
        "thresholds": prior,
    }
    ckpt = save_checkpoint(tmp_path / "m.pt", payload)
    base = ["--predictions", str(csv), "--truth", str(root), "--checkpoint", str(ckpt)]
    copy = tmp_path / "copy.pt"
    assert _run_main([*base, "--out", str(tmp_path / "a.yaml"), "--save-as", str(copy)]) == 0
    doc = yaml.safe_load((tmp_path / "a.yaml").read_text())
    expected = tune_thresholds(truth, preds, prior=prior, prior_strength=25)
    assert doc["thresholds"] == pytest.approx(expected.thresholds)
    assert doc["prior"]["strength"] == 25 and doc["prior"]["thresholds"] == pytest.approx(prior)
    assert doc["prior"]["tuned"] == pytest.approx(tune_thresholds(truth, preds).thresholds)
    assert load_checkpoint(copy)["thresholds"] == pytest.approx(expected.thresholds)
    assert load_checkpoint(ckpt)["thresholds"] == pytest.approx(prior)  # --save-as leaves the source alone
    n = truth.particle_type.value_counts()
    name = n.index[0]  # a class with labels lands between its tuned threshold and the prior
    assert prior[name] < doc["thresholds"][name] < doc["prior"]["tuned"][name]
    assert (
        _run_main(
            [*base, "--out", str(tmp_path / "b.yaml"), "--prior-strength", "0", "--save-as", str(tmp_path / "c.pt")]
        )
        == 0
    )
    plain = yaml.safe_load((tmp_path / "b.yaml").read_text())
    assert plain["thresholds"] == pytest.approx(tune_thresholds(truth, preds).thresholds) and "prior" not in plain
    untuned = save_checkpoint(tmp_path / "u.pt", {**payload, "thresholds": {}})  # nothing to shrink toward
    data = ["--predictions", str(csv), "--truth", str(root)]
    assert _run_main(
        [*data, "--checkpoint", str(untuned), "--out", str(tmp_path / "u.yaml")]
    ) == 0 and "prior" not in yaml.safe_load((tmp_path / "u.yaml").read_text())
    assert _run_main([*base, "--out", str(tmp_path / "d.yaml"), "--prior-strength", "-1"]) == 2
    assert not (tmp_path / "d.yaml").exists()
    # a checkpoint tuned for some classes only: those are shrunk, the others keep the tuned thresholds
    partial = save_checkpoint(tmp_path / "p.pt", {**payload, "thresholds": {name: 0.05}})
    assert _run_main([*data, "--checkpoint", str(partial), "--out", str(tmp_path / "e.yaml")]) == 0
    got = yaml.safe_load((tmp_path / "e.yaml").read_text())["thresholds"]
    tuned = tune_thresholds(truth, preds).thresholds
    assert got[name] == pytest.approx(doc["thresholds"][name])
    assert {k: v for k, v in got.items() if k != name} == pytest.approx({k: v for k, v in tuned.items() if k != name})


def test_prior_from_another_checkpoint_than_the_one_written(store, tmp_path):
    """A fine-tuned model re-tuned toward the checkpoint it started from: --prior names where the prior thresholds
    come from, --checkpoint (if any) where the new ones go."""
    from cryopoint.particles import PARTICLE_NAMES

    root, truth, preds, csv = store
    payload = {"model_state": {"w": torch.zeros(1)}, "config": {}, "particles": catalogue_payload()}
    payload["voxel_size"] = [10.0] * 3
    start = save_checkpoint(tmp_path / "start.pt", {**payload, "thresholds": {n: 0.05 for n in PARTICLE_NAMES}})
    tuned = save_checkpoint(tmp_path / "ft.pt", {**payload, "thresholds": {n: 0.9 for n in PARTICLE_NAMES}})
    data = ["--predictions", str(csv), "--truth", str(root)]
    # No --checkpoint: only the YAML, shrunk toward --prior's thresholds.
    assert _run_main([*data, "--prior", str(start), "--out", str(tmp_path / "a.yaml")]) == 0
    doc = yaml.safe_load((tmp_path / "a.yaml").read_text())
    expected = tune_thresholds(truth, preds, prior={n: 0.05 for n in PARTICLE_NAMES}, prior_strength=25)
    assert doc["thresholds"] == pytest.approx(expected.thresholds)
    assert doc["prior"]["checkpoint"] == str(start) and doc["prior"]["thresholds"] == pytest.approx(
        {n: 0.05 for n in PARTICLE_NAMES}
    )
    # With --checkpoint: the prior is still --prior's, not the written checkpoint's own (0.9), and it lands there.
    copy = tmp_path / "ft_retuned.pt"
    argv = [*data, "--checkpoint", str(tuned), "--save-as", str(copy), "--prior", str(start)]
    assert _run_main([*argv, "--out", str(tmp_path / "b.yaml")]) == 0
    assert load_checkpoint(copy)["thresholds"] == pytest.approx(expected.thresholds)
    # A --prior without thresholds is refused before anything is written.
    bare = save_checkpoint(tmp_path / "bare.pt", {**payload, "thresholds": {}})
    assert _run_main([*data, "--prior", str(bare), "--out", str(tmp_path / "c.yaml")]) == 2
    assert not (tmp_path / "c.yaml").exists()
