"""Ensembles of fold models: probabilities averaged, the inference path (fast CPU copy, ONNX Runtime, detect, the
batch CLI), ensemble checkpoints (load, export, threshold tuning, fine-tuning refused) and the data.fold setting.

No training here (untrained tiny members); tests/test_kfold.py trains a k-fold run end to end.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from _layout_helpers import CHALLENGE_VOXEL_SIZE, write_challenge_store
from _tool_helpers import run_tool

from cryopoint.api import detect, load
from cryopoint.checkpoint import export_checkpoint, init_from_checkpoint, load_checkpoint, save_checkpoint
from cryopoint.config import config_from_dict, config_to_dict, load_config
from cryopoint.engine import train
from cryopoint.engine.kfold import ensemble_payload
from cryopoint.errors import CheckpointError, ConfigError
from cryopoint.infer import predict_heatmaps
from cryopoint.model import build_model, onnx_runtime
from cryopoint.model.ensemble import Ensemble
from cryopoint.model.optimize import inference_copy
from cryopoint.post.nms import find_peaks
from cryopoint.tomogram import Tomogram

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
TINY = {
    "model": {"arch": "heatmap25d", "encoder": "test_resnet", "slab": 3, "output_stride": 2},
    "infer": {"roi": [8, 32, 32], "overlap": 0.25, "batch_size": 2},
    "post": {"min_score": 0.0, "top_k": 20, "default_threshold": 0.0},
}
THRESHOLDS = {"apo-ferritin": 0.2, "ribosome": 0.3}


def _members(n, arch_kwargs, seed=0):
    nets = []
    for i in range(n):
        torch.manual_seed(seed + i)
        net = build_model(**arch_kwargs).eval()
        for m in net.modules():  # non-trivial BatchNorm statistics, as a trained network has
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
        nets.append(net)
    return nets


def _save_ensemble(path, n=2, voxel_size=10.0):
    """An ensemble checkpoint of ``n`` untrained tiny members, as the k-fold training writes it."""
    cfg = config_from_dict(TINY)
    nets = _members(n, config_to_dict(cfg)["model"])
    members = [
        {"model_state": net.state_dict(), "ema_state": None, "config": config_to_dict(cfg), "step": 3 + i,
         "voxel_size": [voxel_size] * 3}
        for i, net in enumerate(nets)
    ]  # fmt: skip
    payload = ensemble_payload(cfg, members, [Path(f"fold{i}/best.pt") for i in range(n)], THRESHOLDS)
    return save_checkpoint(path, payload), nets


@pytest.fixture(scope="module")
def ensemble_ckpt(tmp_path_factory):
    return _save_ensemble(tmp_path_factory.mktemp("ens") / "ensemble.pt", voxel_size=CHALLENGE_VOXEL_SIZE)


@pytest.mark.parametrize(
    "arch",
    [
        {"arch": "heatmap25d", "encoder": "test_resnet", "slab": 3, "output_stride": 2},
        {"arch": "unet3d", "channels": [4, 8], "output_stride": 1},
    ],
)
def test_ensemble_probabilities_are_the_mean_of_its_members(arch):
    nets = _members(3, arch)
    ens = Ensemble(nets).eval()
    x = torch.randn(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got = ens.heatmaps(ens(x))
        want = torch.stack([m.heatmaps(m(x)) for m in nets]).mean(0)
        one = nets[0].heatmaps(nets[0](x))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert (got - one).abs().max() > 1e-3  # the members differ, so the mean is not just one of them
    assert (ens.output_stride, ens.num_classes, ens.target_kind) == (nets[0].output_stride, 6, nets[0].target_kind)
    assert ens.input_multiple == tuple(nets[0].input_multiple)


def test_members_that_predict_different_things_are_refused():
    heat = build_model("heatmap25d", encoder="test_resnet", slab=3, output_stride=2)
    seg = build_model("unet3d", channels=[4, 8], output_stride=1)
    with pytest.raises(ConfigError, match="disagree on target_kind"):
        Ensemble([heat, seg])
    with pytest.raises(ConfigError, match="at least one"):
        Ensemble([])


def test_sliding_window_and_fast_cpu_copy_average_the_members():
    nets = _members(2, {"arch": "heatmap25d", "encoder": "test_resnet", "slab": 3, "output_stride": 2})
    ens = Ensemble(nets).eval()
    tomo = Tomogram(np.random.default_rng(0).standard_normal((12, 48, 40), dtype=np.float32), 10.0)
    with torch.inference_mode():
        mean = np.mean([predict_heatmaps(m, tomo, roi=(8, 32, 32), normalized=True)[0] for m in nets], axis=0)
        got, stride = predict_heatmaps(ens, tomo, roi=(8, 32, 32), normalized=True)
        fast = inference_copy(ens)
        folded, _ = predict_heatmaps(fast, tomo, roi=(8, 32, 32), normalized=True)
    assert stride == 2
    np.testing.assert_allclose(got, mean, atol=1e-6)
    np.testing.assert_allclose(folded, mean, atol=1e-5)
    assert isinstance(fast, Ensemble) and all(a is not b for a, b in zip(fast.members, ens.members))
    assert all(isinstance(m.encoder, torch.nn.Module) for m in ens.members) and ens.members[0] is nets[0]


@pytest.mark.skipif(not onnx_runtime.available(), reason="onnxruntime/onnx not installed (the cryopoint[onnx] extra)")
def test_onnx_runtime_runs_the_whole_ensemble(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYOPOINT_CACHE", str(tmp_path))
    nets = _members(2, {"arch": "heatmap25d", "encoder": "test_resnet", "slab": 3, "output_stride": 2})
    ens = Ensemble(nets).eval()
    tomo = Tomogram(np.random.default_rng(1).standard_normal((8, 40, 32), dtype=np.float32), 10.0)
    with torch.inference_mode():
        plain, _ = predict_heatmaps(ens, tomo, roi=(8, 32, 32), normalized=True)
        ort, _ = predict_heatmaps(ens, tomo, roi=(8, 32, 32), normalized=True, runtime="onnxruntime")
    np.testing.assert_allclose(ort, plain, atol=1e-5)
    assert len(list((tmp_path / "onnx").glob("ensemble-*.onnx"))) == 1  # one graph for all members


def test_ensemble_checkpoint_loads_weights_only_and_detects_with_the_mean(ensemble_ckpt):
    path, nets = ensemble_ckpt
    raw = torch.load(path, weights_only=True)  # never needs to unpickle code
    assert raw["ensemble"]["members"] == 2 and raw["ensemble"]["steps"] == [3, 4]
    det = load(path)
    assert isinstance(det.model, Ensemble) and len(det.model.members) == 2
    for net, member in zip(nets, det.model.members):
        for name, value in net.state_dict().items():
            torch.testing.assert_close(member.state_dict()[name], value)
    assert det.thresholds == THRESHOLDS and det.config.infer.roi == [8, 32, 32]

    volume = np.random.default_rng(2).standard_normal((12, 40, 40), dtype=np.float32)
    picks = detect(volume, det, voxel_size=CHALLENGE_VOXEL_SIZE, thresholds=0.0, device="cpu")
    tomo = Tomogram(volume, CHALLENGE_VOXEL_SIZE)
    with torch.inference_mode():
        mean = np.mean([predict_heatmaps(m, tomo, roi=(8, 32, 32))[0] for m in nets], axis=0)
    post = det.config.post
    want = find_peaks(mean, voxel_size=tomo.voxel_size, stride=2, kernel_factor=post.kernel_factor,
                      min_score=post.min_score, top_k=post.top_k)  # fmt: skip
    key = ["particle_type", "x", "y", "z"]
    got, want = picks.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    assert len(got) == len(want) > 0
    pd.testing.assert_frame_equal(got[key], want[key], check_dtype=False)
    np.testing.assert_allclose(got["score"], want["score"], atol=1e-5)
    default = detect(volume, det, voxel_size=CHALLENGE_VOXEL_SIZE, device="cpu")  # the stored thresholds apply
    ribo = default[default.particle_type == "ribosome"]
    assert (ribo["score"] >= 0.3).all() and len(ribo) == (got[got.particle_type == "ribosome"]["score"] >= 0.3).sum()


def test_batch_cli_detects_with_an_ensemble(ensemble_ckpt, tmp_path):
    from tools.detect import main

    root = tmp_path / "data"
    write_challenge_store(root, runs=("TS_a",), shape=(16, 32, 32), split="test", picks=pd.DataFrame())
    out = tmp_path / "out"
    assert main(["--model", str(ensemble_ckpt[0]), "--root", str(root), "--out", str(out), "--formats", "raw"]) == 0
    direct = detect(root / "test" / "static" / "ExperimentRuns" / "TS_a" / "VoxelSpacing10.000" / "denoised.zarr",
                    load(ensemble_ckpt[0]), thresholds=0.0, device="cpu")  # fmt: skip
    raw = pd.read_csv(out / "peaks.csv")
    assert len(raw) == len(direct) > 0
    np.testing.assert_allclose(np.sort(raw["score"]), np.sort(direct["score"]), atol=1e-6)


def test_export_keeps_every_member_in_fp16(ensemble_ckpt, tmp_path):
    out = export_checkpoint(ensemble_ckpt[0], tmp_path / "shipped.pt")
    shipped = load_checkpoint(out)
    floats = {k: v for k, v in shipped["model_state"].items() if v.is_floating_point()}
    assert {k.split(".")[1] for k in floats} == {"0", "1"} and all(v.dtype == torch.float16 for v in floats.values())
    assert shipped["ensemble"]["members"] == 2 and shipped["thresholds"] == THRESHOLDS
    det = load(out)
    assert isinstance(det.model, Ensemble) and next(det.model.parameters()).dtype == torch.float32


def test_tune_thresholds_tool_stores_thresholds_in_an_ensemble(tmp_path):
    path, _ = _save_ensemble(tmp_path / "ensemble.pt")
    root = tmp_path / "data"
    truth, _ = write_challenge_store(root, runs=("TS_a", "TS_b"), shape=(16, 40, 40))
    preds = pd.concat([truth.assign(score=0.8), truth.assign(x=truth.x + 2000.0, score=0.3)], ignore_index=True)
    preds.to_csv(tmp_path / "pred.csv", index=False)
    argv = ["--predictions", str(tmp_path / "pred.csv"), "--truth", str(root), "--out", str(tmp_path / "th.yaml")]
    # --prior-strength 0: the rule's thresholds as they are (shrinking toward a prior: test_tune_thresholds_tool.py)
    assert (
        run_tool(REPO / "tools" / "tune_thresholds.py", [*argv, "--checkpoint", str(path), "--prior-strength", "0"])
        == 0
    )
    tuned = yaml.safe_load((tmp_path / "th.yaml").read_text())["thresholds"]
    det = load(path)
    assert det.thresholds == pytest.approx(tuned) and det.thresholds["ribosome"] == pytest.approx(0.8)
    assert isinstance(det.model, Ensemble) and len(det.model.members) == 2


def test_fine_tuning_from_an_ensemble_is_refused_clearly(ensemble_ckpt):
    model = build_model(**TINY["model"])
    with pytest.raises(CheckpointError, match="ensemble of 2 fold models.*fold0/best.pt"):
        init_from_checkpoint(model, ensemble_ckpt[0])


def test_ensemble_members_must_share_the_architecture(tmp_path):
    cfg = config_from_dict(TINY)
    other = config_to_dict(config_from_dict({**TINY, "model": {**TINY["model"], "slab": 5}}))
    member = {"model_state": {}, "config": other, "voxel_size": [10.0] * 3}
    with pytest.raises(CheckpointError, match="share one architecture"):
        ensemble_payload(cfg, [member], [tmp_path / "fold0" / "best.pt"], {})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.fold=2"], r"data.fold must be a fold number in \[0, 1\] .*or 'all'.*got 2"),
        (["data.fold=-1"], r"data.fold must be a fold number"),
        (["data.fold=every"], r"data.fold must be a fold number .*got 'every'"),
        (["data.fold=1.5"], r"'data.fold' expects int or str"),
        (["data.fold=all", "data.val_runs=[run_a]"], r"data.fold=all .*data.val_runs"),
    ],
)
def test_bad_fold_values_are_refused_when_the_config_loads(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SMOKE, overrides)


def test_fold_values_that_work():
    assert load_config(SMOKE, ["data.fold=all"]).data.fold == "all"
    assert load_config(SMOKE, ["data.fold=1"]).data.fold == 1
    assert load_config(SMOKE, ["data.fold=5", "data.val_runs=[a]"]).data.fold == 5  # val_runs decide: fold unused
    with pytest.raises(ConfigError, match="train_kfold"):
        train(load_config(SMOKE, ["data.fold=all"]))
