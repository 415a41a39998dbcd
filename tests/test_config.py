from pathlib import Path

import pytest
import yaml

from cryopoint.config import (
    Config,
    SegmentationTargetOptions,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from cryopoint.errors import ConfigError, DataNotFoundError


def _write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_name_from_stem(tmp_path):
    cfg = load_config(_write(tmp_path, {"train": {"steps": 7}}))
    assert isinstance(cfg, Config)
    assert cfg.train.steps == 7
    assert cfg.train.name == "exp"
    assert cfg.model.arch == "heatmap25d"


def test_unknown_key_names_the_dotted_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'train\.lrr'.*valid keys in section 'train'.*lr"):
        load_config(_write(tmp_path, {"train": {"lrr": 0.1}}))
    with pytest.raises(ConfigError, match="'trian'"):
        config_from_dict({"trian": {}})


@pytest.mark.parametrize(
    "data, key, expected",
    [
        ({"train": {"steps": "ten"}}, "train.steps", "int"),
        ({"train": {"steps": 1.5}}, "train.steps", "int"),
        ({"train": {"steps": True}}, "train.steps", "int"),
        ({"train": {"resume": "yes"}}, "train.resume", "bool"),
        ({"train": {"lr": "fast"}}, "train.lr", "float"),
        ({"data": {"crop": 64}}, "data.crop", "list of int"),
        ({"data": {"crop": [16, "a", 16]}}, r"data.crop\[1\]", "int"),
        ({"data": {"root": 3}}, "data.root", "str"),
        ({"model": 3}, "model", "mapping"),
    ],
)
def test_wrong_types_raise_with_key_and_type(data, key, expected):
    with pytest.raises(ConfigError, match=rf"{key}.*{expected}"):
        config_from_dict(data)


def test_float_accepts_int_and_yaml11_exponent_strings():
    cfg = config_from_dict({"train": {"lr": "3e-4", "weight_decay": 0}})
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.weight_decay, float)


def test_value_checks():
    with pytest.raises(ConfigError, match="data.crop"):
        config_from_dict({"data": {"crop": [16, 64]}})
    with pytest.raises(ConfigError, match="ema_decay"):
        config_from_dict({"train": {"ema_decay": 1.0}})


def test_dotted_overrides(tmp_path):
    path = _write(tmp_path, {"train": {"lr": 0.1}, "data": {"fold": 0}})
    cfg = load_config(path, ["train.lr=3e-4", "data.fold=2", "data.crop=[16,64,64]", "data.root=", "train.resume=true"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.data.fold == 2 and cfg.data.crop == [16, 64, 64] and cfg.data.root == ""
    assert cfg.train.resume is True
    with pytest.raises(ConfigError, match="train.nope"):
        load_config(path, ["train.nope=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["train.lr"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=1"])


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(_write(tmp_path, {"train": {"class_weights": [1, 1, 2, 1, 2, 1]}}), ["infer.tta=true"])
    out = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(out)
    assert again == cfg
    assert config_to_dict(again)["train"]["class_weights"] == [1.0, 1.0, 2.0, 1.0, 2.0, 1.0]


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(DataNotFoundError):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.train.name == path.stem


def test_unet3d_config_builds_the_segmentation_baseline_and_its_loss_trains_it():
    import torch

    from cryopoint.engine.losses import get_loss
    from cryopoint.model import build_model

    cfg = load_config(CONFIGS / "unet3d.yaml")
    assert (cfg.model.arch, cfg.train.loss) == ("unet3d", "dice_ce")
    assert cfg.data.target_options == SegmentationTargetOptions(radius_fraction=0.5)
    model = build_model(**config_to_dict(cfg)["model"])
    assert model.target_kind == "segmentation" and model.channels == (32, 64, 128, 256) and model.output_stride == 1
    logits = model(torch.zeros(1, 1, 8, 16, 16))
    background = torch.zeros((1, 8, 16, 16), dtype=torch.int64)  # a crop with no particle: all label 0
    loss = get_loss(cfg.train.loss)(logits, background, torch.tensor(cfg.train.class_weights, dtype=torch.float32))
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("options", [{"sigma_facter": 0.5}, {"radius_fracton": 0.5}])
def test_unknown_target_options_key_is_a_config_error(options):
    (key,) = options
    with pytest.raises(ConfigError, match=f"data.target_options.*{key}"):
        config_from_dict({"data": {"target_options": options}})


def test_model_section_matches_the_architecture():
    import inspect

    from cryopoint.config import MODEL_CONFIGS
    from cryopoint.model import ARCHITECTURES, build_model

    assert set(MODEL_CONFIGS) == set(ARCHITECTURES)
    for arch, section in MODEL_CONFIGS.items():
        accepted = set(inspect.signature(ARCHITECTURES[arch]).parameters)
        fields = set(config_to_dict(config_from_dict({"model": {"arch": arch}}))["model"]) - {"arch"}
        fixed_by_catalogue = {"num_classes", "in_channels"}  # the particle catalogue and the tomogram fix these
        assert fields == accepted - fixed_by_catalogue, f"{section.__name__} drifted from {arch}'s arguments"
    cfg = config_from_dict({"model": {"encoder": "test_resnet", "slab": 3, "decoder_channels": [8, 8]}})
    model = build_model(**config_to_dict(cfg)["model"])  # cfg.model is exactly build_model's kwargs
    assert model.target_kind == "heatmap"
    unet = config_from_dict({"model": {"arch": "unet3d", "channels": [4, 8]}})
    assert build_model(**config_to_dict(unet)["model"]).target_kind == "segmentation"
    with pytest.raises(ConfigError, match="'model.encoder'"):
        config_from_dict({"model": {"arch": "unet3d", "encoder": "resnet18"}})
    with pytest.raises(ConfigError, match="options: heatmap25d, unet3d"):
        config_from_dict({"model": {"arch": "detr"}})


def test_dict_and_nested_sections():
    cfg = config_from_dict({"data": {"target_options": {"sigma_factor": 1}, "augment": {"enabled": False}}})
    assert cfg.data.target_options.sigma_factor == 1.0 and cfg.data.augment.enabled is False
    with pytest.raises(ConfigError, match="data.target_options.sigma_factor"):
        config_from_dict({"data": {"target_options": {"sigma_factor": "wide"}}})
    with pytest.raises(ConfigError, match="'data.augment.flips'"):
        config_from_dict({"data": {"augment": {"flips": [0]}}})
