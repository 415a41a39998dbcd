import pickle

import pytest
import torch

from cryopoint.checkpoint import catalogue_payload, load_checkpoint, save_checkpoint, set_thresholds
from cryopoint.errors import CheckpointError, DataNotFoundError, UnknownParticleError


def _payload():
    return {
        "model_state": {"w": torch.arange(4.0)},
        "ema_state": None,
        "config": {"model": {"arch": "heatmap25d"}},
        "particles": catalogue_payload(),
        "voxel_size": [10.0, 10.0, 10.0],
        "thresholds": {},
    }


def test_round_trip_and_thresholds(tmp_path):
    path = save_checkpoint(tmp_path / "best.pt", _payload())
    ck = load_checkpoint(path)
    assert torch.equal(ck["model_state"]["w"], torch.arange(4.0))
    assert ck["particles"][0]["name"] == "apo-ferritin"
    set_thresholds(path, {"ribosome": 0.3})
    assert load_checkpoint(path)["thresholds"] == {"ribosome": 0.3}
    with pytest.raises(UnknownParticleError):
        set_thresholds(path, {"ribsome": 0.3})


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_code_execution(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format_version": 1, "x": _Evil()}, f)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(path)


def test_missing_and_foreign(tmp_path):
    save_checkpoint(tmp_path / "last.pt", _payload())
    with pytest.raises(DataNotFoundError, match="last.pt"):
        load_checkpoint(tmp_path / "best.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_newer_format_is_refused_with_what_to_do(tmp_path):
    from cryopoint.api import load
    from cryopoint.checkpoint import FORMAT_VERSION

    path = save_checkpoint(tmp_path / "future.pt", {**_payload(), "format_version": FORMAT_VERSION + 1})
    with pytest.raises(CheckpointError, match=rf"format {FORMAT_VERSION + 1}, newer than this cryopoint.*upgrade"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="upgrade cryopoint"):
        load(path)  # the public entry point refuses it too, before building anything
    save_checkpoint(path, {**_payload(), "format_version": FORMAT_VERSION})
    assert load_checkpoint(path)["format_version"] == FORMAT_VERSION  # the current format still loads
