"""The real-space generation path, the reconstruction looks and the randomized preset: invariants that matter."""

import numpy as np
import pytest
from scipy import ndimage

from cryopoint.errors import ConfigError
from cryopoint.io import read_tomogram, read_truth, tomogram_path
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.synth import generate_dataset, get_preset, randomize
from cryopoint.synth.looks import ctf_deconvolve, make_kind
from cryopoint.synth.params import VOXEL_SIZE
from cryopoint.synth.randomize import draw_run_params
from cryopoint.synth.realspace import backproject, project, projection_matrix, tilt_scheme
from cryopoint.synth.simulate import simulate_kinds


def test_tilt_scheme_is_symmetric_and_dose_symmetric():
    angles, order = tilt_scheme(60.0, 3.0)
    assert len(angles) == 41 and angles[0] == -60.0 and angles[-1] == 60.0
    assert sorted(order.tolist()) == list(range(41))
    assert angles[order[0]] == 0.0 and abs(angles[order[1]]) == abs(angles[order[2]]) == 3.0
    assert np.all(np.diff(np.abs(angles[order])) >= 0)  # each image further out than the previous one


def test_projection_conserves_mass_and_puts_an_object_where_geometry_says():
    zz, xx = np.mgrid[:21, :41].astype(np.float32)
    vol = np.zeros((21, 5, 41), np.float32)
    # a smooth blob at z = 15 - 10 = +5, x = 28 - 20 = +8 (centred voxel coordinates), in row y = 2
    vol[:, 2] = np.exp(-((zz - 15) ** 2 + (xx - 28) ** 2) / (2 * 2.0**2))
    mass = float(vol.sum())
    for angle in (0.0, 20.0, -35.0, 55.0):
        img = project(vol, angle)
        assert img.shape == (5, 41)
        # the integral over the detector is the object's mass at any tilt (rays are 1 / cos θ long in a slice)
        assert img.sum() == pytest.approx(mass, rel=0.01)
        u = 8 * np.cos(np.radians(angle)) + 5 * np.sin(np.radians(angle))
        centroid = (img[2] * np.arange(41)).sum() / img[2].sum() - 20
        assert centroid == pytest.approx(u, abs=0.1)
        assert img[[0, 1, 3, 4]].max() == 0.0  # tilting about y never mixes y rows


def test_backprojection_is_the_adjoint_of_projection():
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((12, 4, 30)).astype(np.float32)
    img = rng.standard_normal((4, 30)).astype(np.float32)
    for angle in (0.0, 33.0, -60.0):
        lhs = float((project(vol, angle) * img).sum())
        rhs = float((vol * backproject(img, angle, vol.shape)).sum())
        assert lhs == pytest.approx(rhs, rel=1e-4)
    assert projection_matrix(12, 30, 10.0).shape == (30, 12 * 30)


def _dark_at_particles(vol: np.ndarray, picks, voxel_size: float) -> float:
    """Mean of the smoothed, standardised volume at the particle centres (negative = protein dark)."""
    smooth = ndimage.gaussian_filter(vol.astype(np.float64), 2.0)
    smooth = (smooth - smooth.mean()) / smooth.std()
    idx = np.round(picks[["z", "y", "x"]].to_numpy() / voxel_size).astype(int)
    return float(smooth[idx[:, 0], idx[:, 1], idx[:, 2]].mean())


@pytest.fixture(scope="module")
def realspace_run():
    params = get_preset(
        "easy",
        imaging="realspace",
        kinds=("wbp", "ctfdeconvolved", "denoised"),
        denoiser="gaussian",
        counts={"ribosome": 3, "virus-like-particle": 2, "thyroglobulin": 2},
        dose=(400.0, 400.0),
    )
    return simulate_kinds((48, 128, 128), params, np.random.default_rng(3)), params


def test_realspace_kinds_are_written_in_order_and_keep_protein_dark(realspace_run):
    (volumes, picks), params = realspace_run
    assert list(volumes) == ["wbp", "ctfdeconvolved", "denoised"]
    assert len(picks) == 7 and picks.attrs["synth"]["imaging"] == "realspace"
    for kind, vol in volumes.items():
        assert vol.shape == (48, 128, 128) and vol.dtype == np.float32 and np.isfinite(vol).all()
        assert 1e-7 < float(vol.std()) < 1e-3, kind  # raw challenge-like scale, not normalised
        assert _dark_at_particles(vol, picks, params.voxel_size) < -0.5, kind


