"""Validation and ``detect`` share one inference path: a run's out-of-fold peaks are what ``detect`` returns."""

import json

import numpy as np
import pandas as pd
import pytest

import cryopoint
from cryopoint.config import load_config
from cryopoint.engine import train
from cryopoint.io import tomogram_path


@pytest.mark.slow
def test_oof_predictions_equal_detect_with_thresholds_zero(tmp_path):
    overrides = [
        "train.steps=2",
        "train.val_every=2",
        "infer.tta=true",  # TTA is part of the path: validation must not skip it
        "post.min_score=0.001",
        f"train.out_dir={tmp_path}",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    run_dir = train(load_config("configs/smoke.yaml", overrides))
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    root, (val_run,) = record["data_root"], record["val_runs"]
    oof = pd.read_csv(run_dir / "oof_predictions.csv")
    oof = oof[oof.experiment == val_run]
    picks = cryopoint.detect(tomogram_path(root, val_run), run_dir / "best.pt", thresholds=0.0, device="cpu")
    assert len(oof) > 0 and len(picks) == len(oof)
    cols = ["particle_type", "score", "x", "y", "z"]
    a = oof[cols].sort_values(cols).reset_index(drop=True)
    b = picks[cols].sort_values(cols).reset_index(drop=True)
    assert (a.particle_type == b.particle_type).all()
    np.testing.assert_allclose(
        a[["score", "x", "y", "z"]].to_numpy(), b[["score", "x", "y", "z"]].to_numpy(), rtol=1e-6
    )
