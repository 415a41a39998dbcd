"""cryopoint.load / cryopoint.detect: every input type, model resolution, resampling, modes and errors."""

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cryopoint
from cryopoint.api import COLUMNS, MODEL_ENV, Detector, detect, load
from cryopoint.checkpoint import catalogue_payload, save_checkpoint
from cryopoint.config import config_from_dict
from cryopoint.errors import (
    AdjustedSettingWarning,
    CheckpointError,
    ConfigError,
    DataNotFoundError,
    InvalidVolumeError,
    ResampleWarning,
    VoxelSizeError,
)
from cryopoint.model import build_model
from cryopoint.particles import NUM_CLASSES, PARTICLE_NAMES
from cryopoint.tomogram import Tomogram

TINY_MODEL = {"arch": "heatmap25d", "encoder": "test_resnet", "slab": 3, "output_stride": 2}
TINY_CONFIG = {
    "model": TINY_MODEL,
    "infer": {"roi": [8, 32, 32], "overlap": 0.25, "batch_size": 2},
    "post": {"min_score": 0.0, "top_k": 20, "default_threshold": 0.0},
}


def save_tiny_checkpoint(path, *, seed=0, ema=True, thresholds=None, config=TINY_CONFIG, voxel_size=10.0):
    """A randomly initialised quickstart-shaped checkpoint (tiny encoder) saved with save_checkpoint."""
    torch.manual_seed(seed)
    model = build_model(**config["model"])
    ema_state = None
    if ema:
        ema_model = build_model(**config["model"])
        ema_state = ema_model.state_dict()
    return save_checkpoint(
        path,
        {
            "model_state": model.state_dict(),
            "ema_state": ema_state,
            "config": config,
            "particles": catalogue_payload(),
            "voxel_size": [voxel_size] * 3,
            "thresholds": thresholds or {},
        },
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


class SpotModel(nn.Module):
    """A stand-in network whose heatmap is the (normalised) volume itself in every class channel."""

    output_stride = 1
    num_classes = NUM_CLASSES
    input_multiple = (1, 1, 1)

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return (self.gain * x).repeat(1, self.num_classes, 1, 1, 1)

    def heatmaps(self, logits):
        return torch.sigmoid(10 * (logits - 1.7))  # the ramp (|x| <= ~1) stays near 0, the spot (~2.4) near 1


def spot_detector(voxel_size=10.0):
    config = config_from_dict(
        {"infer": {"roi": [16, 24, 24], "batch_size": 2}, "post": {"min_score": 0.5, "default_threshold": 0.5}}
    )
    return Detector(SpotModel().eval(), config, catalogue_payload(), (voxel_size,) * 3)


def spot_volume(shape, centre_zyx, sigma=2.0, amplitude=1.65):
    """A bright Gaussian spot on a gentle ramp along z (-1 to 1): the ramp sets the normalisation scale (the ice
    slab's IQR: the ramp ends land near ±1.6, below the heatmap's 1.7 midpoint), and the spot (~2.4 after
    normalisation) stays below the normaliser's clip (3), so it has a single, exact maximum."""
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre_zyx))
    ramp = np.linspace(-1, 1, shape[0])[:, None, None]
    return (amplitude * np.exp(-d2 / (2 * sigma**2)) + ramp).astype(np.float32)


def test_public_surface():
    assert set(cryopoint.__all__) == {
        "detect",
        "load",
        "Detector",
        "Tomogram",
        "read_tomogram",
        "Config",
        "load_config",
        "__version__",
    }
    from cryopoint.config import Config, load_config

    assert cryopoint.Config is Config and cryopoint.load_config is load_config
    assert cryopoint.detect is detect and cryopoint.load is load and cryopoint.Detector is Detector
    assert cryopoint.Tomogram is Tomogram and callable(cryopoint.read_tomogram)
    with pytest.raises(AttributeError):
        cryopoint.nonexistent  # noqa: B018


def test_load_rebuilds_the_detector_and_prefers_ema(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "a.pt", thresholds={"ribosome": 0.3})
    payload = torch.load(path, weights_only=True)
    det = load(path)
    assert not det.model.training
    assert det.voxel_size == (10.0, 10.0, 10.0) and det.roi == (8, 32, 32)
    assert det.default_thresholds["ribosome"] == 0.3 and det.default_thresholds["apo-ferritin"] == 0.0
    for name, value in det.model.state_dict().items():
        torch.testing.assert_close(value, payload["ema_state"][name])
    assert any(not torch.equal(payload["ema_state"][k], payload["model_state"][k]) for k in payload["model_state"])
    no_ema = load(save_tiny_checkpoint(tmp_path / "b.pt", ema=False))
    for name, value in no_ema.model.state_dict().items():
        torch.testing.assert_close(value, payload["model_state"][name])


