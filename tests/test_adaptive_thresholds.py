"""Per-tomogram thresholds from a reference kept-peak density (cryopoint.post.adaptive) and their use in detect."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cryopoint.api import detect, load
from cryopoint.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint
from cryopoint.config import config_from_dict
from cryopoint.errors import CheckpointError, ConfigError
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.adaptive import (
    FLOOD_FACTOR,
    FLOOD_MIN_PICKS,
    density_ratios,
    density_thresholds,
    kept_density,
    volume_um3,
)
from tests.test_api import TINY_CONFIG, save_tiny_checkpoint


def _peaks(**scores):
    return pd.DataFrame(
        [{"particle_type": name.replace("_", "-"), "score": s} for name, values in scores.items() for s in values]
    )


def test_volume_is_physical():
    assert volume_um3((100, 100, 100), 10.0) == pytest.approx(1e-3)  # 1000 Å cube
    assert volume_um3((100, 100, 100), (20.0, 10.0, 5.0)) == pytest.approx(1e-3)
    assert volume_um3((200, 200, 200), 5.0) == pytest.approx(volume_um3((100, 100, 100), 10.0))


def test_kept_density_counts_peaks_at_or_above_each_threshold_per_volume():
    peaks = _peaks(ribosome=[0.9, 0.5, 0.2, 0.1], apo_ferritin=[0.3])
    got = kept_density(peaks, {"ribosome": 0.2, "apo-ferritin": 0.5, "thyroglobulin": 0.1}, total_um3=2.0)
    assert got == {"ribosome": 1.5, "apo-ferritin": 0.0, "thyroglobulin": 0.0}
    with pytest.raises(ConfigError, match="positive volume"):
        kept_density(peaks, {"ribosome": 0.2}, total_um3=0.0)


def test_thresholds_rise_to_the_capped_count_and_never_fall_below_the_floor():
    peaks = _peaks(ribosome=[0.95, 0.9, 0.8, 0.6, 0.4, 0.3], apo_ferritin=[0.9, 0.2], thyroglobulin=[0.5, 0.4, 0.3])
    floor = {"ribosome": 0.1, "apo-ferritin": 0.5, "thyroglobulin": 0.1, "virus-like-particle": 0.2}
    density = {"ribosome": 1.5, "apo-ferritin": 10.0, "thyroglobulin": 0.0, "virus-like-particle": 1.0}
    got = density_thresholds(peaks, floor, density, tomogram_um3=2.0, alpha=1.0)
    assert got["ribosome"] == 0.8  # cap 3 peaks of 6: the third best
    assert got["apo-ferritin"] == 0.5  # cap 20 > 2 peaks: the floor stands (never lowered)
    assert got["thyroglobulin"] == 0.1  # a zero reference density keeps the floor rather than nothing
    assert got["virus-like-particle"] == 0.2  # no peaks at all
    assert (peaks[peaks.particle_type == "ribosome"].score >= got["ribosome"]).sum() == 3
    # half the multiple keeps half the peaks; a class without a reference keeps its floor
    assert density_thresholds(peaks, floor, density, 2.0, alpha=0.5)["ribosome"] == 0.9
    assert density_thresholds(peaks, floor, {}, 2.0, alpha=0.5) == floor
    with pytest.raises(ConfigError, match="alpha"):
        density_thresholds(peaks, floor, density, 2.0, alpha=0.0)


def test_a_larger_tomogram_keeps_proportionally_more_peaks():
    peaks = _peaks(ribosome=list(np.linspace(1.0, 0.01, 100)))
    small = density_thresholds(peaks, {"ribosome": 0.0}, {"ribosome": 10.0}, 1.0, 1.0)["ribosome"]
    large = density_thresholds(peaks, {"ribosome": 0.0}, {"ribosome": 10.0}, 4.0, 1.0)["ribosome"]
    assert (peaks.score >= small).sum() == 10 and (peaks.score >= large).sum() == 40


@pytest.fixture()
def adaptive_ckpt(tmp_path):
    config = {**TINY_CONFIG, "post": {**TINY_CONFIG["post"], "adaptive_alpha": 1.0}}
    path = save_tiny_checkpoint(tmp_path / "adaptive.pt", config=config)
    payload = load_checkpoint(path)
    payload["kept_density"] = {name: 1e4 for name in PARTICLE_NAMES}  # per µm³
    return save_checkpoint(path, payload)


def test_detect_caps_each_class_per_tomogram_only_for_the_detectors_own_thresholds(adaptive_ckpt, rng):
    det = load(adaptive_ckpt)
    assert det.kept_density["ribosome"] == 1e4 and det.config.post.adaptive_alpha == 1.0
    data = rng.standard_normal((8, 32, 32)).astype(np.float32)
    every = detect(data, det, voxel_size=10.0, thresholds=0.0)  # explicit thresholds: no cap
    cap = int(np.ceil(1e4 * volume_um3(data.shape, 10.0)))  # 8 x 32 x 32 voxels of 10 Å: 0.08 -> 1 per class
    own = detect(data, det, voxel_size=10.0)
    counts = own.groupby("particle_type").size()
    every_counts = every.groupby("particle_type").size()
    assert (every_counts > cap).any()  # the test means something: uncapped, some class keeps more
    assert cap == 1 and (counts <= cap).all()
    for name, n in counts.items():  # the kept ones are each class's best
        best = every[every.particle_type == name].score.nlargest(n)
        np.testing.assert_allclose(np.sort(own[own.particle_type == name].score), np.sort(best))
    off = dataclasses.replace(det, config=config_from_dict({**TINY_CONFIG}))  # alpha 0: everything kept (floor 0)
    assert len(detect(data, off, voxel_size=10.0)) == len(every)


def test_the_reference_survives_export_and_a_bad_alpha_is_refused(adaptive_ckpt, tmp_path):
    shipped = export_checkpoint(adaptive_ckpt, tmp_path / "shipped.pt")
    assert load(shipped).kept_density == load(adaptive_ckpt).kept_density
    bad = load_checkpoint(adaptive_ckpt)
    bad["config"]["post"]["adaptive_alpha"] = -1.0
    with pytest.raises(CheckpointError, match="adaptive_alpha"):
        load(save_checkpoint(tmp_path / "bad.pt", bad))


def test_batch_detection_applies_the_same_per_tomogram_thresholds_as_detect(adaptive_ckpt, tmp_path):
    import mrcfile

    from cryopoint.batch import BatchOptions, run_batch, runs_from_files

    files, rng = [], np.random.default_rng(3)
    for name, shape in (("small", (8, 32, 32)), ("large", (8, 64, 64))):  # different volumes: different caps
        path = tmp_path / f"{name}.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(rng.standard_normal(shape).astype(np.float32))
            mrc.voxel_size = 10.0
        files.append(path)
    out = tmp_path / "out"
    run_batch(runs_from_files(files), BatchOptions(model=str(adaptive_ckpt), out_dir=out, formats=("submission",)))
    got = pd.read_csv(out / "submission.csv")
    det = load(adaptive_ckpt)
    for path in files:
        expected = detect(path, det)
        mine = got[got.experiment == path.stem]
        assert len(mine) == len(expected) > 0
        assert mine.groupby("particle_type").size().to_dict() == expected.groupby("particle_type").size().to_dict()
    every = detect(files[1], det, thresholds=0.0)
    assert len(got[got.experiment == "large"]) < len(every)  # the cap did act on the batch path


def test_adaptive_alpha_without_a_reference_warns_and_keeps_the_thresholds(tmp_path, rng):
    from cryopoint.errors import AdjustedSettingWarning

    config = {**TINY_CONFIG, "post": {**TINY_CONFIG["post"], "adaptive_alpha": 0.5}}
    det = load(save_tiny_checkpoint(tmp_path / "no_reference.pt", config=config))
    data = rng.standard_normal((8, 32, 32)).astype(np.float32)
    with pytest.warns(AdjustedSettingWarning, match="no reference density"):
        picks = detect(data, det, voxel_size=10.0)
    assert len(picks) == len(detect(data, det, voxel_size=10.0, thresholds=det.default_thresholds))


def test_detect_cli_turns_adaptation_on_and_off(adaptive_ckpt, tmp_path):
    import mrcfile

    from cryopoint.errors import ConfigError
    from tools.detect import main

    path = tmp_path / "tomo.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.random.default_rng(4).standard_normal((8, 64, 64)).astype(np.float32))
        mrc.voxel_size = 10.0
    counts = {}
    for alpha in ("0", "1", "4"):
        out = tmp_path / f"out{alpha}"
        args = ["--model", str(adaptive_ckpt), "--files", str(path), "--out", str(out), "--adaptive", alpha]
        assert main(args) == 0
        counts[alpha] = len(pd.read_csv(out / "submission.csv"))
    det = load(adaptive_ckpt)
    assert counts["0"] == len(detect(path, det.with_adaptive_alpha(0.0))) > counts["4"] > counts["1"]
    assert counts["1"] == len(detect(path, det))  # the checkpoint's own alpha is 1
    plain = load(save_tiny_checkpoint(tmp_path / "plain.pt"))
    with pytest.raises(ConfigError, match="no reference density"):
        plain.with_adaptive_alpha(0.5)


def test_benchmarks_keep_what_detect_keeps(adaptive_ckpt):
    from benchmarks.bench_common import own_picks

    det = load(adaptive_ckpt)
    rng = np.random.default_rng(5)
    vols = {"a": rng.standard_normal((8, 32, 32)), "b": rng.standard_normal((8, 64, 64))}
    peaks = pd.concat([detect(v, det, voxel_size=10.0, thresholds=0.0).assign(experiment=k) for k, v in vols.items()])
    kept = own_picks(det, peaks, {k: (v.shape, (10.0,) * 3) for k, v in vols.items()})
    for k, v in vols.items():
        expected = detect(v, det, voxel_size=10.0)
        mine = kept[kept.experiment == k]
        assert sorted(mine.score) == sorted(expected.score)
    assert len(kept) < len(peaks)


def test_density_ratios_compare_a_tomograms_picks_with_the_reference_per_volume():
    picks = _peaks(ribosome=[0.9] * 6, apo_ferritin=[0.5])
    got = density_ratios(picks, {"ribosome": 2.0, "apo-ferritin": 1.0, "thyroglobulin": 0.0}, tomogram_um3=0.5)
    assert got == {"ribosome": 6.0, "apo-ferritin": 2.0}  # 12 and 2 per µm³; a zero reference is left out
    assert density_ratios(picks.iloc[:0], {"ribosome": 2.0}, 1.0) == {"ribosome": 0.0}
    with pytest.raises(ConfigError, match="positive volume"):
        density_ratios(picks, {"ribosome": 2.0}, 0.0)


def test_a_detector_names_only_classes_both_dense_and_numerous(adaptive_ckpt):
    det = load(adaptive_ckpt)  # reference: 1e4 kept peaks per µm³ for every class
    shape, vs = (100, 100, 100), 10.0  # 1e-3 µm³: 10 picks match the reference
    many = FLOOD_MIN_PICKS + 10
    assert many >= FLOOD_FACTOR * 10  # the test means something: the dense class clears both bars
    picks = _peaks(ribosome=[0.5] * many, apo_ferritin=[0.5] * 10, thyroglobulin=[0.5] * (FLOOD_MIN_PICKS - 1))
    got = det.flooded(picks, shape, vs)
    assert list(got) == ["ribosome"] and got["ribosome"] == (many, pytest.approx(many / 10))
    small = (50, 50, 50)  # 1/8 the volume: 19 thyroglobulins are 15x and 10 apo-ferritins 8x, but too few to say
    assert list(det.flooded(picks, small, vs)) == ["ribosome"]
    assert dataclasses.replace(det, kept_density={}).flooded(picks, shape, vs) == {}


def test_batch_detection_notes_flooded_classes_and_leaves_the_picks_alone(adaptive_ckpt, tmp_path):
    import io

    import mrcfile
    from rich.console import Console

    from cryopoint.batch import BatchOptions, run_batch, runs_from_files

    path = tmp_path / "noise.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.random.default_rng(5).standard_normal((8, 64, 64)).astype(np.float32))
        mrc.voxel_size = 10.0
    payload = load_checkpoint(adaptive_ckpt)
    payload["config"]["post"]["adaptive_alpha"] = 0.0  # own thresholds as tuned: nothing capped
    payload["kept_density"] = {name: 1.0 for name in PARTICLE_NAMES}  # 1 per µm³: any real count is far denser
    ckpt = save_checkpoint(tmp_path / "dense.pt", payload)

    def run(model, out, **kw):
        text = io.StringIO()
        opts = BatchOptions(model=str(model), out_dir=tmp_path / out, formats=("submission",), **kw)
        run_batch(runs_from_files([path]), opts, console=Console(file=text, width=200))
        return text.getvalue(), pd.read_csv(tmp_path / out / "submission.csv")

    said, picks = run(ckpt, "dense")
    counts = picks.groupby("particle_type").size()
    dense = counts[counts >= FLOOD_MIN_PICKS]
    assert len(dense) > 0  # untrained network on noise: plenty of picks
    assert "Many more picks than the model keeps" in said and "--adaptive" in said
    for name, n in dense.items():
        assert f"noise: {n} {name} picks" in said
    assert len(picks) == len(detect(path, load(ckpt)))  # a note, not a filter
    quiet, _ = run(ckpt, "explicit", thresholds=0.5)  # the user's own thresholds: no note
    assert "Many more picks" not in quiet
    payload["kept_density"] = {name: 1e9 for name in PARTICLE_NAMES}
    quiet, _ = run(save_checkpoint(tmp_path / "sparse.pt", payload), "sparse")
    assert "Many more picks" not in quiet
