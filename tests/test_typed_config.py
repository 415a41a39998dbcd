"""One typed config end to end: the detector holds it, every default has one home, impossible combinations and
unknown target options are refused, old names still load, and both registries load lazily the same way."""

import dataclasses
import inspect
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import cryopoint
from cryopoint.checkpoint import catalogue_payload, save_checkpoint
from cryopoint.config import (
    MODEL_CONFIGS,
    TARGET_KINDS,
    AugmentConfig,
    Config,
    Heatmap25DConfig,
    HeatmapTargetOptions,
    InferConfig,
    PostConfig,
    SegmentationTargetOptions,
    UNet3DConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)
from cryopoint.errors import CheckpointError, ConfigError
from cryopoint.lazy import LazyRegistry
from cryopoint.model import ARCHITECTURES, build_model

TINY_HEATMAP = {"arch": "heatmap25d", "encoder": "test_resnet", "slab": 3, "decoder_channels": [8, 8]}
TINY_UNET = {"arch": "unet3d", "channels": [4, 8]}


def _checkpoint(path, config, model_kwargs):
    """A checkpoint whose config is ``config`` as given (an older version's, say) and weights fit ``model_kwargs``."""
    torch.manual_seed(0)
    model = build_model(**model_kwargs)
    payload = {"model_state": model.state_dict(), "config": config, "particles": catalogue_payload()}
    return save_checkpoint(path, {**payload, "voxel_size": [10.0] * 3, "thresholds": {}})


# --- the detector holds a typed config ------------------------------------------------------------------------


def test_detector_holds_the_typed_config_with_defaults_for_keys_old_checkpoints_lack(tmp_path):
    # an older checkpoint: no infer.fast_cpu / cpu_bf16 / runtime, no post.threshold_tolerance, no target_options
    old = {"model": TINY_HEATMAP, "infer": {"roi": [8, 32, 32], "batch_size": 3}, "post": {"top_k": 7}}
    det = cryopoint.load(_checkpoint(tmp_path / "old.pt", old, TINY_HEATMAP))
    assert isinstance(det.config, Config)
    assert det.config.infer.batch_size == 3 and det.config.infer.roi == [8, 32, 32] and det.roi == (8, 32, 32)
    assert det.config.infer.fast_cpu is True and det.config.infer.cpu_bf16 is False
    assert det.config.infer.runtime == "torch" and det.config.post.threshold_tolerance == 0.0
    assert det.config.post.top_k == 7 and det.config.post.min_score == PostConfig.min_score
    assert det.config.data.target_options == HeatmapTargetOptions()


def test_shipped_default_model_loads_unchanged_into_the_typed_config():
    payload = torch.load(cryopoint.weights.default_checkpoint(), weights_only=True)
    det = cryopoint.load("default")
    assert det.config == config_from_dict(payload["config"])
    stored = payload["config"]
    assert det.config.model.encoder == stored["model"]["encoder"] and det.config.train.loss == stored["train"]["loss"]
    assert det.roi == tuple(stored["infer"]["roi"]) and det.config.post.min_score == stored["post"]["min_score"]


def test_load_checks_the_checkpoint_config_as_training_does(tmp_path):
    bad = {"model": TINY_UNET, "train": {"loss": "mse"}}  # trains on broadcast garbage: refused, as in training
    with pytest.raises(CheckpointError, match=r"train\.loss='mse'.*dice_ce"):
        cryopoint.load(_checkpoint(tmp_path / "bad.pt", bad, TINY_UNET))
    typo = {"model": TINY_HEATMAP, "infer": {"rio": [8, 32, 32]}}
    with pytest.raises(CheckpointError, match=r"'infer\.rio'.*roi"):
        cryopoint.load(_checkpoint(tmp_path / "typo.pt", typo, TINY_HEATMAP))


def test_detector_refuses_an_untyped_config():
    with pytest.raises(TypeError, match="config_from_dict"):
        cryopoint.Detector(torch.nn.Linear(1, 1), {"infer": {}}, catalogue_payload(), (10.0,) * 3)


