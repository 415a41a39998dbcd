"""Random class designs (``SynthParams.class_designs``, :mod:`cryopoint.synth.designs`)."""

import numpy as np
import pytest

from cryopoint.errors import ConfigError, UnknownParticleError
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.synth import get_preset
from cryopoint.synth.designs import HOLLOW_CLASSES, center_of_mass, class_design, shape_volume
from cryopoint.synth.sample import _class_designs, _designed, draw_layout
from cryopoint.synth.shapes import particle_shape


def _at(shape, x, y, z):
    return float(shape((np.float32([x]), np.float32([y]), np.float32([z])))[0])


@pytest.mark.parametrize("name", PARTICLE_NAMES)
def test_a_design_keeps_the_class_label_its_volume_and_its_centre(name):
    rng = np.random.default_rng(3)
    reference = shape_volume(particle_shape(name), spacing=2.5)
    for _ in range(8):
        design = class_design(name, rng, volume_range=(1.2, 1.2))
        assert design.label == name
        # the mass, as drawn: solid lobes are sized by measurement; a shell's channels and bumps move it a little
        tolerance = 0.12 if name in HOLLOW_CLASSES else 0.04
        assert shape_volume(design, spacing=2.5) / reference == pytest.approx(1.2, rel=tolerance)
        assert np.abs(center_of_mass(design)).max() < 2.0  # Å: the ground-truth point is the centroid
        assert design.radius >= max(p.extent for p in design.parts) - 1e-6  # overlap checks stay conservative


def test_cages_stay_hollow_and_solid_classes_are_lobes_of_varying_shape():
    rng = np.random.default_rng(0)
    for name in HOLLOW_CLASSES:
        design = class_design(name, rng)
        assert _at(design, 0, 0, 0) < 0.35  # an empty (apo-ferritin) or faint (capsid) centre
    elongations, lobes = [], set()
    for _ in range(20):
        design = class_design("thyroglobulin", rng)
        lobes.add(len(design.parts))
        axes = np.array([p.axes for p in design.parts])
        centres = np.array([p.center for p in design.parts])
        span = (np.abs(centres) + axes).max(axis=0)  # half size along x, y, z of the particle frame
        elongations.append(span.max() / span.min())
    assert len(lobes) >= 4  # lobe count is not a signature
    assert min(elongations) < 1.4 and max(elongations) > 1.8  # from compact to elongated


def test_two_designs_of_one_class_differ_and_unknown_names_are_refused():
    a, b = (class_design("beta-galactosidase", np.random.default_rng(s)) for s in (1, 2))
    assert a != b
    with pytest.raises(UnknownParticleError):
        class_design("lysozyme", np.random.default_rng(0))


def test_the_knobs_are_validated():
    with pytest.raises(ConfigError, match="class_designs"):
        get_preset("realistic", class_designs=1.5)
    for bad in ((1.2, 0.8), (0.0, 1.0), (1.0,)):
        with pytest.raises(ConfigError, match="design_volume_range"):
            get_preset("realistic", design_volume_range=bad)
    with pytest.raises(ValueError, match="volume_range"):
        class_design("thyroglobulin", np.random.default_rng(0), volume_range=(-1.0, 1.0))
    assert get_preset("realistic", design_volume_range=[0.9, 1.1]).design_volume_range == (0.9, 1.1)  # CLI lists


def test_a_narrow_volume_range_keeps_heavier_solid_classes_larger_and_the_default_does_not():
    solid = ("beta-amylase", "beta-galactosidase", "thyroglobulin")  # in order of mass

    def volumes(volume_range, seed):
        rng = np.random.default_rng(seed)
        return [shape_volume(class_design(n, rng, volume_range), spacing=2.5) for n in solid]

    narrow = [volumes((0.85, 1.15), seed) for seed in range(6)]
    assert all(v[0] < v[1] < v[2] for v in narrow)
    assert max(v[1] for v in narrow) < min(v[2] for v in narrow)  # across runs too: size names the class
    wide = [volumes((0.7, 1.4), seed) for seed in range(12)]
    assert max(v[1] for v in wide) > min(v[2] for v in wide)  # the default lets the two overlap across runs


def test_the_volume_range_reaches_the_sampler():
    params = get_preset("realistic", class_designs=1.0, design_volume_range=(1.3, 1.3))
    designs = _class_designs(params, np.random.default_rng(2))
    for name in ("beta-amylase", "thyroglobulin"):
        ratio = shape_volume(designs[name], spacing=2.5) / shape_volume(particle_shape(name), spacing=2.5)
        assert ratio == pytest.approx(1.3, rel=0.1)


def test_off_draws_nothing_and_each_class_coin_leaves_the_other_designs_alone():
    rng = np.random.default_rng(4)
    state = rng.bit_generator.state
    assert _class_designs(get_preset("realistic"), rng) == {}
    assert rng.bit_generator.state == state
    everything = _class_designs(get_preset("realistic", class_designs=1.0), np.random.default_rng(7))
    half = _class_designs(get_preset("realistic", class_designs=0.5), np.random.default_rng(7))
    assert set(everything) == set(PARTICLE_NAMES) and 0 < len(half) < len(PARTICLE_NAMES)
    assert all(half[name] == everything[name] for name in half)


def test_every_particle_of_a_designed_class_in_a_run_shares_the_runs_design():
    counts = {"thyroglobulin": 3, "beta-galactosidase": 3, "apo-ferritin": 2}
    params = get_preset("easy", counts=counts, class_designs=1.0, clutter_per_particle=0.0)
    _, objects = draw_layout((48, 160, 160), params, np.random.default_rng(2))
    labelled = [o.shape for o in objects if o.shape.label is not None]
    assert len(labelled) == 8
    for name in counts:
        shapes = {id(s) for s in labelled if s.label == name}
        assert len(shapes) == 1 and next(s for s in labelled if s.label == name) != particle_shape(name)
    plain = get_preset("easy", counts=counts, clutter_per_particle=0.0)
    _, objects = draw_layout((48, 160, 160), plain, np.random.default_rng(2))
    assert all(o.shape == particle_shape(o.shape.label) for o in objects if o.shape.label is not None)


def test_a_class_with_a_density_map_keeps_its_map():
    params = get_preset("easy", class_designs=1.0, particle_maps={"ribosome": "ribosome.mrc"})
    designs = {"ribosome": class_design("ribosome", np.random.default_rng(0))}
    mapped = object()
    assert _designed("ribosome", mapped, designs, params) is mapped
    assert _designed("ribosome", mapped, designs, get_preset("easy", class_designs=1.0)) is designs["ribosome"]