def test_load_refuses_foreign_catalogue_and_mismatched_weights(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "a.pt")
    payload = torch.load(path, weights_only=True)
    save_checkpoint(tmp_path / "cat.pt", {**payload, "particles": catalogue_payload()[:3]})
    with pytest.raises(CheckpointError, match="catalogue"):
        load(tmp_path / "cat.pt")
    other = {**TINY_CONFIG, "model": {**TINY_MODEL, "slab": 5}}
    save_checkpoint(tmp_path / "shape.pt", {**payload, "config": other})
    with pytest.raises(CheckpointError, match="do not fit"):
        load(tmp_path / "shape.pt")
    with pytest.raises(DataNotFoundError):
        load(tmp_path / "missing.pt")


def test_detect_accepts_every_input_type_and_agrees(tmp_path, ckpt, rng):
    from tests._layout_helpers import write_zarr_v2_tomogram

    data = (rng.standard_normal((12, 32, 40)) * 1e-5).astype(np.float32)
    det = load(ckpt)
    ref = detect(data, det, voxel_size=10.0, device="cpu")
    assert list(ref.columns) == COLUMNS and len(ref) > 0
    assert set(ref["particle_type"]) <= set(PARTICLE_NAMES)
    np.testing.assert_allclose(ref[["x", "y", "z"]].to_numpy(), ref[["x_vox", "y_vox", "z_vox"]].to_numpy() * 10.0)
    zarr_path = write_zarr_v2_tomogram(tmp_path / "run.zarr", data, voxel_size=10.0)
    mrc_path = tmp_path / "run.mrc"
    with mrcfile.new(mrc_path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 10.0
    inputs = [torch.from_numpy(data), Tomogram(data, voxel_size=10.0), zarr_path, str(mrc_path)]
    for tomogram in inputs:
        kwargs = {"voxel_size": 10.0} if isinstance(tomogram, torch.Tensor) else {}
        pd.testing.assert_frame_equal(detect(tomogram, det, device="cpu", **kwargs), ref)
    pd.testing.assert_frame_equal(detect(data, ckpt, voxel_size=10.0), ref)  # a checkpoint path as the model


def test_model_from_environment_else_the_shipped_default(monkeypatch, ckpt, rng, tmp_path):
    import cryopoint.weights as weights
    from cryopoint.errors import DataNotFoundError

    data = rng.standard_normal((8, 32, 32)).astype(np.float32)
    ref = detect(data, ckpt, voxel_size=10.0)
    monkeypatch.setenv(MODEL_ENV, str(ckpt))
    pd.testing.assert_frame_equal(detect(data, voxel_size=10.0), ref)
    monkeypatch.delenv(MODEL_ENV)
    monkeypatch.setattr(weights, "DEFAULT_PATH", Path(ckpt))  # stands in for the shipped default.pt
    pd.testing.assert_frame_equal(detect(data, voxel_size=10.0), ref)
    pd.testing.assert_frame_equal(detect(data, "default", voxel_size=10.0), ref)
    monkeypatch.setattr(weights, "DEFAULT_PATH", tmp_path / "missing.pt")
    with pytest.raises(DataNotFoundError, match="default model is missing.*tools/train.py"):
        detect(data, voxel_size=10.0)


def test_blob_baseline_needs_no_checkpoint(rng):
    centre = (8, 20, 30)  # (z, y, x) voxels, distinct per axis so that a swapped axis shows
    data = -spot_volume((16, 48, 48), centre, sigma=3.0, amplitude=5.0) + 0.01 * rng.standard_normal((16, 48, 48))
    picks = detect(data.astype(np.float32), "blob", voxel_size=12.0)
    assert list(picks.columns) == COLUMNS and len(picks) > 0
    best = picks.loc[picks["score"].idxmax()]
    # The strongest pick is the planted dark spot (the blob baseline works on 2x-binned voxels: within a voxel).
    np.testing.assert_allclose(best[["z_vox", "y_vox", "x_vox"]].to_numpy(float), centre, atol=1.0)
    xyz = best[["x", "y", "z"]].to_numpy(float)
    np.testing.assert_allclose(xyz, best[["x_vox", "y_vox", "z_vox"]].to_numpy(float) * 12.0)  # Å at the input's size


def test_input_errors_are_actionable(ckpt, rng):
    data = rng.standard_normal((8, 32, 32)).astype(np.float32)
    with pytest.raises(VoxelSizeError, match="voxel_size="):
        detect(data, ckpt)
    with pytest.raises(VoxelSizeError, match="contradicts"):
        detect(Tomogram(data, voxel_size=10.0), ckpt, voxel_size=12.0)
    bad = data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidVolumeError, match="NaN"):
        detect(bad, ckpt, voxel_size=10.0)
    with pytest.raises(InvalidVolumeError, match="3-D"):
        detect(data[0], ckpt, voxel_size=10.0)
    with pytest.raises(InvalidVolumeError, match="field of view"):
        detect(data[:, :20], ckpt, voxel_size=10.0)
    with pytest.raises(TypeError, match="numpy array"):
        detect([[1.0]], ckpt, voxel_size=10.0)