# --- one home per default --------------------------------------------------------------------------------------


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def test_function_defaults_are_the_config_defaults():
    from cryopoint.data.sphere_targets import draw_sphere_labels
    from cryopoint.data.targets import draw_heatmaps
    from cryopoint.data.transforms import random_augment
    from cryopoint.infer import predict_heatmaps, sliding_window
    from cryopoint.model.heatmap25d import Heatmap25D
    from cryopoint.model.unet3d import UNet3D
    from cryopoint.post.components import component_centroids
    from cryopoint.post.nms import find_peaks

    assert _default(find_peaks, "top_k") == PostConfig.top_k  # was 1000 against the config's 2000
    for name in ("kernel_factor", "min_score"):
        assert _default(find_peaks, name) == getattr(PostConfig, name), name
    from cryopoint.config import DataConfig
    from cryopoint.data.dataset import CropDataset

    for name in ("positive_fraction", "samples_per_epoch"):  # were 0.5 and 1000 against the config's 0.6 and 256
        assert _default(CropDataset, name) == getattr(DataConfig, name), name
    for fn in (sliding_window, predict_heatmaps):
        for name in ("overlap", "batch_size", "blend", "cpu_bf16"):
            assert _default(fn, name) == getattr(InferConfig, name), f"{fn.__name__}({name}=...)"
    assert _default(predict_heatmaps, "tta") == InferConfig.tta
    assert _default(predict_heatmaps, "runtime") == InferConfig.runtime
    heat = HeatmapTargetOptions()
    assert _default(draw_heatmaps, "sigma_factor") == heat.sigma_factor
    assert _default(draw_heatmaps, "truncate") == heat.truncate
    fraction = SegmentationTargetOptions().radius_fraction
    assert _default(draw_sphere_labels, "radius_fraction") == fraction
    assert _default(component_centroids, "radius_fraction") == fraction
    augment = AugmentConfig()
    for name, value in dataclasses.asdict(augment).items():
        if name not in ("enabled", "zoom"):  # zoom is the crop dataset's (its default is AugmentConfig.zoom)
            assert list(np.atleast_1d(_default(random_augment, name))) == list(np.atleast_1d(value)), name
    # model constructors: exactly the config section's defaults (None/"" and [] mean the same "not given")
    for cls, section in ((Heatmap25D, Heatmap25DConfig()), (UNet3D, UNet3DConfig())):
        for name, value in dataclasses.asdict(section).items():
            if name == "arch":
                continue
            default = _default(cls, name)
            if isinstance(value, list) and value:
                default = list(default)
            assert (default or None) == (value or None), f"{cls.__name__}({name}=...)"


def test_find_peaks_default_keeps_the_configured_number_of_peaks():
    from cryopoint.post.nms import find_peaks

    heat = np.zeros((1, 3, 130, 130), np.float32)
    heat[0, 1, ::3, ::3] = np.linspace(0.2, 0.9, 44 * 44).reshape(44, 44)  # 1936 separate peaks, 3 voxels apart
    peaks = find_peaks(heat, voxel_size=1.0, class_names=["apo-ferritin"], kernel_factor=0.001)
    assert len(peaks) == min(PostConfig.top_k, 44 * 44) == 1936  # the old default cut this to 1000


# --- combinations that cannot work -----------------------------------------------------------------------------


def test_losses_are_mapped_to_the_target_kinds_they_fit():
    from cryopoint.engine.losses import LOSSES

    listed = [name for kind in TARGET_KINDS.values() for name in kind.losses]
    assert sorted(listed) == sorted(LOSSES), "every registered loss fits exactly one target kind"
    for arch, section in MODEL_CONFIGS.items():
        assert ARCHITECTURES[arch].target_kind == section.target_kind, arch
        assert section.target_kind in TARGET_KINDS


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"arch": "unet3d"}, "train": {"loss": "mse"}}, r"train\.loss='mse'.*model\.arch='unet3d'.*dice_ce"),
        ({"model": {"arch": "unet3d"}, "train": {"loss": "focal"}}, r"train\.loss='focal'.*segmentation.*dice_ce"),
        ({"train": {"loss": "dice_ce"}}, r"train\.loss='dice_ce'.*heatmap25d.*heatmap.*mse or focal"),
        ({"train": {"loss": "l2"}}, r"Unknown train\.loss 'l2'; options: mse, focal, dice_ce"),
    ],
)
def test_a_loss_that_does_not_fit_the_model_is_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_the_loss_defaults_to_one_that_fits():
    assert config_from_dict({"model": {"arch": "unet3d"}}).train.loss == "dice_ce"
    assert config_from_dict({}).train.loss == "mse"
    assert config_from_dict({"train": {"loss": "focal"}}).train.loss == "focal"


# --- typed target options --------------------------------------------------------------------------------------


def test_target_options_are_the_section_of_the_model_target_kind(tmp_path):
    heat = config_from_dict({"data": {"target_options": {"sigma_factor": 0.4}}})
    assert heat.data.target_options == HeatmapTargetOptions(sigma_factor=0.4, truncate=3.0)
    seg = config_from_dict({"model": {"arch": "unet3d"}, "data": {"target_options": {"radius_fraction": 0.4}}})
    assert seg.data.target_options == SegmentationTargetOptions(radius_fraction=0.4)
    assert config_from_dict({"model": {"arch": "unet3d"}}).data.target_options == SegmentationTargetOptions()
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(seg)))
    assert load_config(path).data.target_options == seg.data.target_options


