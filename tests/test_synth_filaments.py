"""Cytoskeletal filaments in the simulator: seamless straight tubes through the slab that particles keep clear of."""

import numpy as np
import pytest

from cryopoint.errors import ConfigError
from cryopoint.synth import get_preset
from cryopoint.synth.sample import draw_slab, place_objects
from cryopoint.synth.shapes import Tube, filament_segment


def test_pieces_laid_end_to_end_make_one_seamless_hollow_tube():
    tube = Tube(r_out=125.0, r_in=85.0, half_length=125.0)
    x = np.linspace(-200.0, 200.0, 81, dtype=np.float32)  # across the joint at x = 0
    wall = np.full_like(x, 105.0)
    zero = np.zeros_like(x)
    joined = tube((x + 125.0, wall, zero)) + tube((x - 125.0, wall, zero))  # pieces centred at -125 and +125
    np.testing.assert_allclose(joined, joined[40], rtol=1e-3)
    assert joined[40] == pytest.approx(1.0, abs=0.02), "protein density in the wall"
    assert float(tube((zero[:1], zero[:1], zero[:1]))[0]) < 0.01, "a microtubule is hollow"
    actin = filament_segment(microtubule=False)
    assert float(actin((zero[:1], zero[:1], zero[:1]))[0]) == pytest.approx(1.0, abs=0.01), "actin is solid"


def test_filaments_are_straight_inside_the_ice_and_particles_keep_clear():
    params = get_preset("realistic", filaments_per_volume=40.0, microtubule_fraction=1.0)
    shape = (96, 256, 256)
    rng = np.random.default_rng(0)
    slab = draw_slab(shape, params, rng)
    objects = place_objects(shape, params, rng, slab)
    pieces = [o for o in objects if isinstance(o.shape.parts[0], Tube)]
    particles = [o for o in objects if o.shape.label is not None]
    assert len(pieces) > 20 and len(particles) > 5
    filaments: dict[bytes, list] = {}
    for p in pieces:
        filaments.setdefault(p.rotation.tobytes(), []).append(p.center)
    for centres in filaments.values():  # every filament's pieces lie on one line along its direction
        c = np.array(centres)
        if len(c) > 2:
            _, s, _ = np.linalg.svd(c - c.mean(0))
            assert s[1] < 1e-6 * s[0] + 1e-6
    for p in pieces:
        bottom, top = slab.surfaces(p.center[0], p.center[1])
        assert bottom <= p.center[2] <= top
    for part in particles:
        gaps = [np.linalg.norm(part.center - p.center) - p.shape.radius - part.shape.radius for p in pieces]
        assert min(gaps) >= params.min_gap - 1e-6


def test_no_filaments_unless_asked():
    params = get_preset("realistic")
    assert params.filaments_per_volume == 0
    shape = (48, 128, 128)
    rng = np.random.default_rng(0)
    objects = place_objects(shape, params, rng, draw_slab(shape, params, rng))
    assert not any(isinstance(o.shape.parts[0], Tube) for o in objects if hasattr(o.shape, "parts"))


@pytest.mark.parametrize("bad", [{"filaments_per_volume": -1.0}, {"microtubule_fraction": 1.5}])
def test_bad_filament_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="filaments_per_volume"):
        get_preset("realistic", **bad)