def test_realspace_is_deterministic_per_seed():
    params = get_preset("easy", imaging="realspace", counts={"ribosome": 1}, tilt_step=6.0)
    a, _ = simulate_kinds((24, 64, 64), params, np.random.default_rng(5))
    b, _ = simulate_kinds((24, 64, 64), params, np.random.default_rng(5))
    c, _ = simulate_kinds((24, 64, 64), params, np.random.default_rng(6))
    assert np.array_equal(a["denoised"], b["denoised"]) and not np.array_equal(a["denoised"], c["denoised"])


def test_missing_wedge_elongates_along_z_on_the_realspace_path():
    """A dense bead's reconstruction spreads further along z than along x (the missing wedge)."""
    vol = np.zeros((48, 8, 64), np.float32)
    zz, xx = np.mgrid[:48, :64]
    vol[:, 4] = 3.0 * np.exp(-((zz - 24) ** 2 + (xx - 32) ** 2) / 8.0)
    from cryopoint.synth.realspace import reconstruct_realspace

    params = get_preset(
        "realistic", tilt_max=45.0, tilt_step=3.0, amplitude_contrast=1.0, bfactor=0.0, angle_error=0.0, shift_error=0.0
    )
    rec, _ = reconstruct_realspace(vol, params, np.random.default_rng(0), defocus_um=0.0, dose=1e6, thickness=1500.0)
    prof = np.abs(rec[:, 4])
    z_width = (prof[:, 32] > 0.3 * prof.max()).sum()
    x_width = (prof[24, :] > 0.3 * prof.max()).sum()
    assert z_width > 1.3 * x_width


def test_ctf_deconvolution_keeps_protein_dark():
    params = get_preset("realistic")
    vol = np.zeros((32, 32, 32), np.float32)
    vol[12:20, 12:20, 12:20] = -1.0  # a dark cube, as protein after imaging
    out = ctf_deconvolve(vol, defocus_um=3.0, params=params)
    assert out[14:18, 14:18, 14:18].mean() < 0 < out[:4].mean() + 1.0


def test_unmodelled_or_mismatched_kinds_are_refused():
    with pytest.raises(ConfigError, match="isonetcorrected"):
        get_preset("easy", imaging="realspace", kinds=("isonetcorrected",))
    with pytest.raises(ConfigError, match="Fourier path writes only"):
        get_preset("easy", kinds=("wbp",))
    with pytest.raises(ConfigError, match="imaging must be one of"):
        get_preset("easy", imaging="xray")
    with pytest.raises(ConfigError, match="isonetcorrected"):
        make_kind("isonetcorrected", np.zeros((4, 4, 4), np.float32), params=get_preset("easy"), defocus_um=3.0)


def test_generate_dataset_writes_every_kind_in_the_challenge_layout(tmp_path):
    params = {"imaging": "realspace", "kinds": ("wbp", "denoised"), "denoiser": "tv", "tilt_step": 5.0}
    generate_dataset(tmp_path, runs=1, shape=(32, 96, 96), preset="easy", seed=1, counts={"ribosome": 2}, **params)
    for kind in ("wbp", "denoised"):
        tomo = read_tomogram(tomogram_path(tmp_path, "TS_SYN1_1", kind=kind))
        assert tomo.shape == (32, 96, 96) and tomo.voxel_size == pytest.approx((VOXEL_SIZE,) * 3)
    assert not (tmp_path / "train/static/ExperimentRuns/TS_SYN1_1/VoxelSpacing10.000/ctfdeconvolved.zarr").exists()
    assert list(read_truth(tmp_path).particle_type) == ["ribosome", "ribosome"]


