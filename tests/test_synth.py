"""Synthetic dataset: requested counts, geometry, exact truth, determinism, missing wedge, challenge layout."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryopoint.errors import ConfigError, OutputExistsError, UnknownParticleError
from cryopoint.io import read_tomogram, read_truth
from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.synth import generate_dataset, get_preset, simulate_run
from cryopoint.synth.dataset import run_rng
from cryopoint.synth.imaging import ctf, electron_wavelength
from cryopoint.synth.params import REAL_MEAN_COUNTS, REAL_SHAPE, VOXEL_SIZE
from cryopoint.synth.sample import draw_counts, draw_slab, place_objects
from cryopoint.synth.shapes import particle_shape, random_blob, random_shell

ONE_EACH = {n: 1 for n in PARTICLE_NAMES}


def test_requested_counts_and_classes():
    counts = {"apo-ferritin": 3, "beta-amylase": 2, "beta-galactosidase": 1, "ribosome": 1}
    vol, picks = simulate_run((48, 96, 96), get_preset("easy", counts=counts), np.random.default_rng(1))
    assert vol.shape == (48, 96, 96) and vol.dtype == np.float32
    assert picks["particle_type"].value_counts().to_dict() == counts
    assert list(picks.columns) == ["particle_type", "x", "y", "z"]


def test_default_counts_follow_real_runs_scaled_by_volume():
    params = get_preset("realistic")
    draws = pd.DataFrame([draw_counts(REAL_SHAPE, params, np.random.default_rng(i)) for i in range(300)])
    for name in PARTICLE_NAMES:  # mean over many runs within 10 % of the challenge's per-run mean
        assert draws[name].mean() == pytest.approx(REAL_MEAN_COUNTS[name], rel=0.1)
    quarter = pd.DataFrame([draw_counts((92, 315, 630), params, np.random.default_rng(i)) for i in range(300)])
    assert quarter["ribosome"].mean() == pytest.approx(REAL_MEAN_COUNTS["ribosome"] / 4, rel=0.15)


def test_centres_inside_volume_and_exact_in_angstrom():
    shape = (48, 96, 96)
    _, picks = simulate_run(shape, get_preset("easy", counts=ONE_EACH), np.random.default_rng(2))
    assert len(picks) == 6
    for axis, n in zip("zyx", shape, strict=True):
        assert picks[axis].between(0, (n - 1) * VOXEL_SIZE).all()
    # centres are continuous positions, not snapped to the voxel grid
    assert not np.allclose(picks[["x", "y", "z"]].to_numpy() / VOXEL_SIZE % 1, 0)


def test_no_two_objects_overlap_in_a_crowded_volume():
    shape = (64, 200, 200)
    params = get_preset("realistic", crowding=4.0)
    rng = np.random.default_rng(3)
    objects = place_objects(shape, params, rng, draw_slab(shape, params, rng))
    balls = [o for o in objects if not o.membrane]
    labelled = [o for o in balls if o.shape.label is not None]
    assert len(labelled) > 20 and len(balls) > len(labelled)  # clutter present too
    centres = np.array([o.center for o in balls])
    radii = np.array([o.shape.radius for o in balls])
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    need = radii[:, None] + radii[None] + params.min_gap
    np.fill_diagonal(dist, np.inf)
    assert (dist >= need).all()


def test_shapes_fit_their_catalogue_radius_and_ferritin_is_hollow():
    for name in PARTICLE_NAMES:
        shape = particle_shape(name)
        assert shape.radius == get_particle(name).radius
        # every primitive stays inside the catalogue radius (the soft edge may reach a few Å beyond)
        assert max(p.extent for p in shape.parts) <= shape.radius
    ferritin = particle_shape("apo-ferritin")
    r = np.array([0.0, 20.0, 48.0, 80.0], dtype=np.float32)
    values = ferritin((r, np.zeros_like(r), np.zeros_like(r)))
    assert values[0] < 0.05 and values[1] < 0.05 and values[2] > 0.5 and values[3] < 0.05
    with pytest.raises(UnknownParticleError):
        particle_shape("ribosomes")


def test_protein_is_darker_than_ice_and_values_are_tiny():
    vol, picks = simulate_run((64, 128, 128), get_preset("easy", counts={"ribosome": 2}), np.random.default_rng(4))
    assert 1e-7 < vol.std() < 1e-4 and np.abs(vol).max() < 1e-3
    idx = np.round(picks[["z", "y", "x"]].to_numpy() / VOXEL_SIZE).astype(int)
    at_centres = vol[idx[:, 0], idx[:, 1], idx[:, 2]]
    assert (at_centres < np.median(vol)).all()


def test_missing_wedge_in_fourier_power():
    vol, _ = simulate_run((64, 64, 64), get_preset("easy", snr=1.0, crowding=40.0), np.random.default_rng(5))
    power = np.abs(np.fft.rfftn(vol - vol.mean())) ** 2
    fz = np.fft.fftfreq(64)[:, None, None]
    fy = np.fft.fftfreq(64)[None, :, None]
    fx = np.fft.rfftfreq(64)[None, None, :]
    k = np.sqrt(fz**2 + fy**2 + fx**2) + 0 * fx
    angle = np.degrees(np.arctan2(np.abs(fz), np.abs(fx))) + 0 * fy  # angle from kx in the kx-kz plane
    band = (k > 0.06) & (k < 0.25)  # above the slow background drift, below the smoothed-away frequencies
    wedge = power[band & (angle > 70)].mean()
    sampled = power[band & (angle < 50)].mean()
    assert wedge < 1e-2 * sampled  # the slow drift (not periodic) leaks a little power everywhere


def test_params_validation():
    with pytest.raises(ConfigError, match="valid"):
        get_preset("realistic", not_a_knob=1)
    with pytest.raises(ConfigError, match="easy"):
        get_preset("hard")
    with pytest.raises(ConfigError, match="unknown particle"):
        get_preset("easy", counts={"ribosomes": 1})
    with pytest.raises(ConfigError, match="fewer"):  # 30 ribosomes cannot fit in a 32 x 64 x 64 volume
        simulate_run((32, 64, 64), get_preset("easy", counts={"ribosome": 30}), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="shape"):
        simulate_run((32, 64), get_preset("easy"), np.random.default_rng(0))


def test_small_tomogram_generation():
    """The realistic preset on a small volume: the right array, every particle inside it and darker than its
    surroundings (protein scatters more than ice) where the truth table says it is; reproducible."""
    shape = (48, 128, 128)
    params = get_preset("realistic", counts=ONE_EACH)
    vol, picks = simulate_run(shape, params, np.random.default_rng(0))
    assert vol.shape == shape and vol.dtype == np.float32 and np.isfinite(vol).all() and vol.std() > 0
    assert list(picks.columns) == ["particle_type", "x", "y", "z"]
    assert sorted(picks["particle_type"]) == sorted(PARTICLE_NAMES)
    for axis, n in zip("zyx", shape, strict=True):
        assert picks[axis].between(0, (n - 1) * VOXEL_SIZE).all(), axis
    # Local contrast: mean inside each particle's catalogue ball minus the mean of a shell around it
    # (1.2-1.8 radii), in units of the volume's standard deviation.
    grid = np.meshgrid(*[np.arange(n) * VOXEL_SIZE for n in shape], indexing="ij")
    contrast = []
    for row in picks.itertuples():
        d = np.sqrt((grid[0] - row.z) ** 2 + (grid[1] - row.y) ** 2 + (grid[2] - row.x) ** 2)
        radius = get_particle(row.particle_type).radius
        shell = vol[(d > 1.2 * radius) & (d <= 1.8 * radius)]
        contrast.append((vol[d <= radius].mean() - shell.mean()) / vol.std())
    contrast = np.array(contrast)
    # Darker than their surroundings (noise and neighbours can blur one); x and y swapped gives about -0.2.
    assert (contrast < 0).sum() >= 5 and contrast.mean() < -0.5, contrast
    again, same = simulate_run(shape, params, np.random.default_rng(0))
    assert np.array_equal(again, vol) and same.equals(picks)  # the generator is the only source of randomness


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_layout_truth_and_determinism(tmp_path):
    kw = dict(runs=2, shape=(32, 64, 64), seed=7, preset="easy", crowding=25.0)
    names = generate_dataset(tmp_path / "a", **kw)
    generate_dataset(tmp_path / "b", **kw)
    assert names == ["TS_SYN7_1", "TS_SYN7_2"]
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), "same seed must give identical bytes"
    generate_dataset(tmp_path / "c", **{**kw, "seed": 8})
    assert _tree_bytes(tmp_path / "c") != a

    run = tmp_path / "a" / "train" / "static" / "ExperimentRuns" / names[0] / "VoxelSpacing10.000" / "denoised.zarr"
    assert (run / ".zgroup").is_file() and (run / ".zattrs").is_file()
    for level, size in (("0", 64), ("1", 32), ("2", 16)):
        meta = json.loads((run / level / ".zarray").read_text())
        assert meta["zarr_format"] == 2 and meta["dtype"] == "<f4" and meta["shape"][2] == size
        assert meta["compressor"]["id"] == "blosc"
    scale = json.loads((run / ".zattrs").read_text())["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    assert scale[0]["scale"] == [VOXEL_SIZE] * 3
    tomo = read_tomogram(run)
    assert tomo.voxel_size == (VOXEL_SIZE,) * 3 and tomo.data.shape == (32, 64, 64)

    picks_dir = tmp_path / "a" / "train" / "overlay" / "ExperimentRuns" / names[0] / "Picks"
    assert sorted(p.name for p in picks_dir.iterdir()) == sorted(f"{n}.json" for n in PARTICLE_NAMES)
    doc = json.loads((picks_dir / "apo-ferritin.json").read_text())
    assert doc["pickable_object_name"] == "apo-ferritin" and doc["unit"] == "angstrom" and doc["run_name"] == names[0]

    truth = read_truth(tmp_path / "a")
    for name in names:  # the files hold exactly the simulator's truth for that run
        _, expected = simulate_run(kw["shape"], get_preset("easy", crowding=25.0), run_rng(7, "train", name))
        got = truth[truth["experiment"] == name].sort_values(["particle_type", "x"]).reset_index(drop=True)
        expected = expected.sort_values(["particle_type", "x"]).reset_index(drop=True)
        assert len(got) == len(expected) > 0
        assert (got["particle_type"] == expected["particle_type"]).all()
        np.testing.assert_allclose(got[["x", "y", "z"]], expected[["x", "y", "z"]], rtol=0, atol=1e-6)


def test_runs_simulated_in_parallel_processes_are_byte_identical(tmp_path):
    kw = dict(runs=3, shape=(32, 64, 64), seed=7, preset="randomized")
    serial = generate_dataset(tmp_path / "serial", **kw)
    parallel = generate_dataset(tmp_path / "parallel", processes=2, **kw)
    assert parallel == serial == ["TS_SYN7_1", "TS_SYN7_2", "TS_SYN7_3"]  # names in run order, not finish order
    a, b = _tree_bytes(tmp_path / "serial"), _tree_bytes(tmp_path / "parallel")
    assert len(a) > 3 * 6 and a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    with pytest.raises(ConfigError, match="processes"):
        generate_dataset(tmp_path / "bad", processes=0, **kw)


def test_test_split_differs_from_train(tmp_path):
    kw = dict(runs=1, shape=(32, 64, 64), seed=0, preset="easy")
    (train,) = generate_dataset(tmp_path, **kw)
    (test,) = generate_dataset(tmp_path, split="test", **kw)
    assert train != test and (tmp_path / "test" / "static" / "ExperimentRuns" / test).is_dir()
    with pytest.raises(ConfigError, match="split"):
        generate_dataset(tmp_path, split="val", **kw)


def test_ctf_and_wavelength():
    params = get_preset("realistic")
    assert electron_wavelength(300.0) == pytest.approx(0.01969, abs=1e-5)
    # at k = 0 only amplitude contrast is left, with the sign that makes protein dark
    assert ctf(np.array([0.0]), 3.0, params)[0] == pytest.approx(-params.amplitude_contrast)
    # first zero of a 3 µm underfocus CTF just below γ = π, i.e. k = 1/sqrt(λ Δf) ≈ 1/24.3 Å⁻¹
    k = np.linspace(0.005, 0.06, 4000)
    first_zero = k[np.argmax(np.diff(np.sign(ctf(k, 3.0, get_preset("realistic", bfactor=0.0)))) != 0)]
    assert 1 / 26 < first_zero < 1 / 24.3


def test_denoising_removes_high_frequencies():
    def high_fraction(strength):
        params = get_preset("realistic", denoise_strength=strength, counts={"ribosome": 1}, background_drift=0.0)
        vol, _ = simulate_run((32, 64, 64), params, np.random.default_rng(9))
        power = np.abs(np.fft.rfftn(vol - vol.mean())) ** 2
        k = np.sqrt(
            np.fft.fftfreq(32)[:, None, None] ** 2
            + np.fft.fftfreq(64)[None, :, None] ** 2
            + np.fft.rfftfreq(64)[None, None, :] ** 2
        )
        return power[k > 0.2].sum() / power.sum()

    assert high_fraction(2.0) < 0.1 * high_fraction(0.0)


def test_existing_runs_are_not_overwritten(tmp_path, monkeypatch):
    kw = dict(runs=1, shape=(32, 64, 64), preset="easy")
    generate_dataset(tmp_path, **kw)
    with pytest.raises(OutputExistsError):
        generate_dataset(tmp_path, **kw)
    assert generate_dataset(tmp_path, overwrite=True, **kw) == ["TS_SYN0_1"]

    # Refused before anything is simulated or written, also when only the picks of a later run exist.
    import cryopoint.synth.dataset as synth_dataset

    calls = []
    monkeypatch.setattr(synth_dataset, "simulate_kinds", lambda *a, **k: calls.append(a))
    picks = tmp_path / "train/overlay/ExperimentRuns/TS_SYN0_3/Picks"
    picks.mkdir(parents=True)
    (picks / "ribosome.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="TS_SYN0_3"):
        generate_dataset(tmp_path, **{**kw, "runs": 3})
    assert calls == [] and not (tmp_path / "train/static/ExperimentRuns/TS_SYN0_2").exists()


def _peak_density(shape, spacing=4.0):
    r = shape.radius
    axis = np.arange(-r, r + spacing, spacing, dtype=np.float32)
    u = np.meshgrid(axis, axis, axis, indexing="ij")
    return float(shape(tuple(u)).max())


def test_no_class_coded_intensity_and_the_capsid_is_a_shell_with_faint_interior():
    """Labelled particles peak within the density range of unlabelled clutter: only shape and size tell them apart."""
    rng = np.random.default_rng(0)
    clutter = [random_blob(rng) for _ in range(20)] + [random_shell(rng) for _ in range(5)]
    lo, hi = min(_peak_density(c) for c in clutter), max(_peak_density(c) for c in clutter)
    for name in PARTICLE_NAMES:
        assert lo - 0.05 <= _peak_density(particle_shape(name)) <= hi + 0.05, name
    vlp = particle_shape("virus-like-particle")
    r = np.array([0.0, 60.0, 110.0, 150.0], dtype=np.float32)
    inside, interior, wall, outside = vlp((r, np.zeros_like(r), np.zeros_like(r)))
    assert 0.1 < inside < 0.35 and 0.1 < interior < 0.35 and wall > 0.9 and outside < 0.01


def test_particles_sit_at_all_depths_of_the_ice_not_one_plane():
    shape = (96, 160, 160)
    params = get_preset("realistic", crowding=4.0)
    rng = np.random.default_rng(11)
    slab = draw_slab(shape, params, rng)
    objects = place_objects(shape, params, rng, slab)
    x, y, z = np.array([o.center for o in objects if o.shape.label is not None]).T
    bottom, top = slab.surfaces(x, y)
    depth = (z - bottom) / (top - bottom)  # 0 at the lower ice surface, 1 at the upper one
    assert len(z) > 15 and depth.min() < 0.3 and depth.max() > 0.7 and 0.15 < depth.std() < 0.35
