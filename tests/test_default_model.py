"""The shipped default model: safe to load, the file the model card describes, and it finds particles."""

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import cryopoint
from cryopoint.checkpoint import sha256
from cryopoint.metric import score
from cryopoint.post.thresholds import tune_thresholds
from cryopoint.weights import default_checkpoint

CARD = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def test_shipped_weights_match_the_model_card():
    path = default_checkpoint()
    recorded = re.search(r"sha256 `([0-9a-f]{64})`", CARD.read_text())
    assert recorded, "docs/models.md must record the shipped file's sha256 as: sha256 `<hex>`"
    assert sha256(path) == recorded.group(1)
    assert path.stat().st_size < 15 * 2**20


def test_shipped_weights_are_plain_fp16_tensors_loaded_safely():
    payload = torch.load(default_checkpoint(), map_location="cpu", weights_only=True)
    state = payload["model_state"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert "optimizer_state" not in payload and "ema_state" not in payload
    det = cryopoint.load("default")
    assert all(p.dtype == torch.float32 for p in det.model.parameters())
    assert set(det.thresholds) == set(cryopoint.particles.PARTICLE_NAMES)


def test_shipped_model_raises_its_thresholds_by_the_noise_tail_and_leaves_the_density_cap_off():
    det = cryopoint.load("default")
    assert det.config.post.noise_tail is True  # on: docs/models.md, "Thresholds from each tomogram's own noise"
    assert set(det.kept_density) == set(cryopoint.particles.PARTICLE_NAMES)
    assert all(v > 0 for v in det.kept_density.values())  # peaks per µm³ its thresholds kept on the reference runs
    assert det.config.post.adaptive_alpha == 0.0 and not det.adapts  # off by default (docs/models.md says why)
    assert det.with_adaptive_alpha(0.5).adapts


@pytest.mark.slow
def test_default_model_finds_the_particles_of_an_easy_tomogram():
    """A real detection test on a small `easy` tomogram (15 scored particles, never seen in training).

    What ``detect`` does by default: the shipped thresholds, raised per tomogram by the noise-tail rule. The bar
    is the issue's 0.9. Measured for the release of 2026-12-07 (the ninth file, E13): 0.963 weighted F-beta, every
    particle found, and 0.995 with thresholds tuned on this tomogram. The eighth file scored 0.959, the seventh
    0.938, the sixth 0.950, the fifth 0.934, earlier files 0.84-0.91; the filament stage alone 0.892, which is why
    it was not shipped alone.
    """
    from benchmarks.noise_tail import EASY_COUNTS as counts
    from benchmarks.noise_tail import easy_tomogram

    vol, truth, voxel_size = easy_tomogram(2026)
    truth = truth.assign(experiment="t")
    picks = cryopoint.detect(vol, voxel_size=voxel_size)  # no model: the shipped one, its thresholds
    result = score(truth, pd.DataFrame(picks).assign(experiment="t"))
    assert result.score >= 0.9, result.table
    assert (result.table.loc[list(counts), "fn"] == 0).all(), result.table  # recall 1 on every scored class
    every = cryopoint.detect(vol, voxel_size=voxel_size, thresholds=0.0).assign(experiment="t")
    assert tune_thresholds(truth, every).score_after >= 0.9  # the ranking: every particle scores above the clutter
