"""SynthParams.class_density: one class darker than the rest, same layout, nothing else changed."""

import numpy as np
import pytest

from cryopoint.errors import ConfigError
from cryopoint.synth import get_preset
from cryopoint.synth.sample import draw_slab, place_objects, render_density

COUNTS = {"ribosome": 2, "apo-ferritin": 2}


def _scene(**kw):
    params = get_preset("easy", counts=COUNTS, **kw)
    shape = (48, 128, 128)
    rng = np.random.default_rng(3)
    slab = draw_slab(shape, params, rng)
    objects = place_objects(shape, params, rng, slab)
    return objects, render_density(shape, objects, slab, params)


def test_only_the_named_class_gets_darker_and_the_layout_stays():
    base_objects, base = _scene()
    dark_objects, darker = _scene(class_density={"ribosome": 2.0})
    assert [(o.shape.label, tuple(o.center)) for o in base_objects] == [
        (o.shape.label, tuple(o.center)) for o in dark_objects
    ], "the same objects in the same places"
    vs = get_preset("easy").voxel_size
    for obj in base_objects:
        if obj.shape.label not in COUNTS:
            continue
        x, y, z = np.round(np.asarray(obj.center) / vs).astype(int)
        box = (slice(z - 1, z + 2), slice(y - 1, y + 2), slice(x - 1, x + 2))
        added_base, added_dark = base[box].sum(), darker[box].sum()
        if obj.shape.label == "ribosome":  # density (protein = +1; dark in the image) doubles
            assert added_base > 0 and added_dark == pytest.approx(2 * added_base, rel=1e-4)
        else:
            assert added_dark == pytest.approx(added_base, rel=1e-6)


@pytest.mark.parametrize("bad", [{"ribosom": 2.0}, {"ribosome": 0.0}, {"ribosome": -1.0}])
def test_bad_class_density_is_refused(bad):
    with pytest.raises(ConfigError, match="class_density"):
        get_preset("realistic", class_density=bad)
