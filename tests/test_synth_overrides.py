"""Simulator overrides given as FIELD=VALUE text: one parser for ``make_synthetic --set`` and the recipes' corpus."""

import numpy as np
import pytest

from cryopoint.errors import ConfigError
from cryopoint.io.layout import list_runs, read_truth
from cryopoint.synth import get_preset
from cryopoint.synth.params import parse_overrides
from cryopoint.synth.randomize import draw_run_params


def test_values_are_read_as_literals_or_yaml():
    got = parse_overrides(["snr=0.3", "tilt_max=45", "denoiser=tv", "defocus_um=(2, 3)", "counts={'ribosome': 3}"])
    assert got == {"snr": 0.3, "tilt_max": 45, "denoiser": "tv", "defocus_um": (2, 3), "counts": {"ribosome": 3}}
    # a list of knob names needs no quotes (ast.literal_eval alone read this as the string "[shape_model]")
    assert parse_overrides(["keep=[shape_model, imaging]"]) == {"keep": ["shape_model", "imaging"]}
    assert parse_overrides(["particle_scale=[0.88,1.12]"]) == {"particle_scale": [0.88, 1.12]}


def test_a_kept_knob_list_pins_the_knob_in_randomized_runs():
    params = get_preset("randomized", **parse_overrides(["keep=[shape_model]", "shape_model=assembly"]))
    drawn = {draw_run_params(params, np.random.default_rng(seed)).shape_model for seed in range(12)}
    assert drawn == {"assembly"}


@pytest.mark.parametrize(
    "item, message",
    [("snr", "must be FIELD=VALUE"), ("=3", "must be FIELD=VALUE"), ("colour=red", "Unknown synthetic parameter")],
)
def test_bad_items_are_refused_with_what_to_write(item, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides([item])


def test_make_synthetic_takes_a_kept_knob_list(tmp_path):
    from tools.make_synthetic import main

    out = tmp_path / "rand"
    argv = ["--out", str(out), "--runs", "1", "--shape", "32", "96", "96", "--seed", "3", "--preset", "randomized"]
    main([*argv, "--set", "keep=[shape_model]", "shape_model=analytic", "counts={'ribosome': 2}"])
    assert list_runs(out) == ["TS_SYN3_1"]
    assert (read_truth(out).particle_type == "ribosome").sum() == 2


def test_make_synthetic_refuses_an_unknown_knob_before_writing(tmp_path, capsys):
    from tools.make_synthetic import main

    out = tmp_path / "rand"
    code = main(["--out", str(out), "--runs", "1", "--preset", "randomized", "--set", "keep=[shape_modle]"])
    assert code == 2 and "shape_modle" in capsys.readouterr().err
    assert not out.exists()
