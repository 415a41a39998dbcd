"""The inference benchmark over several tomograms: per-tomogram scores are each tomogram's own."""

import json

from benchmarks import inference


def test_several_seeds_score_each_tomogram_and_pool_them(tmp_path):
    common = ["--shape", "64", "192", "192", "--variants", "0", "--threads", "1"]
    inference.main([*common, "--seed", "5", "6", "--out", str(tmp_path / "two")])
    inference.main([*common, "--seed", "5", "--out", str(tmp_path / "one")])
    two = json.loads((tmp_path / "two.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    (row,) = two["rows"]
    assert len(row["per_seed"]) == 2
    assert row["per_seed"][0] == one["rows"][0]["score"]  # seed 5's score in the pair is seed 5 alone
    assert two["simulation"]["particles"] == sum(two["simulation"]["per_seed"].values())
    assert "Δ per tomogram" in (tmp_path / "two.md").read_text()
    assert "Δ per tomogram" not in (tmp_path / "one.md").read_text()
