"""The ideal-observer diagnostic on source F: the replay's split, whitening, d' and the pre-registered reading."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import blind_sim_f
from benchmarks import ideal_observer as io


@pytest.fixture(scope="module")
def replay():
    return io.replay_split(5, 3, (32, 64, 64))


def test_replay_leaves_the_run_as_f_writes_it(replay):
    # the wrapper must not change the stored tomogram: same numbers as a plain call of F's simulator
    plain, picks, _ = blind_sim_f.simulate(5, 3, (32, 64, 64))
    assert np.array_equal(replay["volume"], plain)
    assert replay["picks"] == picks


def test_replay_splits_signal_and_noise(replay):
    # signal + noise through F's normalisation is F's output; the two parts are distinct and not degenerate
    assert replay["fidelity"] > 0.999999
    assert replay["signal"].shape == replay["noise"].shape == (32, 64, 64)
    assert replay["noise"].std() > 0 and replay["signal"].std() > 0
    assert abs(np.corrcoef(replay["signal"].ravel(), replay["noise"].ravel())[0, 1]) < 0.5
    # a wrong split (the volume itself as the signal) would not reproduce it
    total = replay["signal"] + replay["noise"]
    assert not np.allclose(total, replay["signal"])


def test_replay_knobs_are_the_runs_own():
    knobs = io.replay_split(5, 4, (32, 64, 64))["knobs"]
    drawn = blind_sim_f.draw_imaging(np.random.default_rng([5, 4]))
    assert knobs["noise_mult"] == drawn["noise_mult"] > 0  # the flipped sign never leaks into the report
    assert knobs["align_sd"] == drawn["align_sd"]


def _radial_power(v):
    p = np.abs(np.fft.fftn(v)) ** 2
    f = np.sqrt(sum(g**2 for g in np.meshgrid(*(np.fft.fftfreq(n) for n in v.shape), indexing="ij")))
    return p[(f > 0.05) & (f < 0.1)].mean(), p[(f > 0.35) & (f < 0.45)].mean()


def test_whitening_flattens_coloured_noise():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    coloured = ndimage.gaussian_filter(rng.normal(size=(32, 48, 48)), 1.0)
    low, high = _radial_power(coloured)
    assert low / high > 20  # strongly coloured before
    white = io.whiten(coloured, io.whitener(coloured))
    low, high = _radial_power(white)
    assert 0.5 < low / high < 2.0


def test_sphere_norms_counts_voxels_and_removes_the_mean():
    vol = np.full((20, 20, 20), 7.0)
    assert io.sphere_norms(vol, np.array([[10.0, 10.0, 10.0]]), 3.0)[0] == pytest.approx(0.0)
    rng = np.random.default_rng(1)
    signs = rng.choice([-1.0, 1.0], size=(20, 20, 20))
    g = np.meshgrid(*(np.arange(20) - 10.0 for _ in range(3)), indexing="ij")
    inside = g[0] ** 2 + g[1] ** 2 + g[2] ** 2 <= 9.0
    expected = np.sqrt(((signs[inside] - signs[inside].mean()) ** 2).sum())
    assert io.sphere_norms(signs, np.array([[10.0, 10.0, 10.0]]), 3.0)[0] == pytest.approx(expected)
    # a centre by the edge keeps only the voxels inside the volume
    assert io.sphere_norms(signs, np.array([[0.0, 0.0, 0.0]]), 3.0)[0] < expected


def _blobs(amplitudes, noise_sd, seed=0):
    shape = (40, 64, 64)
    centres = [(20.0, 16.0 + 32.0 * i, 32.0) for i in range(len(amplitudes))]
    g = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    signal = np.zeros(shape)
    for a, c in zip(amplitudes, centres):
        signal += a * np.exp(-sum((gi - ci) ** 2 for gi, ci in zip(g, c)) / (2 * 2.0**2))
    noise = np.random.default_rng(seed).normal(0, noise_sd, shape)
    return signal, noise, {"apo-ferritin": centres}


def test_dprime_scales_with_signal_and_inverse_noise():
    signal, noise, picks = _blobs([1.0, 2.0], 0.5)
    d = io.particle_dprime(signal, noise, picks, 10.0).dprime.to_numpy()
    assert d[1] / d[0] == pytest.approx(2.0, rel=0.05)
    d_noisier = io.particle_dprime(signal, 2 * noise, picks, 10.0).dprime.to_numpy()
    assert d / d_noisier == pytest.approx([2.0, 2.0], rel=0.05)
    empty = io.particle_dprime(np.zeros_like(signal), noise, picks, 10.0).dprime.to_numpy()
    assert np.all(empty < 1e-9)


def test_hits_use_half_the_radius():
    truth = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    picks = np.array([[29.0, 0.0, 0.0], [100.0, 31.0, 0.0]])
    assert io.hits(truth, picks, 60.0).tolist() == [True, False]
    assert io.hits(truth, np.zeros((0, 3)), 60.0).tolist() == [False, False]


def test_mark_found_matches_by_class_in_angstrom():
    table = pd.DataFrame({"particle_type": ["apo-ferritin", "ribosome"], "z": [1.0, 5.0], "y": [2.0, 5.0],
                          "x": [3.0, 5.0], "dprime": [1.0, 2.0]})  # fmt: skip
    picks = pd.DataFrame({"particle_type": ["apo-ferritin", "apo-ferritin"], "x": [30.0, 50.0], "y": [20.0, 50.0],
                          "z": [10.0, 50.0]})  # fmt: skip
    out = io.mark_found(table, picks, "default", 10.0)
    assert out.default.tolist() == [True, False]  # the pick at the ribosome is of another class


@pytest.mark.parametrize(
    ("zero", "verdict"),
    [
        (np.array([9.0, 10.0, 11.0]), "the particles are there; the network misses them"),
        (np.array([0.5, 1.0, 1.5]), "the imaging lost them"),
        (np.array([3.0, 4.0, 5.0]), "partly both"),
    ],
)
def test_reading_follows_the_preregistered_rule(zero, verdict):
    found = np.linspace(2.0, 20.0, 100)  # 5th percentile 2.9, 25th 6.5
    assert io.reading(found, zero)["verdict"] == verdict


def test_reading_refuses_empty_groups():
    with pytest.raises(ValueError, match="needs particles"):
        io.reading(np.array([]), np.array([1.0]))


def test_recall_by_bin_counts_each_particle_once():
    table = pd.DataFrame({"particle_type": ["apo-ferritin"] * 4, "dprime": [1.0, 1.5, 5.0, 30.0],
                          "default": [False, True, True, True]})  # fmt: skip
    rec = io.recall_by_bin(table, "default")
    assert rec.n.sum() == 4
    assert rec.loc["apo-ferritin"].recall.tolist() == [0.5, 1.0, 1.0]


def test_report_states_the_reading(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for r in range(6):
        zero = r < 2
        for i in range(5):
            d = rng.uniform(1, 3) if zero else rng.uniform(4, 20)
            rows.append(("apo-ferritin", 1.0, 2.0, 3.0, d, not zero and i < 4, True, f"TS_F_{r}", 10, zero))
        rows.append(("ribosome", 1.0, 2.0, 3.0, 50.0, True, True, f"TS_F_{r}", 10, False))
    table = pd.DataFrame(rows, columns=["particle_type", "z", "y", "x", "dprime", "default", "every_peak", "run",
                                        "seed", "zero_run"])  # fmt: skip
    zero = {c: [] for c in io.CLASSES}
    zero["apo-ferritin"] = ["TS_F_0", "TS_F_1"]
    knobs = [{"align_sd": 0.2 + r, "noise_mult": 1.0 + r % 2, "recon": "wbp"} for r in range(6)]
    info = {f"TS_F_{r}": {"fidelity": 1.0, "stored_match": 1.0, "knobs": knobs[r]} for r in range(6)}
    meta = {"command": "x", "when": "now", "machine": "m", "minutes": 0.1, "model": "default", "model_sha": "ab" * 32,
            "seeds": [10]}  # fmt: skip
    md = io.write_report(table, zero, info, "apo-ferritin", meta, tmp_path / "rep")
    text = md.read_text()
    assert "**Reading: the imaging lost them.**" in text
    assert "TS_F_0, TS_F_1" in text
    data = json.loads((tmp_path / "rep.json").read_text())
    assert data["reading"]["verdict"] == "the imaging lost them"
    assert len(data["particles"]) == len(table)


def test_scene_layout_holds_the_labelled_particles_and_the_clutter():
    from benchmarks.blind_sim_f import PX

    rep = io.replay_split(10, 1002, (96, 128, 128))
    layout = rep["layout"]
    particles = layout[layout.kind == "particle"]
    for name, centres in rep["picks"].items():
        mine = particles[particles.particle_type == name][["x", "y", "z"]].to_numpy()
        want = np.array([[c[2] * PX, c[1] * PX, c[0] * PX] for c in centres]).reshape(-1, 3)
        assert len(mine) == len(want)
        if len(want):  # the picks F writes are the layout's labelled particles, in the same frame
            assert np.allclose(np.sort(mine, axis=0), np.sort(want, axis=0))
    assert (layout.kind == "blob").sum() > len(particles)  # F always places distractors
    bottom, top = rep["slab"].surfaces(600.0, 600.0)
    assert 0 <= bottom < top <= 96 * PX


def test_false_positive_sources_read_an_f_layout():
    from benchmarks.fp_sources import false_positive_sources

    rep = io.replay_split(10, 1002, (96, 128, 128))
    layout = rep["layout"]
    blob = layout[layout.kind == "blob"].iloc[0]
    particle = layout[layout.kind == "particle"].iloc[0]
    other = next(c for c in io.CLASSES if c != particle.particle_type)
    picks = pd.DataFrame(
        {
            "particle_type": [other, other],
            "x": [blob.x, particle.x],
            "y": [blob.y, particle.y],
            "z": [blob.z, particle.z],
        }  # fmt: skip
    )
    counts = false_positive_sources(picks, layout, rep["slab"])
    assert counts.loc[other, "another class"] == 1
    assert counts.loc[other, ["look-alike", "other clutter"]].sum() == 1
    assert counts.to_numpy().sum() == 2
