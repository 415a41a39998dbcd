"""benchmarks/in_distribution.py: the runs are make_synthetic's runs, the knobs are the ones each run drew,
and the reported scores are the metric's own on those runs."""

import json

import pytest

from benchmarks import in_distribution
from cryopoint.io.layout import read_truth
from cryopoint.synth import generate_dataset


def test_drawn_knobs_flatten_drawn_ranges_and_keep_names():
    from cryopoint.synth import get_preset

    knobs = in_distribution.drawn_knobs(
        get_preset("realistic", dose=(90.0, 90.0), gain=[1e-4, 1e-4], defocus_um=(2.0, 3.0))
    )
    assert (
        knobs["dose"] == 90.0 and knobs["gain"] == 1e-4 and "defocus_um" not in knobs
    )  # a real range is not one number
    assert knobs["shape_model"] == "analytic" and isinstance(knobs["snr"], float)


def test_correlations_rank_the_knob_that_tracks_the_score_first():
    result = {
        "runs": {f"r{i}": {"score": s} for i, s in enumerate([0.1, 0.2, 0.3, 0.4, 0.5])},
        "knobs": {
            f"r{i}": {"snr": s, "dqe": d, "denoiser": "tv"}
            for i, (s, d) in enumerate(zip([1, 2, 3, 4, 5], [0.5, 0.3, 0.9, 0.1, 0.7]))
        },
    }
    corr = in_distribution.knob_correlations(result)
    assert corr[0] == ("snr", pytest.approx(1.0)) and "denoiser" not in dict(corr)


@pytest.mark.slow
def test_end_to_end_on_make_synthetics_runs(tmp_path):
    """Two tiny `randomized` runs: the same particles as make_synthetic writes for that seed, and a report whose
    per-run scores and knobs are in it."""
    out = tmp_path / "indist"
    argv = ["--runs", "2", "--shape", "32", "96", "96", "--seed", "5", "--set", "counts={'ribosome': 2}"]
    assert in_distribution.main([*argv, "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    res = data["result"]
    assert set(res["runs"]) == {"TS_SYN5_1", "TS_SYN5_2"} and data["meta"]["preset"] == "randomized"
    generate_dataset(tmp_path / "ds", runs=2, shape=(32, 96, 96), seed=5, preset="randomized", counts={"ribosome": 2})
    truth = read_truth(tmp_path / "ds")
    assert {r: v["particles"] for r, v in res["runs"].items()} == truth.groupby("experiment").size().to_dict()
    for knobs in res["knobs"].values():
        assert knobs["shape_model"] in ("analytic", "assembly", "mixed") and 0.15 <= knobs["snr"] <= 20.0
    assert 0.0 <= res["own"] <= 1.0 and res["tuned"] >= res["own"] - 1e-9
    md = out.with_suffix(".md").read_text()
    assert "TS_SYN5_1" in md and f"{res['own']:.3f}" in md
