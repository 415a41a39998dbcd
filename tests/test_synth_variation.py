"""Per-particle variation in the simulator (``particle_scale``, ``particle_aspect``, ``particle_density``)."""

import numpy as np
import pytest

from cryopoint.errors import ConfigError
from cryopoint.synth import get_preset
from cryopoint.synth.randomize import draw_run_params
from cryopoint.synth.sample import _vary, build_sample, draw_layout
from cryopoint.synth.shapes import Ellipsoid, Shape, Varied, particle_shape


def _ball(radius=50.0) -> Shape:
    return Shape((Ellipsoid((0.0, 0.0, 0.0), (radius, radius, radius), 1.0),), radius=radius, label="ribosome")


def _at(shape, x, y, z):
    return float(shape((np.float32([x]), np.float32([y]), np.float32([z])))[0])


def test_varied_stretches_each_axis_of_the_particle_frame_and_scales_its_density():
    v = Varied(_ball(), stretch=(1.3, 1.0, 0.8), density=1.7)
    assert v.label == "ribosome" and v.radius == pytest.approx(65.0) and v.extent >= _ball().extent * 1.3
    assert _at(v, 0, 0, 0) == pytest.approx(1.7, rel=1e-4)  # density factor at the centre
    # the half-density surface moves with the stretch: 65 Å along x, 50 along y, 40 along z
    assert _at(v, 65, 0, 0) == pytest.approx(0.85, rel=1e-3)
    assert _at(v, 0, 50, 0) == pytest.approx(0.85, rel=1e-3)
    assert _at(v, 0, 0, 40) == pytest.approx(0.85, rel=1e-3)
    assert _at(v, 0, 55, 0) < 0.3 < _at(v, 55, 0, 0)


def test_default_ranges_leave_shapes_alone_and_draw_nothing():
    """Datasets made before these knobs existed keep their bytes: no draw, the very same shape object."""
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    shape = particle_shape("ribosome")
    assert _vary(shape, get_preset("realistic"), rng, labelled=True) is shape
    assert rng.bit_generator.state == state


def test_density_varies_for_clutter_too_but_size_only_for_labelled_particles():
    params = get_preset("realistic", particle_scale=(1.2, 1.2), particle_density=(1.5, 1.5))
    labelled = _vary(particle_shape("ribosome"), params, np.random.default_rng(0), labelled=True)
    clutter = _vary(_ball(), params, np.random.default_rng(0), labelled=False)
    assert labelled.stretch == pytest.approx((1.2, 1.2, 1.2)) and labelled.density == pytest.approx(1.5)
    assert clutter.stretch == (1.0, 1.0, 1.0) and clutter.density == pytest.approx(1.5)


def test_aspect_draws_stay_within_the_documented_range():
    params = get_preset("realistic", particle_aspect=0.1, particle_scale=(0.9, 1.1))
    rng = np.random.default_rng(1)
    stretches = np.array([_vary(_ball(), params, rng, labelled=True).stretch for _ in range(200)])
    assert stretches.min() >= 0.9 * np.exp(-0.1) - 1e-9 and stretches.max() <= 1.1 * np.exp(0.1) + 1e-9
    assert np.ptp(stretches, axis=1).max() > 0.1  # the axes differ within one particle


def test_density_factor_darkens_every_labelled_particle_at_its_true_centre():
    """Same seed and draws, density x2 vs x1 (scale fixed): twice the density at each ground-truth centre."""
    counts = {"ribosome": 2, "thyroglobulin": 2, "apo-ferritin": 2}
    shape = (48, 128, 128)
    vols = []
    for dens in ((1.5, 1.5), (3.0, 3.0)):
        params = get_preset("easy", counts=counts, particle_density=dens, particle_scale=(1.1, 1.1))
        density, picks = build_sample(shape, params, np.random.default_rng(5))
        vols.append(density)
    idx = np.rint(picks[["z", "y", "x"]].to_numpy() / params.voxel_size).astype(int)
    centre = [(v[tuple(idx.T)]) for v in vols]
    assert len(picks) == 6
    np.testing.assert_allclose(centre[1], 2.0 * centre[0], rtol=1e-3)
    assert (centre[0][2:] > 1.0).all()  # solid ribosomes and thyroglobulins (apo-ferritin is a hollow cage)


