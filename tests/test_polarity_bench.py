"""benchmarks/polarity.py: the per-run verdicts it reports are the check's own, and the report says them."""

import json

from benchmarks import polarity as bench
from cryopoint.data.cache import ensure_synthetic_dataset
from cryopoint.data.polarity import estimate_polarity
from cryopoint.io import list_runs, read_tomogram, tomogram_path


def test_counts_and_report_agree_with_the_check(tmp_path):
    root = ensure_synthetic_dataset("easy", runs=2, shape=(48, 128, 128), seed=0, cache_dir=tmp_path)
    result = {"easy": bench.check_dataset(root)}
    runs = result["easy"]["runs"]
    assert [r["run"] for r in runs] == list_runs(root)
    for r in runs:  # each row is what the library says about that run, as is and inverted
        tomo = read_tomogram(tomogram_path(root, r["run"]))
        assert estimate_polarity(tomo.data, tomo.voxel_size).score == r["score"]
        assert estimate_polarity(-tomo.data, tomo.voxel_size).polarity == r["inverted"]
    summary = bench.summarise(result)["easy"]
    assert summary["n"] == 2 and sum(summary["as_is"].values()) == sum(summary["inverted"].values()) == 2
    assert summary["as_is"]["dark"] == sum(r["as_is"] == "dark" for r in runs)

    full = {"check_s": 1.0, "detect_s": 40.0, "verdict": "dark", "score": 0.2}
    meta = {"command": "python -m benchmarks.polarity", "date": "today", "machine": "here"}
    path = bench.write_report(bench.summarise(result), full, meta, tmp_path / "polarity")
    text = path.read_text()
    a = summary["as_is"]
    assert f"| easy | 2 | 48 x 128 x 128 | {a['dark']} / {a['unclear']} / {a['bright']} |" in text
    assert "the check adds 2.5%" in text
    bench.write_figure(result, tmp_path / "polarity.png")
    assert (tmp_path / "polarity.png").stat().st_size > 1000
    json.dumps(result)  # what the benchmark writes as JSON