def test_callers_model_keeps_its_mode_and_device(ckpt, rng):
    det = load(ckpt)
    det.model.train()
    detect(rng.standard_normal((8, 32, 32)).astype(np.float32), det, voxel_size=10.0, device="cpu")
    assert det.model.training and next(det.model.parameters()).device.type == "cpu"
    assert all(p.grad is None for p in det.model.parameters())


def test_window_size_and_batch_can_be_overridden(ckpt, rng):
    data = rng.standard_normal((8, 64, 64)).astype(np.float32)
    totals = {}
    for roi in [(8, 32, 32), (8, 64, 64)]:
        detect(data, ckpt, voxel_size=10.0, roi=roi, overlap=0.0, progress=lambda d, t, r=roi: totals.update({r: t}))
    assert totals == {(8, 32, 32): 4, (8, 64, 64): 1}


def test_thresholds_select_peaks(ckpt, rng):
    data = rng.standard_normal((8, 32, 32)).astype(np.float32)
    every = detect(data, ckpt, voxel_size=10.0, thresholds=0.0)
    cut = float(every["score"].median())
    assert (detect(data, ckpt, voxel_size=10.0, thresholds=cut)["score"] >= cut).all()
    ribo = detect(data, ckpt, voxel_size=10.0, thresholds={"ribosome": 1.1})
    assert "ribosome" not in set(ribo["particle_type"]) and len(ribo) == (every["particle_type"] != "ribosome").sum()


def test_spot_is_found_at_its_angstrom_position():
    vol = spot_volume((24, 40, 40), (9, 20, 27))
    picks = detect(vol, spot_detector(), voxel_size=10.0)
    assert len(picks) == NUM_CLASSES  # one spot, seen by every class channel
    np.testing.assert_allclose(picks[["x", "y", "z"]].to_numpy(), [[270.0, 200.0, 90.0]] * NUM_CLASSES, atol=1e-6)
    np.testing.assert_allclose(picks[["z_vox", "y_vox", "x_vox"]].to_numpy(), [[9, 20, 27]] * NUM_CLASSES)


def test_other_voxel_size_is_resampled_and_returned_in_the_inputs_frame():
    # The same physical spot sampled at 6 Å: the 10 Å model sees a resampled copy, answers come back in 6 Å frame.
    vol = spot_volume((30, 50, 60), (12, 20, 33), sigma=3.0)
    picks = detect(vol, spot_detector(10.0), voxel_size=6.0)
    assert len(picks) == NUM_CLASSES
    expected = np.array([33, 20, 12]) * 6.0
    assert np.abs(picks[["x", "y", "z"]].to_numpy() - expected).max() <= 5.1  # half a model voxel
    np.testing.assert_allclose(picks[["x_vox", "y_vox", "z_vox"]].to_numpy() * 6.0, picks[["x", "y", "z"]].to_numpy())


