"""Fine-tuning: ``train.init_from`` initialises every tensor from a checkpoint, or refuses with a clear error."""

import json

import pytest
import torch

from cryopoint.checkpoint import catalogue_payload, init_from_checkpoint, save_checkpoint
from cryopoint.errors import CheckpointError
from cryopoint.model import build_model

SMALL = dict(encoder="test_resnet", slab=3, output_stride=2, decoder_channels=[16, 16, 8, 8])


def _checkpoint(path, model, arch_cfg):
    payload = {
        "format_version": 1,
        "model_state": model.state_dict(),
        "config": {"model": arch_cfg},
        "particles": catalogue_payload(),
        "voxel_size": [10.0, 10.0, 10.0],
        "thresholds": {},
    }
    return save_checkpoint(path, payload)


def test_every_tensor_is_loaded(tmp_path):
    torch.manual_seed(0)
    source = build_model("heatmap25d", **SMALL)
    with torch.no_grad():  # make every tensor distinctive, buffers (BatchNorm statistics) included
        for t in source.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t))
    ckpt = _checkpoint(tmp_path / "a.pt", source, {"arch": "heatmap25d", **SMALL})
    torch.manual_seed(1)
    target = build_model("heatmap25d", **SMALL)
    init_from_checkpoint(target, ckpt)
    own, theirs = target.state_dict(), source.state_dict()
    assert own.keys() == theirs.keys()
    left = [k for k in own if not torch.equal(own[k], theirs[k])]
    assert left == []  # not one layer left at its random initialisation


def test_another_architecture_is_refused_with_what_differs(tmp_path):
    source = build_model("heatmap25d", **SMALL)
    ckpt = _checkpoint(tmp_path / "a.pt", source, {"arch": "heatmap25d", **SMALL})
    wider = build_model("heatmap25d", **{**SMALL, "decoder_channels": [32, 16, 8, 8]})
    with pytest.raises(CheckpointError, match="does not fit this model.*other shapes.*decoder_channels"):
        init_from_checkpoint(wider, ckpt)
    unet = build_model("unet3d", channels=[4, 8])
    with pytest.raises(CheckpointError, match="missing.*unexpected"):
        init_from_checkpoint(unet, ckpt)


def test_engine_fine_tunes_from_a_checkpoint(tmp_path):
    from cryopoint.config import load_config
    from cryopoint.engine import train

    base = ["train.steps=2", "train.val_every=2", f"train.out_dir={tmp_path}", f"data.cache_dir={tmp_path / 'c'}"]
    first = train(load_config("configs/smoke.yaml", [*base, "train.name=first"]))
    cfg = load_config("configs/smoke.yaml", [*base, "train.name=second", f"train.init_from={first / 'best.pt'}"])
    # The fine-tuned run starts from the first run's weights: before any step its model equals them.
    from cryopoint.engine.distributed import init_distributed
    from cryopoint.engine.train import _Trainer

    trainer = _Trainer(cfg, init_distributed("cpu"))
    start = trainer.model.state_dict()
    payload = torch.load(first / "best.pt", weights_only=True)
    saved = payload.get("ema_state") or payload["model_state"]  # the weights cryopoint.load uses
    assert all(torch.equal(start[k], saved[k]) for k in saved)
    bad = load_config(
        "configs/smoke.yaml", [*base, "train.name=third", "model.slab=5", f"train.init_from={first / 'best.pt'}"]
    )
    with pytest.raises(CheckpointError, match="does not fit"):
        train(bad)


def test_fine_tuning_shrinks_validations_thresholds_toward_the_starting_checkpoints(tmp_path, capsys):
    from cryopoint.checkpoint import load_checkpoint
    from cryopoint.config import load_config
    from cryopoint.engine import train
    from cryopoint.engine.validate import threshold_prior
    from cryopoint.particles import PARTICLE_NAMES

    base = ["train.steps=2", "train.val_every=2", f"train.out_dir={tmp_path}", f"data.cache_dir={tmp_path / 'c'}"]
    first = train(load_config("configs/smoke.yaml", [*base, "train.name=first"]))
    assert "--prior" not in capsys.readouterr().out  # the closing hint: no start, no prior to re-tune toward
    prior = {name: 0.77 for name in PARTICLE_NAMES}
    start = save_checkpoint(tmp_path / "start.pt", {**load_checkpoint(first / "best.pt"), "thresholds": prior})
    assert threshold_prior(load_config("configs/smoke.yaml", base)) is None  # not fine-tuning: no prior
    off = load_config("configs/smoke.yaml", [*base, f"train.init_from={start}", "post.threshold_prior_strength=0"])
    assert threshold_prior(off) is None
    # a prior worth far more than the validation's particles: the stored thresholds are the start's
    heavy = [*base, "train.name=second", f"train.init_from={start}", "post.threshold_prior_strength=1e9"]
    cfg = load_config("configs/smoke.yaml", heavy)
    assert threshold_prior(cfg) == prior
    second = train(cfg)
    # The closing hint re-tunes with the same prior (without it the tool would fit the validation run alone).
    hint = "".join(capsys.readouterr().out.replace("│", " ").split())
    assert f"--prior{start}--prior-strength1e+09" in hint
    stored = load_checkpoint(second / "best.pt")["thresholds"]
    assert stored == pytest.approx(prior, abs=1e-4)
    val = [json.loads(line) for line in (second / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in val if r.get("type") == "val"][-1]
    assert val["thresholds_prior_strength"] == 1e9 and val["thresholds"] == pytest.approx(prior, abs=1e-4)
    assert val["thresholds_tuned_alone"] != pytest.approx(prior, abs=1e-4)  # what validation alone chose
    # without one, the stored thresholds are validation's own (what the first run stored: not the prior)
    assert load_checkpoint(first / "best.pt")["thresholds"] != pytest.approx(prior, abs=1e-4)