def test_randomized_runs_draw_their_knobs_within_the_documented_ranges():
    base = get_preset("randomized")
    draws = [draw_run_params(base, np.random.default_rng(i)) for i in range(60)]
    assert {d.imaging for d in draws} == {"fourier", "realspace"}
    assert {d.shape_model for d in draws} == {"analytic", "assembly", "mixed"}
    assert {d.denoiser for d in draws} == {"none", "gaussian", "tv", "wiener"}
    for d in draws:
        assert not d.randomize and 40.0 <= d.tilt_max <= 70.0 and 1.5 <= d.defocus_um[0] <= 7.0
        assert d.gain[0] > 0 and d.phase_contrast > 0 and d.vacuum_contrast <= 0
        assert d.imaging == "realspace" or d.kinds == ("denoised",)
    assert len({d.tilt_max for d in draws}) == 60  # continuous draws, not a few fixed values
    # the Fourier path's SNR spans very noisy to denoised-clean: a model must have seen clean tomograms too
    snrs = [d.snr for d in draws]
    assert min(snrs) >= 0.15 and max(snrs) <= 20.0
    assert min(snrs) < 0.3 and max(snrs) > 10.0 and sum(s > 6.0 for s in snrs) >= 8


def test_randomized_run_keeps_protein_dark_and_records_its_draw():
    vols, picks = simulate_kinds(
        (48, 128, 128),
        get_preset("randomized", counts={"ribosome": 3, "virus-like-particle": 2}),
        np.random.default_rng(1),
    )
    vol = vols["denoised"]
    assert set(picks.particle_type) <= set(PARTICLE_NAMES) and len(picks) == 5
    assert picks.attrs["synth"]["imaging"] in ("fourier", "realspace")
    assert _dark_at_particles(vol, picks, VOXEL_SIZE) < 0


def test_randomized_keep_pins_named_knobs_and_leaves_every_other_draw_alone():
    base = get_preset("randomized")
    pinned = get_preset("randomized", keep=["shape_model", "tilt_max"], shape_model="analytic", tilt_max=55.0)
    assert pinned.keep == ("shape_model", "tilt_max")
    models = set()
    for seed in range(12):
        free = draw_run_params(base, np.random.default_rng(seed))
        kept = draw_run_params(pinned, np.random.default_rng(seed))
        models.add(free.shape_model)
        assert kept.shape_model == "analytic" and kept.tilt_max == 55.0
        assert (kept.snr, kept.imaging, kept.defocus_um, kept.crowding) == (
            free.snr, free.imaging, free.defocus_um, free.crowding
        )  # fmt: skip
    assert len(models) > 1  # without keep the particle model is drawn
    with pytest.raises(ConfigError, match="does not draw"):
        draw_run_params(get_preset("randomized", keep=["voxel_size"]), np.random.default_rng(0))


def test_randomized_runs_draw_filaments_in_about_half_and_leave_the_rest_of_the_stream_alone(monkeypatch):
    base = get_preset("randomized")
    draws = [draw_run_params(base, np.random.default_rng(i)) for i in range(80)]
    counts = np.array([d.filaments_per_volume for d in draws])
    assert 25 <= int((counts > 0).sum()) <= 55  # about half: purified samples and cells
    assert counts[counts > 0].min() >= 5.0 and counts.max() <= 40.0
    fractions = [d.microtubule_fraction for d in draws]
    assert min(fractions) < 0.2 and max(fractions) > 0.8

    # the filament knobs take no numbers from the run's stream: a run without filaments is the run it was
    # before they were added (its stream continues exactly as without the filament draw)
    def next_number_after_the_draw(seed):
        rng = np.random.default_rng(seed)
        draw_run_params(base, rng)
        return rng.random()

    after = [next_number_after_the_draw(seed) for seed in range(6)]
    monkeypatch.setattr(randomize, "_draw_filaments", lambda drawn: {})
    assert after == [next_number_after_the_draw(seed) for seed in range(6)]
    monkeypatch.undo()
    # and keep pins them: no filaments in any run when asked
    none = get_preset("randomized", keep=["filaments_per_volume"])
    assert all(draw_run_params(none, np.random.default_rng(i)).filaments_per_volume == 0 for i in range(20))
    _, picks = simulate_kinds((32, 96, 96), get_preset("randomized"), np.random.default_rng(3))
    drawn = draw_run_params(base, np.random.default_rng(3)).filaments_per_volume
    assert drawn > 0 and picks.attrs["synth"]["filaments_per_volume"] == drawn  # the record says what was drawn
