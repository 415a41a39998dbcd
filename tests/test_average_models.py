"""tools/average_models.py: the uniform weight average of one network's checkpoints (the shipped file is one)."""

from pathlib import Path

import pytest
import torch
from _tool_helpers import run_tool

import cryopoint
from cryopoint.checkpoint import average_checkpoints, catalogue_payload, load_checkpoint, save_checkpoint, sha256
from cryopoint.errors import CheckpointError, OutputExistsError

TOOL = Path(__file__).resolve().parents[1] / "tools" / "average_models.py"


def _ckpt(path, w, *, counter=0, arch="heatmap25d", ema=None, dtype=torch.float16):
    payload = {
        "model_state": {"w": torch.tensor(w, dtype=dtype), "bn.num_batches_tracked": torch.tensor(counter)},
        "ema_state": ema,
        "config": {"model": {"arch": arch}, "post": {"noise_tail": counter > 5}},
        "particles": catalogue_payload(),
        "voxel_size": [10.0, 10.0, 10.0],
        "thresholds": {"ribosome": 0.3 + counter / 100},
        "kept_density": {"ribosome": 1000.0},
    }
    return save_checkpoint(path, payload)


def test_average_is_the_mean_of_the_weights_with_the_last_config_and_no_thresholds(tmp_path):
    a = _ckpt(tmp_path / "a.pt", [1.0, 2.0, 3.0], counter=3)
    b = _ckpt(tmp_path / "b.pt", [3.0, 2.0, 0.0], counter=9)
    out = tmp_path / "avg.pt"
    assert run_tool(TOOL, [str(a), str(b), "--out", str(out)]) == 0
    avg = load_checkpoint(out)
    assert torch.equal(avg["model_state"]["w"], torch.tensor([2.0, 2.0, 1.5], dtype=torch.float16))
    assert avg["model_state"]["w"].dtype == torch.float16  # the first checkpoint's dtype
    assert int(avg["model_state"]["bn.num_batches_tracked"]) == 9  # counters from the last (newest) one
    assert avg["config"]["post"]["noise_tail"] is True  # the last one's config
    assert "thresholds" not in avg and "kept_density" not in avg  # neither member's fits the average
    assert avg["metrics"]["averaged_from"] == f"{sha256(a)}, {sha256(b)}"
    assert load_checkpoint(a)["thresholds"] == {"ribosome": pytest.approx(0.33)}  # the inputs are untouched


def test_average_uses_the_ema_weights_that_load_uses(tmp_path):
    a = _ckpt(tmp_path / "a.pt", [0.0], ema={"w": torch.tensor([4.0]), "bn.num_batches_tracked": torch.tensor(1)})
    b = _ckpt(tmp_path / "b.pt", [2.0], dtype=torch.float32)
    avg = load_checkpoint(average_checkpoints([a, b], tmp_path / "avg.pt"))
    assert float(avg["model_state"]["w"]) == 3.0  # a's EMA weights (4), not its raw ones (0)


def test_average_refuses_other_networks_one_checkpoint_ensembles_and_an_existing_output(tmp_path):
    a = _ckpt(tmp_path / "a.pt", [1.0, 2.0])
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([a], tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="another model config"):
        average_checkpoints([a, _ckpt(tmp_path / "u.pt", [1.0, 2.0], arch="unet3d")], tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="names or shapes"):
        average_checkpoints([a, _ckpt(tmp_path / "s.pt", [1.0, 2.0, 3.0])], tmp_path / "x.pt")
    ens = load_checkpoint(a) | {"ensemble": [{"w": torch.zeros(2)}]}
    with pytest.raises(CheckpointError, match="ensemble"):
        average_checkpoints([a, save_checkpoint(tmp_path / "e.pt", ens)], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    (tmp_path / "taken.pt").write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="overwrite"):
        average_checkpoints([a, a], tmp_path / "taken.pt")
    assert (tmp_path / "taken.pt").read_bytes() == b"mine"


def test_the_average_of_the_shipped_file_with_itself_is_the_shipped_network(tmp_path):
    shipped = cryopoint.weights.default_checkpoint()
    avg = load_checkpoint(average_checkpoints([shipped, shipped], tmp_path / "avg.pt"))
    ref = load_checkpoint(shipped)["model_state"]
    assert all(torch.equal(avg["model_state"][k], ref[k]) for k in ref)
    det = cryopoint.load(tmp_path / "avg.pt")  # loads as a detector; its thresholds are the config's default
    assert set(det.default_thresholds.values()) == {det.config.post.default_threshold}
