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
    reference = shape_volume(particle_shape(name))
    for _ in range(4):
        design = class_design(name, rng)
        assert design.label == name
        assert 0.6 < shape_volume(design) / reference < 1.6  # the mass, within the drawn factor (0.7-1.4)
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


def test_the_knob_is_validated():
    with pytest.raises(ConfigError, match="class_designs"):
        get_preset("realistic", class_designs=1.5)


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
