"""benchmarks/recipes.py: the zero-shot recipe ablation's verdict and report, on hand-made results."""

import json

import numpy as np
import pytest

from benchmarks import recipes
from cryopoint.particles import PARTICLE_NAMES


def _cell(total):
    return {"score": total, **{n: total for n in PARTICLE_NAMES}}


def _result(by_source):
    """``{source: (own, own_lean, oracle) per seed}`` -> a recipes result entry."""
    mean, per_seed = {}, {}
    for src, seeds in by_source.items():
        cells = {k: [_cell(s[i]) for s in seeds] for i, (k, _) in enumerate(recipes.SETTINGS)}
        mean[src] = {k: recipes.mean_cell(v) for k, v in cells.items()}
        per_seed[src] = {k: [c["score"] for c in v] for k, v in cells.items()}
    return {"mean": mean, "per_seed": per_seed}


def test_verdict_and_report(tmp_path):
    results = {
        "plain": _result({"A": [(0.2, 0.3, 0.5), (0.4, 0.3, 0.5)], "B": [(0.5, 0.5, 0.8), (0.5, 0.5, 0.8)]}),
        "hard negatives": _result({"A": [(0.5, 0.4, 0.6), (0.5, 0.4, 0.6)], "B": [(0.4, 0.6, 0.9), (0.4, 0.6, 0.9)]}),
    }
    lines = recipes.summary_lines(results, ["A", "B"])
    # own: A 0.5 vs mean(0.2, 0.4) = 0.3 -> +0.2; B 0.4 vs 0.5 -> -0.1: not better everywhere.
    assert (
        lines[0]
        == "- **hard negatives** vs plain, own thresholds: A +0.200, B -0.100 (mean +0.050; not better everywhere)."
    )
    assert "A +0.100, B +0.100 (mean +0.100; better on every source)" in lines[1]
    meta = {
        "command": "python -m benchmarks.recipes",
        "budget": {"config": "configs/generalize.yaml", "randomized_runs": 8, "shape": [96, 256, 256],
                   "batch_size": 2, "crop": [32, 64, 64], "test_runs": 2},
        "steps": 600, "seeds": [0, 1],
        "variants": {"plain": [], "hard negatives": ["data.hard_negative_fraction=0.15"]},
        "sources": ["A", "B"], "counts": {s: {n: 5 for n in PARTICLE_NAMES} for s in "AB"},
        "blob": {s: _cell(0.1) for s in "AB"}, "train_seconds": {"plain-seed0": 60.0}, "reused": [],
        "wall_seconds": 120.0, "date": "now", "machine": "here",
    }  # fmt: skip
    md = recipes.write_report(results, meta, tmp_path / "recipes")
    text = md.read_text()
    assert "`data.hard_negative_fraction=0.15`" in text and "- **plain**: the recipe as it is" in text
    assert "| plain | own | **0.300** (0.200, 0.400) |" in text  # the seed mean, then each seed
    assert "| hard negatives | tuned on H | **0.900** (0.900, 0.900) |" in text
    assert text.count("| blob (LoG) | tuned on H's training runs | **0.100** |") == 2
    assert json.loads((tmp_path / "recipes.json").read_text())["results"]["plain"]["per_seed"]["A"]["own"] == [0.2, 0.4]
    assert (tmp_path / "recipes.png").read_bytes()[:4] == b"\x89PNG"


def test_variant_needs_overrides_and_a_new_name():
    with pytest.raises(SystemExit):
        recipes.main(["--variant", "zoom"])
    with pytest.raises(SystemExit):
        recipes.main(["--variant", "plain", "data.augment.zoom=0.1"])


def test_corpus_overrides_are_parsed_checked_and_split_from_config_overrides():
    from cryopoint.errors import ConfigError

    assert recipes.parse_corpus(["keep=[shape_model]", "shape_model=analytic", "particle_density=[0.7,1.8]"]) == {
        "keep": ["shape_model"], "shape_model": "analytic", "particle_density": [0.7, 1.8]
    }  # fmt: skip
    config, corpus = recipes.split_corpus(["data.hard_negative_fraction=0.15", "corpus.particle_aspect=0.1"])
    assert config == ["data.hard_negative_fraction=0.15"] and corpus == {"particle_aspect": 0.1}
    with pytest.raises(ConfigError, match="Unknown synthetic parameter"):
        recipes.parse_corpus(["particle_colour=red"])
    with pytest.raises(ConfigError, match="particle_aspect"):
        recipes.parse_corpus(["particle_aspect=2"])


def test_a_corpus_override_makes_its_own_dataset_and_keeps_the_pinned_particle_model(tmp_path):
    from benchmarks.generalization import BUDGETS
    from cryopoint.synth import get_preset
    from cryopoint.synth.simulate import simulate_kinds

    b = BUDGETS["smoke"]
    pinned = {"keep": ["shape_model"], "shape_model": "assembly"}
    plain = recipes.corpus_root(b, str(tmp_path), {})
    held = recipes.corpus_root(b, str(tmp_path), pinned)
    assert plain != held and (held / "train").is_dir() and (plain / "train").is_dir()
    # what the corpus's runs draw: every run keeps the pinned particle model, other knobs still vary
    params = get_preset("randomized", **pinned)
    drawn = [simulate_kinds((16, 48, 48), params, np.random.default_rng(s))[1].attrs["synth"] for s in range(4)]
    assert {d["shape_model"] for d in drawn} == {"assembly"} and len({d["snr"] for d in drawn}) == 4
