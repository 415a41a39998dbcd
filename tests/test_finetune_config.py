"""configs/finetune.yaml must fit the shipped model: the README's fine-tuning command starts from it."""

from pathlib import Path

import torch

from cryopoint.checkpoint import init_from_checkpoint, load_checkpoint
from cryopoint.config import config_to_dict, load_config
from cryopoint.model.registry import build_model
from cryopoint.weights import DEFAULT_PATH

REPO = Path(__file__).resolve().parents[1]


def test_finetune_config_builds_the_shipped_models_network_and_loads_every_weight():
    cfg = load_config(REPO / "configs" / "finetune.yaml")
    assert cfg.train.init_from == "default"
    shipped = load_checkpoint(DEFAULT_PATH)["config"]["model"]
    mine = config_to_dict(cfg)["model"]
    assert {k: mine[k] for k in shipped} == shipped  # every model setting the shipped file was trained with
    model = build_model(**mine)
    init_from_checkpoint(model, "default")  # refuses anything but an exact fit
    state = load_checkpoint(DEFAULT_PATH)
    weights = state.get("ema_state") or state["model_state"]
    name, tensor = next((k, v) for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
    assert torch.equal(model.state_dict()[name], tensor)