def test_any_resampling_factor_the_volume_bears_is_used():
    # 5.0 Å for a 10.012444 Å model is 2.0025x: ordinary binning, no refusal and no warning (the 2x limit is gone).
    vol = spot_volume((40, 60, 80), (20, 26, 47), sigma=4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picks = detect(vol, spot_detector(10.012444), voxel_size=5.0)
    assert len(picks) == NUM_CLASSES
    assert np.abs(picks[["x", "y", "z"]].to_numpy() - np.array([47, 26, 20]) * 5.0).max() <= 5.1


def test_anisotropic_voxel_sizes_are_resampled_per_axis():
    # (z, y, x) = (14, 8, 6) Å for a 10 Å model: z upsampled 1.4x, y and x downsampled; Å come back in the input frame.
    vs = np.array([14.0, 8.0, 6.0])
    shape, centre = (40, 50, 60), np.array([19, 24, 33])
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum(((g - c) * v / 30.0) ** 2 for g, c, v in zip(grid, centre, vs))  # a round spot, sigma 30 Å
    vol = (1.65 * np.exp(-d2 / 2) + np.linspace(-1, 1, shape[0])[:, None, None]).astype(np.float32)
    picks = detect(vol, spot_detector(10.0), voxel_size=tuple(vs))
    assert len(picks) == NUM_CLASSES
    expected = (centre * vs)[::-1]  # x, y, z in Å
    assert np.abs(picks[["x", "y", "z"]].to_numpy() - expected).max() <= 5.1  # half a model voxel
    np.testing.assert_allclose(picks[["z_vox", "y_vox", "x_vox"]].to_numpy() * vs, picks[["z", "y", "x"]].to_numpy())


def test_large_resampling_warns_and_impossible_ones_are_refused(ckpt, rng):
    data = rng.standard_normal((8, 32, 32)).astype(np.float32)
    with pytest.warns(ResampleWarning, match=r"resampled by \(4, 4, 4\).*\(32, 128, 128\) voxels"):
        detect(data, ckpt, voxel_size=40.0)  # 4x upsampling works, with a warning
    with pytest.raises(VoxelSizeError, match="smaller than the model's field of view"):
        detect(data, ckpt, voxel_size=2.0)  # 5x down: (2, 6, 6) voxels
    huge = np.broadcast_to(np.float32(0), (40, 400, 400))  # 100 Å -> 10 Å: 10^3 x 6.4 M voxels
    with pytest.raises(VoxelSizeError, match=r"GiB as float32\), too large.*trained near"):
        detect(huge, ckpt, voxel_size=100.0)


@pytest.mark.parametrize(("voxel_size", "hint"), [(1e-6, "outside the plausible 1-100"), (0.5, "nm, multiply by 10"),
                                                  (1e-9, "metres"), (300.0, "outside the plausible")])  # fmt: skip
def test_implausible_voxel_sizes_are_refused_at_once(ckpt, voxel_size, hint):
    with pytest.raises(VoxelSizeError, match=hint):
        detect(np.zeros((8, 32, 32), np.float32), ckpt, voxel_size=voxel_size)


def test_window_sizes_and_batch_size_are_checked_up_front(ckpt, rng):
    data = rng.standard_normal((8, 64, 64)).astype(np.float32)
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
        detect(data, ckpt, voxel_size=10.0, batch_size=0)
    with pytest.raises(ConfigError, match="roi must be three"):
        detect(data, ckpt, voxel_size=10.0, roi=(0, 32, 32))
    totals = []
    with pytest.warns(AdjustedSettingWarning, match=r"roi \(1, 1, 1\).*300 Å across.*using \(8, 30, 30\)"):
        detect(data, ckpt, voxel_size=10.0, roi=(1, 1, 1), overlap=0.0, progress=lambda d, t: totals.append(t))
    assert totals[-1] == 4  # windows of (8, 30 -> 32, 30 -> 32) voxels: 1 x 2 x 2, not 8 x 64 x 64 one-voxel ones
    huge = []
    detect(data, ckpt, voxel_size=10.0, roi=(4000, 4000, 4000), progress=lambda d, t: huge.append(t))
    assert huge == [1]  # clipped to the tomogram: one window, not 238 GiB


def test_wrong_model_name_suggests_the_names_that_exist(rng):
    with pytest.raises(DataNotFoundError, match=r"No checkpoint at Blob.*Did you mean 'blob'\?.*'default'"):
        detect(rng.standard_normal((8, 32, 32)).astype(np.float32), "Blob", voxel_size=10.0)
    with pytest.raises(DataNotFoundError, match="Did you mean 'default'"):
        load("defualt")


def test_submodules_are_attributes_and_import_stays_cheap():
    import subprocess
    import sys

    code = (
        "import sys, cryopoint\n"
        "heavy = [m for m in ('torch', 'scipy', 'zarr', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "cryopoint.synth.simulate_run, cryopoint.io.read_tomogram, cryopoint.metric.score\n"
        "cryopoint.post.nms.find_peaks, cryopoint.post.thresholds.tune_thresholds\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
