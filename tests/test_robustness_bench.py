"""benchmarks/robustness.py: every shift is a valid simulator setting that changes what it says, and the sweep
runs end to end with the shipped model, writing a report whose numbers come from real scoring."""

import json

import numpy as np
import pytest

import cryopoint
from benchmarks import robustness


@pytest.mark.parametrize("name", list(robustness.SHIFTS))
def test_every_shift_is_a_valid_setting_that_moves_its_knob(name):
    params = robustness.shift_params(name)
    base = robustness.shift_params("none")
    overrides = robustness.SHIFTS[name][0]
    for key, value in overrides.items():
        assert getattr(params, key) == value and getattr(base, key) != value
    assert params.shape_model == "mixed" and params.randomize is False


def test_darker_shift_darkens_the_same_particles():
    """Same seed: the 'darker' tomogram has the very same particles, darker (more negative after imaging)."""
    base, truth0, vs = robustness.make_tomograms("none", 1, (32, 96, 96), seed=3)
    dark, truth1, _ = robustness.make_tomograms("darker x1.8", 1, (32, 96, 96), seed=3)
    assert truth0[["x", "y", "z"]].equals(truth1[["x", "y", "z"]]) and len(truth0) > 0
    idx = np.rint(truth0[["z", "y", "x"]].to_numpy() / vs).astype(int)
    a = base[0][tuple(idx.T)] - np.median(base[0])
    b = dark[0][tuple(idx.T)] - np.median(dark[0])
    assert np.median(b / base[0].std()) < np.median(a / dark[0].std())  # relative to the noise, darker


@pytest.mark.slow
def test_sweep_runs_end_to_end_and_reports_real_scores(tmp_path):
    out = tmp_path / "robustness"
    args = "--models shipped=default --shifts none clean --tomograms 1 --shape 48 160 160 --crowding 5"
    md = robustness.main([*args.split(), "--out", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["shifts"]) == {"none", "clean"}
    for row in data["shifts"].values():
        assert sum(row["counts"].values()) > 0
        own, ranking = row["models"]["shipped"]["own"], row["models"]["shipped"]["ranking"]
        assert 0.0 <= own["score"] <= ranking["score"] + 1e-9 <= 1.0 + 1e-9  # tuning on the truth never loses
    # the shipped model finds most particles of a clean tomogram (a real detection, not a shape check)
    assert data["shifts"]["clean"]["models"]["shipped"]["ranking"]["score"] > 0.5
    assert data["meta"]["models"]["shipped"]["corpus"] == robustness.corpus_of(cryopoint.load("default"))
    text = md.read_text()
    assert "| clean |" in text and out.with_suffix(".png").stat().st_size > 10_000


def test_models_are_labelled_and_a_repeated_label_is_refused():
    assert robustness.parse_models(["shipped=default", "runs/x.pt"]) == {"shipped": "default", "runs/x.pt": "runs/x.pt"}
    with pytest.raises(SystemExit, match="twice"):
        robustness.parse_models(["a=x.pt", "a=y.pt"])


def test_snr_rows_move_only_the_noise():
    """Same seed, same particles; the tomogram agrees better with a nearly noise-free one of the same seed as
    the row's signal-to-noise ratio rises (0.25 < the base's 0.5 < 2)."""
    import dataclasses

    from cryopoint.synth.simulate import simulate_run

    def volume(params):
        return simulate_run((32, 96, 96), params, np.random.default_rng(3000))

    reference, truth_ref = volume(dataclasses.replace(robustness.shift_params("none"), snr=1000.0))
    corr = []
    for name in ("snr 0.25", "none", "snr 2"):
        vol, truth = volume(robustness.shift_params(name))
        assert truth[["x", "y", "z"]].equals(truth_ref[["x", "y", "z"]]) and len(truth) > 0
        corr.append(float(np.corrcoef(vol.ravel(), reference.ravel())[0, 1]))
    assert corr[0] < corr[1] < corr[2] < 1.0, corr


def test_corpus_of_names_a_synthetic_preset_or_the_data_root():
    """The report names what a model trained on: its synthetic preset and run count, or the data root it was given
    (the shipped file's last stage trained on a root holding runs of two generators)."""
    from types import SimpleNamespace

    def det(root):
        return SimpleNamespace(
            config=SimpleNamespace(data=SimpleNamespace(root=root, synth_preset="randomized", synth_runs=128))
        )

    assert robustness.corpus_of(det("")) == "randomized (128 runs)"
    assert robustness.corpus_of(det("/data/mixed")) == "/data/mixed"
