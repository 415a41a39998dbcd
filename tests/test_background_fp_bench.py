"""benchmarks/background_fp.py: scenes, counts of false positives at a model's own thresholds, the report."""

import json

import pandas as pd
import pytest

from cryopoint.particles import PARTICLE_NAMES


class _FixedPicks:
    """A detector that reports the same three apo-ferritin peaks outside every tomogram (so none can match a
    particle) at scores 0.9 / 0.5 / 0.1; its own threshold 0.3 keeps two."""

    thresholds = dict.fromkeys(PARTICLE_NAMES, 0.3)

    def detect(self, volume, voxel_size, thresholds):
        assert thresholds == 0.0  # the benchmark asks for every peak and thresholds them itself
        rows = [("apo-ferritin", -1000.0, -1000.0 - 100 * i, -1000.0, s) for i, s in enumerate((0.9, 0.5, 0.1))]
        return pd.DataFrame(rows, columns=["particle_type", "x", "y", "z", "score"])

    def thresholds_for(self, peaks, shape, voxel_size):
        return self.thresholds


def test_scenes_sweep_snr_then_remove_clutter():
    from benchmarks.background_fp import COUNTS, NO_CLUTTER, scenes, simulate

    s = scenes([1, 8])
    assert list(s) == ["SNR 1", "SNR 8", "no clutter"] and s["SNR 8"] == {"snr": 8.0}
    assert s["no clutter"] == {"clutter_per_particle": 0.0, "vesicles_per_volume": 0.0, "gold_per_volume": 0.0}
    vol, truth, voxel = simulate(NO_CLUTTER, (32, 96, 96), 0)
    assert vol.shape == (32, 96, 96) and truth["particle_type"].value_counts().to_dict() == COUNTS


@pytest.mark.slow
def test_false_positives_are_counted_at_the_models_own_thresholds(tmp_path):
    from benchmarks.background_fp import COUNTS, evaluate, scenes, write_report
    from cryopoint.synth import get_preset

    seeds = [1, 2]
    res = evaluate({"fixed": _FixedPicks()}, scenes([4]), (32, 96, 96), seeds)
    for scene in ("SNR 4", "no clutter"):
        cell = res[scene]["fixed"]
        assert cell["fp"]["apo-ferritin"] == 2 * len(seeds)  # 0.9 and 0.5 kept in every tomogram, 0.1 not
        assert sum(cell["fp"].values()) == cell["fp"]["apo-ferritin"]
        assert cell["particles"] == len(seeds) * sum(COUNTS.values())
        assert cell["fn"] == {n: len(seeds) * COUNTS[n] for n in COUNTS}  # nothing found: every particle missed
        assert cell["own"] == 0.0 and cell["tuned"] == 0.0
    voxel_nm = get_preset("easy").voxel_size / 10  # the CZII 10.012 Å
    assert cell["fp_per_um3"] == pytest.approx(4 / (2 * 32 * 96 * 96 * voxel_nm**3 * 1e-9))

    meta = {"command": "x", "date": "d", "machine": "m", "minutes": 0.1, "models": {"fixed": "stub"}}
    md = write_report(res, meta | {"seeds": seeds, "shape": [32, 96, 96]}, tmp_path / "bfp")
    text = md.read_text()
    assert "| no clutter | fixed | 0.000 | 0.000 | 4 | 0 | 0 | 0 | 0 | 0 |" in text
    assert (tmp_path / "bfp.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "bfp.json").read_text())["result"]["SNR 4"]["fixed"]["fp"]["apo-ferritin"] == 4
