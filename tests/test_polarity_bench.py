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


def test_crops_are_checked_with_the_libraries_margin_and_reported(tmp_path):
    from cryopoint.data.polarity import MARGIN, verdict_margin

    root = ensure_synthetic_dataset("easy", runs=2, shape=(64, 128, 128), seed=0, cache_dir=tmp_path)
    crops = {"easy": bench.check_crops(root, crops=((64, 128, 128), (16, 48, 48)), surrogates=2)}
    big, tiny = crops["easy"]["64x128x128"], crops["easy"]["16x48x48"]
    for cell, shape in ((big, (64, 128, 128)), (tiny, (16, 48, 48))):
        assert len(cell["runs"]) == 2 and len(cell["null"]) == 4 and cell["shape"] == list(shape)
    for r in big["runs"]:  # the whole 64 x 128 x 128 run: the crop is the run, judged as the library judges it
        tomo = read_tomogram(tomogram_path(root, r["run"]))
        est = estimate_polarity(tomo.data, tomo.voxel_size)
        assert (r["score"], r["as_is"], r["margin"]) == (est.score, est.polarity, est.margin)
        assert r["fixed_as_is"] == ("dark" if est.score > MARGIN else "bright" if est.score < -MARGIN else "unclear")
    assert all(r["as_is"] == r["inverted"] == "unclear" and r["margin"] is None for r in tiny["runs"])

    table = bench.summarise_crops(crops)
    assert table["16x48x48"]["margin"] is None and table["64x128x128"]["margin"] == verdict_margin((64, 128, 128), 10.0)
    assert table["16x48x48"]["as_is"]["unclear"] == 2 and table["64x128x128"]["n"] == 2
    lines = "\n".join(bench.crop_lines(table))
    assert "| 16 x 48 x 48 |" in lines and "not judged" in lines and "of 8 checks" in lines
    meta = {"command": "python -m benchmarks.polarity", "date": "today", "machine": "here"}
    result = {"easy": bench.check_dataset(root)}
    text = bench.write_report(bench.summarise(result), None, meta, tmp_path / "polarity", crops).read_text()
    assert "## Small crops" in text
    bench.write_figure(result, tmp_path / "polarity.png", crops)
    assert (tmp_path / "polarity.png").stat().st_size > 1000
    json.dumps(crops)


def test_phase_randomised_copies_keep_the_power_spectrum_and_lose_the_structure():
    import numpy as np

    rng = np.random.default_rng(0)
    vol = np.zeros((16, 32, 32), np.float32)
    vol[4:12, 8:24, 8:24] = 1.0  # one box: all its structure is in the phases
    copy = bench.phase_randomised(vol, rng)
    power = lambda v: np.abs(np.fft.rfftn(v - v.mean())) ** 2  # noqa: E731
    np.testing.assert_allclose(power(copy), power(vol), rtol=1e-3, atol=1e-3)
    assert np.corrcoef(copy.ravel(), vol.ravel())[0, 1] < 0.5
