"""benchmarks/flood_note: per run and class, whether the flood note names the picks, and their precision."""

import dataclasses

import pandas as pd
import pytest

from benchmarks.flood_note import pair_rows, summarize, write_report
from cryopoint.api import load
from cryopoint.particles import PARTICLE_NAMES
from tests.test_api import save_tiny_checkpoint


def test_the_note_names_a_flooded_class_and_the_summary_scores_it(tmp_path):
    det = load(save_tiny_checkpoint(tmp_path / "tiny.pt", thresholds={n: 0.5 for n in PARTICLE_NAMES}))
    det = dataclasses.replace(det, kept_density={n: 1e4 for n in PARTICLE_NAMES})  # 10 per 1000 Å cube
    geometry = {"r1": ((100, 100, 100), (10.0, 10.0, 10.0))}  # 1e-3 µm³
    truth = pd.DataFrame([
        {"experiment": "r1", "particle_type": "ribosome", "x": 500.0, "y": 500.0, "z": 500.0},
        {"experiment": "r1", "particle_type": "apo-ferritin", "x": 200.0, "y": 200.0, "z": 200.0},
        {"experiment": "r1", "particle_type": "apo-ferritin", "x": 800.0, "y": 200.0, "z": 200.0},
    ])  # fmt: skip
    far = [(x, y, 900.0) for x in range(50, 1000, 150) for y in range(50, 1000, 200)][:30]  # 30 misplaced
    rows = [("ribosome", 500.0, 500.0, 500.0, 0.9)] + [("ribosome", x, y, z, 0.8) for x, y, z in far]
    rows += [("apo-ferritin", 200.0, 200.0, 200.0, 0.9), ("apo-ferritin", 800.0, 200.0, 200.0, 0.9)]
    rows += [("thyroglobulin", 100.0, 800.0, 100.0, 0.1)]  # below its threshold: not a pick
    peaks = pd.DataFrame(rows, columns=["particle_type", "x", "y", "z", "score"]).assign(experiment="r1")

    got = pair_rows(det, peaks, truth, geometry).set_index("class")
    assert got.loc["ribosome", "flagged"] and got.loc["ribosome", "picks"] == 31 and got.loc["ribosome", "tp"] == 1
    assert got.loc["ribosome", "ratio"] == pytest.approx(3.1)
    assert not got.loc["apo-ferritin", "flagged"] and got.loc["apo-ferritin", "tp"] == 2
    assert got.loc["thyroglobulin", "picks"] == 0 and not got.loc["thyroglobulin", "flagged"]

    s = summarize(got.reset_index())
    assert s["named"] == 1 and s["named_classes"] == {"ribosome": 1}
    assert s["precision_named"] == pytest.approx(1 / 31) and s["precision_rest"] == 1.0
    assert s["fp_share_named"] == 1.0 and s["true_in_named"] == 1

    meta = {"command": "x", "date": "d", "machine": "m", "minutes": 0.1, "model": "tiny", "factor": 3.0,
            "min_picks": 20}  # fmt: skip
    md = write_report({"S": {"runs": 1, "particles": 3, "summary": s}}, meta, tmp_path / "flood")
    assert "| S | 1 | 3 | 5 | 1 | 0.03 | 1.00 | 100 % | 1 | ribosome 1 |" in md.read_text()