def test_randomized_varied_preset_keeps_randomizing_and_validates_ranges():
    p = get_preset("randomized_varied")
    assert p.randomize and p.particle_scale[0] < 1 < p.particle_scale[1] and p.particle_density[1] > 1.5
    run = draw_run_params(p, np.random.default_rng(0))  # each run's draw keeps the per-particle ranges
    assert (run.particle_scale, run.particle_aspect, run.particle_density) == (
        p.particle_scale,
        p.particle_aspect,
        p.particle_density,
    )
    with pytest.raises(ConfigError, match="particle_scale"):
        get_preset("realistic", particle_scale=(1.2, 0.9))
    assert get_preset("realistic", particle_density=[1.8, 1.8]).particle_density == (1.8, 1.8)  # YAML/CLI lists
    with pytest.raises(ConfigError, match="particle_density"):
        get_preset("realistic", particle_density=[1.0, 1.5, 2.0])
    with pytest.raises(ConfigError, match="particle_aspect"):
        get_preset("realistic", particle_aspect=0.9)


def test_shift_error_range_scales_the_shift_draw_and_leaves_every_other_knob_alone():
    base = get_preset("randomized")
    assert base.shift_error_range == (0.0, 10.0)  # the range the preset always drew from
    wide = get_preset("randomized", shift_error_range=[0, 30])  # YAML and the CLI give lists
    assert wide.shift_error_range == (0.0, 30.0)
    shifts = []
    for seed in range(20):
        a, b = (draw_run_params(p, np.random.default_rng(seed)) for p in (base, wide))
        assert 0.0 <= a.shift_error <= 10.0 and 0.0 <= b.shift_error <= 30.0
        assert b.shift_error == pytest.approx(3.0 * a.shift_error)  # one uniform draw, scaled
        same = {f: getattr(a, f) == getattr(b, f) for f in a.__dataclass_fields__}
        assert [f for f, eq in same.items() if not eq] == ["shift_error", "shift_error_range"]
        shifts.append(b.shift_error)
    assert max(shifts) > 10.0  # the wide range reaches beyond the old one
    fixed = get_preset("randomized", shift_error_range=(7.0, 7.0))
    assert draw_run_params(fixed, np.random.default_rng(1)).shift_error == 7.0


@pytest.mark.parametrize("bad", [(-1.0, 5.0), (10.0, 5.0), (1.0, 2.0, 3.0)])
def test_shift_error_range_must_be_an_ordered_non_negative_pair(bad):
    with pytest.raises(ConfigError, match="shift_error_range"):
        get_preset("randomized", shift_error_range=bad)


def test_clutter_range_sets_the_clutter_draw_and_leaves_every_other_knob_alone():
    base = get_preset("randomized")
    assert base.clutter_range == (0.2, 3.0)  # the range the preset always drew from
    dense = get_preset("randomized", clutter_range=[0.2, 9.0])  # YAML and the CLI give lists
    assert dense.clutter_range == (0.2, 9.0)
    for seed in range(20):
        a, b = (draw_run_params(p, np.random.default_rng(seed)) for p in (base, dense))
        assert 0.2 <= a.clutter_per_particle <= 3.0 and 0.2 <= b.clutter_per_particle <= 9.0
        u = (a.clutter_per_particle - 0.2) / 2.8  # one uniform draw, mapped onto each range
        assert b.clutter_per_particle == pytest.approx(0.2 + u * 8.8)
        same = {f: getattr(a, f) == getattr(b, f) for f in a.__dataclass_fields__}
        assert [f for f, eq in same.items() if not eq] == ["clutter_per_particle", "clutter_range"]
    fixed = get_preset("randomized", clutter_range=(5.0, 5.0))
    assert draw_run_params(fixed, np.random.default_rng(1)).clutter_per_particle == 5.0


def test_a_denser_clutter_range_places_more_unlabelled_objects():
    counts = {}
    for name, rng_ in (("base", (0.2, 3.0)), ("dense", (8.0, 9.0))):
        params = draw_run_params(get_preset("randomized", clutter_range=rng_), np.random.default_rng(3))
        _, objects = draw_layout((48, 128, 128), params, np.random.default_rng(4))
        counts[name] = sum(1 for o in objects if o.shape.label is None)
    assert counts["dense"] > counts["base"]


@pytest.mark.parametrize("bad", [(-1.0, 5.0), (10.0, 5.0), (1.0, 2.0, 3.0)])
def test_clutter_range_must_be_an_ordered_non_negative_pair(bad):
    with pytest.raises(ConfigError, match="clutter_range"):
        get_preset("randomized", clutter_range=bad)
