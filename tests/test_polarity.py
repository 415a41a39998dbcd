"""Contrast polarity: inverted tomograms (protein bright) are recognised, warned about, and inverted on request."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import cryopoint
from cryopoint.batch import BatchOptions, made_with, run_batch
from cryopoint.data.polarity import MARGIN, check_polarity_setting, estimate_polarity, polarity_score
from cryopoint.errors import ConfigError, PolarityWarning
from cryopoint.io import write_mrc
from cryopoint.post.thresholds import tune_thresholds
from cryopoint.synth import get_preset
from cryopoint.synth.simulate import simulate_run

VS = 10.0


@pytest.fixture(scope="module")
def simulated():
    """Two small tomograms of our simulator (protein dark, as it writes them), of two presets, with their picks."""
    out = []
    for preset, seed in (("easy", 0), ("realistic", 1)):
        out.append(simulate_run((64, 160, 160), get_preset(preset), np.random.default_rng(seed), workers=1))
    return [vol for vol, _ in out], [picks for _, picks in out]


def _best_score(picks: pd.DataFrame, truth: pd.DataFrame) -> float:
    """The challenge score of ``picks`` with per-class thresholds tuned on ``truth`` itself (the best they allow)."""
    return tune_thresholds(truth.assign(experiment="r"), picks.assign(experiment="r")).score_after


def test_simulated_tomograms_are_dark_and_their_inverses_bright(simulated):
    for vol in simulated[0]:
        assert estimate_polarity(vol, VS).polarity == "dark"
        assert estimate_polarity(-vol, VS).polarity == "bright"


def test_the_score_is_odd_and_ignores_offset_and_scale(simulated):
    vol = simulated[0][1]
    score = polarity_score(vol, VS)
    assert polarity_score(-vol, VS) == pytest.approx(-score, abs=1e-5)
    assert polarity_score(3e4 * vol + 7.0, VS) == pytest.approx(score, abs=1e-3)


def test_noise_alone_is_unclear_not_guessed():
    for seed in range(4):
        noise = np.random.default_rng(seed).normal(size=(48, 128, 128)).astype(np.float32)
        est = estimate_polarity(noise, VS)
        assert est.polarity == "unclear" and abs(est.score) <= MARGIN, est


def test_the_voxel_size_sets_the_blob_scale():
    # The same dark blobs: at 10 Å per voxel they are particle-sized; told the voxels are 1 Å they are 10x too
    # small to be particles and the verdict is lost (the check uses Å, not voxels).
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(64, 128, 128)).astype(np.float32)
    zz, yy, xx = np.mgrid[:64, :128, :128]
    for c in rng.integers(16, 112, size=(15, 3)):
        vol -= 2.5 * np.exp(-((zz - 12 - c[0] % 40) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * 5.0**2))
    assert estimate_polarity(vol, 10.0).polarity == "dark"
    assert estimate_polarity(vol, 1.0).polarity != "dark"


def test_the_margin_widens_as_the_volume_shrinks_and_tiny_volumes_are_not_judged(monkeypatch):
    import cryopoint.data.polarity as polarity

    shapes = [(96, 256, 256), (64, 192, 192), (64, 128, 128), (96, 96, 96), (64, 96, 96), (64, 64, 64)]
    sites = [polarity.blob_sites(s, VS) for s in shapes]
    margins = [polarity.verdict_margin(s, VS) for s in shapes]
    assert sites == sorted(sites, reverse=True) and margins == sorted(margins)
    assert margins[0] == MARGIN and MARGIN < margins[2] < margins[3] < np.inf and margins[-1] == np.inf
    # The sites are counted in Å: the same voxels at 20 Å hold a volume 8x larger, at 5 Å one 8x smaller.
    assert polarity.blob_sites((64, 128, 128), 20.0) > 6 * sites[2] > 36 * polarity.blob_sites((64, 128, 128), 5.0)
    assert polarity.blob_sites((64, 128, 128), (20.0, 10.0, 10.0)) > sites[2]  # one value per axis (z, y, x)
    # A thin volume is not judged however wide: its blobs all touch its top or bottom.
    assert polarity.blob_sites((48, 256, 256), VS) > sites[1] and polarity.verdict_margin((48, 256, 256), VS) == np.inf
    assert polarity.verdict_margin((48, 256, 256), (20.0, 10.0, 10.0)) < np.inf  # the same slices at 20 Å: deep enough

    # One score, four sizes: a verdict in a large volume, none in a small, a tiny or a thin one.
    monkeypatch.setattr(polarity, "polarity_score", lambda volume, voxel_size: -1.1 * MARGIN)
    sizes = ((96, 256, 256), (64, 128, 128), (16, 48, 48), (48, 256, 256))
    verdicts = [estimate_polarity(np.zeros(s, np.float32), VS) for s in sizes]
    assert [v.polarity for v in verdicts] == ["bright", "unclear", "unclear", "unclear"]
    assert [v.margin for v in verdicts] == [MARGIN, margins[2], np.inf, np.inf]
    with pytest.raises(ConfigError, match="3D"):
        polarity.verdict_margin((128, 128), VS)


def test_auto_says_when_a_volume_is_too_small_to_judge(simulated):
    crop = -simulated[0][0][:32, :96, :96]  # inverted, but far too small to tell
    fixed, est = cryopoint.data.polarity.orient(crop, VS, "auto")
    assert fixed is crop and est.polarity == "unclear" and est.margin == np.inf
    run = lambda **kw: cryopoint.detect(crop, "blob", voxel_size=VS, **kw)  # noqa: E731
    with pytest.warns(PolarityWarning, match="too small for the polarity check.*polarity='dark' or 'bright'"):
        run(polarity="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolarityWarning)
        run()  # "check" stays quiet about a volume it cannot judge: nothing it says would be worth acting on


@pytest.mark.parametrize("bad", ["Dark", "inverted", "", None])
def test_a_bad_setting_names_the_choices(bad):
    with pytest.raises(ConfigError, match="check, auto, dark, bright"):
        check_polarity_setting(bad)


def test_detect_checks_warns_and_inverts_only_when_asked(simulated):
    vol, truth = simulated[0][0], simulated[1][0]
    inverted = -vol
    before = inverted.copy()
    model = cryopoint.load("default")
    run = lambda v, **kw: cryopoint.detect(v, model, voxel_size=VS, thresholds=0.0, device="cpu", **kw)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolarityWarning)
        reference = run(vol)  # dark: checked, no warning
        pd.testing.assert_frame_equal(run(inverted, polarity="bright"), reference)
        run(inverted, polarity="dark")  # told: no check, no warning

    with pytest.warns(PolarityWarning, match="looks inverted.*polarity='bright'"):
        unchanged = run(inverted)
    # What the warning is about: a model trained on dark protein finds next to nothing in inverted data.
    best, lost = _best_score(reference, truth), _best_score(unchanged, truth)
    assert best >= 0.3 and lost <= 0.5 * best, (best, lost)
    with pytest.warns(PolarityWarning, match="confident picks carry.*inverted it for detection"):
        pd.testing.assert_frame_equal(run(inverted, polarity="auto"), reference)
    np.testing.assert_array_equal(inverted, before)  # the caller's array is never modified
    with pytest.raises(ConfigError, match="polarity must be one of"):
        run(vol, polarity="inverted")
    with pytest.warns(PolarityWarning):  # the blob detector assumes dark protein too, and is checked the same way
        cryopoint.detect(inverted, "blob", voxel_size=VS)


def test_auto_lets_the_model_overrule_a_misread_check(simulated, monkeypatch):
    """A correct (dark) tomogram that the label-free check misreads as inverted, as it read one run of blind source
    G (docs/models.md, session 51): with a model, ``auto`` keeps it as it is because the model is confident only
    that way, and says so; without a model (the blob detector) ``auto`` follows the check."""
    import cryopoint.data.polarity as polarity

    vol = simulated[0][0]
    model = cryopoint.load("default")
    run = lambda **kw: cryopoint.detect(vol, model, voxel_size=VS, thresholds=0.0, device="cpu", **kw)  # noqa: E731
    reference = run(polarity="dark")
    monkeypatch.setattr(polarity, "polarity_score", lambda volume, voxel_size: -1.1 * MARGIN)  # the misreading
    assert polarity.estimate_polarity(vol, VS).polarity == "bright"
    with pytest.warns(PolarityWarning, match=r"looks inverted to the label-free check.*used it as it is"):
        pd.testing.assert_frame_equal(run(polarity="auto"), reference)
    with pytest.warns(PolarityWarning, match="polarity='bright'"):
        pd.testing.assert_frame_equal(run(), reference)  # "check" only warns, as before
    blob = lambda v, **kw: cryopoint.detect(v, "blob", voxel_size=VS, **kw)  # noqa: E731
    with pytest.warns(PolarityWarning, match="Inverted it for detection"):
        pd.testing.assert_frame_equal(blob(vol, polarity="auto"), blob(-vol, polarity="dark"))


def test_batch_notes_an_inverted_run_and_keys_results_by_inverting_settings(simulated, tmp_path):
    files = {"TS_dark": tmp_path / "dark.mrc", "TS_bright": tmp_path / "bright.mrc"}
    write_mrc(files["TS_dark"], simulated[0][0], VS)
    write_mrc(files["TS_bright"], -simulated[0][0], VS)
    opts = BatchOptions(model="blob", out_dir=tmp_path / "out", formats=("raw",))
    with pytest.warns(PolarityWarning, match="TS_bright|bright"):
        run_batch(files, opts)
    status = {run: json.loads((tmp_path / "out" / "runs" / f"{run}.json").read_text()) for run in files}
    assert "looks inverted" in status["TS_bright"]["polarity_warning"]
    assert "polarity_warning" not in status["TS_dark"]

    # "check" and "dark" never change the peaks, so they are not part of what the results were made with
    # (older results still resume); "auto" and "bright" can, so they are.
    assert "polarity" not in made_with(opts, "blob")
    assert made_with(BatchOptions(model="blob", out_dir=tmp_path, polarity="auto"), "blob")["polarity"] == "auto"
    # with a model, auto lets the model confirm an inversion: results of the older, check-only auto do not resume
    model_auto = made_with(BatchOptions(model="default", out_dir=tmp_path, polarity="auto"), cryopoint.load("default"))
    assert model_auto["polarity"] == "auto, confirmed by the model"
    with pytest.raises(ConfigError, match="polarity must be one of"):
        run_batch(files, BatchOptions(model="blob", out_dir=tmp_path / "o2", polarity="flip"))


def _runs(simulated):
    from cryopoint.data.dataset import RunData

    vol, picks = simulated[0][0], simulated[1][0]
    return [RunData("TS_dark", vol, (VS,) * 3, picks), RunData("TS_bright", -vol, (VS,) * 3, picks)]


def test_training_runs_that_look_inverted_are_named_and_inverted_when_asked(simulated):
    from cryopoint.engine.data import orient_runs

    runs = _runs(simulated)
    with pytest.warns(
        PolarityWarning, match=r"1 of 2 training tomograms look inverted.*TS_bright \(labelled particles \+\d"
    ):
        checked = orient_runs(runs, "check")
    assert [r.volume is s.volume for r, s in zip(checked, runs)] == [True, True], "check changes nothing"
    with pytest.warns(PolarityWarning, match="Inverted them for training"):
        auto = orient_runs(runs, "auto")
    assert auto[0] is runs[0]
    np.testing.assert_array_equal(auto[1].volume, runs[0].volume)
    np.testing.assert_array_equal(auto[1].points_zyx, runs[1].points_zyx)  # the labels stay with their run
    bright = orient_runs(runs, "bright")
    np.testing.assert_array_equal(bright[0].volume, -runs[0].volume)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolarityWarning)
        assert orient_runs(runs, "dark") == runs
        assert orient_runs(runs, "check", check=False) == runs  # the embedded synthetic data is not checked


def test_training_runs_are_judged_by_their_labels_where_they_have_enough(simulated, monkeypatch):
    """Labels decide over a misreading label-free check (as it misread one run of blind source G); a run with too
    few labels falls back to the check."""
    import cryopoint.data.polarity as polarity
    from cryopoint.data.dataset import RunData
    from cryopoint.engine.data import orient_runs

    runs = _runs(simulated)
    pts, radii = runs[0].points_zyx, [cryopoint.particles.PARTICLES[k].radius for k in runs[0].labels]
    dark = polarity.label_contrast(runs[0].volume, VS, pts, radii)
    assert dark < -polarity.LABEL_MARGIN and polarity.label_contrast(runs[1].volume, VS, pts, radii) == pytest.approx(
        -dark
    )
    assert polarity.label_contrast(runs[0].volume, VS, pts[: polarity.MIN_LABELS - 1], radii) is None
    assert [polarity.label_verdict(x) for x in (-1.0, 0.0, 1.0, None)] == ["dark", "unclear", "bright", None]

    monkeypatch.setattr(polarity, "polarity_score", lambda volume, voxel_size: -1.1 * MARGIN)  # every run misread
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolarityWarning)
        assert orient_runs(runs[:1], "auto")[0] is runs[0]  # its labels say dark: kept, no warning
    unlabelled = RunData("TS_unlabelled", runs[0].volume, (VS,) * 3, runs[0].picks.iloc[:0])
    with pytest.warns(PolarityWarning, match=r"1 of 2 .*TS_unlabelled \(polarity score -0\.06\)"):
        out = orient_runs([runs[0], unlabelled], "auto")
    assert out[0] is runs[0]
    np.testing.assert_array_equal(out[1].volume, -runs[0].volume)  # no labels: the check decides, as before


def test_load_data_orients_the_runs_of_a_dataset_root(tmp_path, monkeypatch):
    from _layout_helpers import write_challenge_store

    import cryopoint.data.polarity as polarity
    from cryopoint.config import load_config
    from cryopoint.engine.data import load_data
    from cryopoint.engine.distributed import DistInfo
    from tests.test_engine_train import SMOKE

    write_challenge_store(tmp_path / "data", runs=("TS_a", "TS_b"), shape=(16, 64, 64))
    seen = []

    def fake(volume, voxel_size):  # TS_b "looks inverted": its first voxel is recorded to tell the runs apart
        seen.append(float(volume.flat[0]))
        return polarity.PolarityEstimate("bright" if len(seen) == 2 else "dark", -0.2 if len(seen) == 2 else 0.2)

    monkeypatch.setattr(polarity, "estimate_polarity", fake)
    over = [f"data.root={tmp_path / 'data'}", "data.cache_volumes=false", "data.val_runs=[TS_a]"]
    with pytest.warns(PolarityWarning, match="TS_b"):
        data = load_data(load_config(SMOKE, [*over, "data.polarity=auto"]), DistInfo(), output_stride=2)
    assert data.train_runs[0].name == "TS_b" and float(data.train_runs[0].volume.flat[0]) == -seen[1]
    assert float(data.val_runs[0].volume.flat[0]) == seen[0]

    seen.clear()
    synthetic = load_config(SMOKE, [f"data.cache_dir={tmp_path / 'c'}", "data.polarity=auto"])
    load_data(synthetic, DistInfo(), output_stride=2)
    assert seen == [], "the embedded synthetic dataset is written dark and not checked"
    with pytest.raises(ConfigError, match="polarity must be one of"):
        load_config(SMOKE, [*over, "data.polarity=flipped"])


def test_orient_is_the_one_place_that_decides(simulated):
    from cryopoint.data.polarity import orient

    vol = simulated[0][0]
    same, est = orient(vol, VS, "dark")
    assert same is vol and est is None
    flipped, est = orient(vol, VS, "bright")
    np.testing.assert_array_equal(flipped, -vol)
    assert est is None
    kept, est = orient(-vol, VS, "check")
    assert est.polarity == "bright" and np.array_equal(kept, -vol)
    fixed, est = orient(-vol, VS, "auto")
    assert est.polarity == "bright"
    np.testing.assert_array_equal(fixed, vol)
    untouched, est = orient(vol, VS, "auto")
    assert untouched is vol and est.polarity == "dark"
