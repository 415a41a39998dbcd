"""tools/export_model.py: fp16 weights, and inference settings shipped with ``--set`` (validated, infer/post only)."""

from pathlib import Path

import pytest
import torch
from _tool_helpers import run_tool

from cryopoint.checkpoint import catalogue_payload, export_checkpoint, load_checkpoint, save_checkpoint
from cryopoint.errors import ConfigError

TOOL = Path(__file__).resolve().parents[1] / "tools" / "export_model.py"


@pytest.fixture
def trained(tmp_path):
    payload = {
        "model_state": {"w": torch.arange(4.0)},
        "ema_state": None,
        "optimizer": {"lr": 1.0},
        "config": {"model": {"arch": "heatmap25d"}, "infer": {"roi": [64, 192, 192]}, "train": {"lr": 0.5}},
        "particles": catalogue_payload(),
        "voxel_size": [10.0, 10.0, 10.0],
        "thresholds": {"ribosome": 0.3},
    }
    return save_checkpoint(tmp_path / "best.pt", payload)


def test_set_changes_the_shipped_inference_settings_only(trained, tmp_path):
    out = tmp_path / "shipped.pt"
    argv = [str(trained), "--out", str(out), "--set", "infer.roi=[96,320,320]", "--set", "infer.overlap=0"]
    assert run_tool(TOOL, argv) == 0
    shipped = load_checkpoint(out)
    assert shipped["config"]["infer"]["roi"] == [96, 320, 320] and shipped["config"]["infer"]["overlap"] == 0.0
    assert shipped["config"]["train"]["lr"] == 0.5 and shipped["thresholds"] == {"ribosome": 0.3}
    assert shipped["model_state"]["w"].dtype == torch.float16 and "optimizer" not in shipped
    assert load_checkpoint(trained)["config"]["infer"]["roi"] == [64, 192, 192]  # the source is untouched


def test_set_refuses_training_keys_and_invalid_values(trained, tmp_path):
    with pytest.raises(ConfigError, match="infer.* and post.*"):
        export_checkpoint(trained, tmp_path / "a.pt", overrides=["train.lr=1"])
    with pytest.raises(ConfigError, match="infer.overlap"):
        export_checkpoint(trained, tmp_path / "b.pt", overrides=["infer.overlap=1.5"])
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()