@pytest.mark.parametrize(
    "data, message",
    [
        ({"target_options": {"sigma_factr": 0.4}}, r"'data\.target_options\.sigma_factr'.*sigma_factor, truncate"),
        ({"target_options": {"radius_fraction": 0.4}}, r"'data\.target_options\.radius_fraction'.*heatmap targets"),
        ({"target_options": {"sigma_factor": -1}}, r"data\.target_options\.sigma_factor.*positive"),
        ({"target_options": [0.5]}, r"'data\.target_options' must be a mapping"),
    ],
)
def test_unknown_or_bad_target_options_are_refused_when_the_config_loads(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": data})


def test_unknown_segmentation_target_option_names_the_valid_one():
    with pytest.raises(ConfigError, match=r"'data\.target_options\.sigma_factor'.*radius_fraction.*segmentation"):
        config_from_dict({"model": {"arch": "unet3d"}, "data": {"target_options": {"sigma_factor": 0.5}}})


def test_options_of_the_other_kind_are_refused_in_python_too():
    with pytest.raises(ConfigError, match="SegmentationTargetOptions"):
        Config(model=UNet3DConfig(), data=dataclasses.replace(Config().data, target_options=HeatmapTargetOptions()))


def test_crop_dataset_halo_comes_from_the_typed_options():
    from cryopoint.data.dataset import CropDataset, RunData
    from cryopoint.particles import PARTICLES

    picks = pd.DataFrame({"particle_type": ["apo-ferritin"], "x": [160.0], "y": [160.0], "z": [80.0]})
    run = RunData("r", np.zeros((16, 32, 32), np.float32), 10.0, picks)
    largest = max(p.radius for p in PARTICLES)

    def halo(**kwargs):
        ds = CropDataset([run], crop_size=(8, 16, 16), samples_per_epoch=1, augment=False, **kwargs)
        return ds.halos[0]

    assert halo() == pytest.approx(3.0 * 0.5 * largest / 10.0 + 1)
    assert halo(target_options=HeatmapTargetOptions(sigma_factor=0.2, truncate=2.0)) == pytest.approx(
        2.0 * 0.2 * largest / 10.0 + 1
    )
    seg = SegmentationTargetOptions(radius_fraction=0.4)
    assert halo(target_kind="segmentation", target_options=seg) == pytest.approx(0.4 * largest / 10.0 + 1)
    with pytest.raises(ConfigError, match="HeatmapTargetOptions"):
        halo(target_options=seg)


# --- old names still load --------------------------------------------------------------------------------------


def test_the_head_prior_has_one_name_and_the_old_one_still_loads(tmp_path):
    from cryopoint.model.heatmap25d import Heatmap25D
    from cryopoint.model.unet3d import UNet3D

    assert "prior" in inspect.signature(Heatmap25D).parameters and "prior" in inspect.signature(UNet3D).parameters
    old = config_from_dict({"model": {"arch": "unet3d", "prior_prob": 0.02}})
    assert old.model == UNet3DConfig(prior=0.02) and "prior_prob" not in config_to_dict(old)["model"]
    with pytest.raises(ConfigError, match=r"model\.prior_prob is the old name of model\.prior"):
        config_from_dict({"model": {"arch": "unet3d", "prior_prob": 0.02, "prior": 0.03}})
    config = {"model": {**TINY_UNET, "prior_prob": 0.02}, "train": {"loss": "dice_ce"}}  # an older unet3d checkpoint
    det = cryopoint.load(_checkpoint(tmp_path / "unet.pt", config, {**TINY_UNET, "prior": 0.02}))
    assert det.config.model.prior == 0.02 and det.model.target_kind == "segmentation"


# --- one lazy-loading mechanism --------------------------------------------------------------------------------


def test_models_and_losses_share_one_lazy_registry():
    from cryopoint.engine.losses import LOSSES, get_loss

    assert isinstance(ARCHITECTURES, LazyRegistry) and isinstance(LOSSES, LazyRegistry)
    assert ARCHITECTURES.target("unet3d") == "cryopoint.model.unet3d:UNet3D"
    assert get_loss("dice_ce") is LOSSES["dice_ce"] and LOSSES["dice_ce"].__module__ == "cryopoint.engine.seg_losses"
    with pytest.raises(ConfigError, match=r"Unknown model\.arch 'detr'; options: heatmap25d, unet3d"):
        build_model("detr")
    broken = LazyRegistry("train.loss", {"gone": "cryopoint.engine.losses:no_such_loss"})
    with pytest.raises(ConfigError, match=r"train\.loss 'gone' \(cryopoint\.engine\.losses:no_such_loss\)"):
        broken["gone"]  # noqa: B018


def test_registries_import_an_entry_only_when_it_is_used():
    code = (
        "import sys\n"
        "from cryopoint.model import ARCHITECTURES\n"
        "from cryopoint.engine.losses import LOSSES, get_loss\n"
        "lazy = ['cryopoint.model.heatmap25d', 'cryopoint.model.unet3d', 'cryopoint.engine.seg_losses']\n"
        "print([m in sys.modules for m in lazy])\n"
        "get_loss('dice_ce'); ARCHITECTURES['unet3d']\n"
        "print([m in sys.modules for m in lazy])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[False, False, False]", "[False, True, True]"]
