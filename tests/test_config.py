import re

import pytest
import yaml

from atac.cli import build_parser, config_from_args
from atac.config import RunConfig, load_yaml, preset


def test_defaults_are_the_papers_budget():
    cfg = RunConfig()
    assert (cfg.epochs, cfg.steps_per_epoch, cfg.batch_size, cfg.lr, cfg.weight_decay) == (30, 20, 48, 2e-4, 1e-5)
    assert cfg.backbone == "resnet50" and cfg.method == "atac" and cfg.normalization == "paper"
    assert preset("paper").to_dict() == RunConfig(preset="paper").to_dict()


def test_presets_and_unknown_preset():
    assert preset("cpu").batch_size < RunConfig().batch_size
    with pytest.raises(ValueError, match="unknown preset"):
        preset("fast")


@pytest.mark.parametrize("field,value,match", [
    ("dataset", "imagenet", "dataset"), ("shots", 0, "shots"), ("crop_threshold", 0.0, "crop_threshold"),
    ("batch_size", 1, "batch_size"), ("normalization", "clip", "normalization"),
    ("setting", "easy", "setting"), ("patch_source", "x", "patch_source"),
])
def test_validate_names_the_field(field, value, match):
    cfg = RunConfig(**{field: value})
    with pytest.raises(ValueError, match=match):
        cfg.validate()


def test_hard_setting_needs_known_type():
    with pytest.raises(ValueError, match="known_type"):
        RunConfig(setting="hard").validate()


def test_yaml_roundtrip_and_unknown_keys(tmp_path):
    cfg = RunConfig(shots=1, patch_area=(0.05, 0.1), category="grid")
    cfg.save(tmp_path / "c.yaml")
    back = RunConfig.load(tmp_path / "c.yaml")
    assert back == cfg and isinstance(back.patch_area, tuple)
    (tmp_path / "bad.yaml").write_text("shots: 3\nshotz: 4\n")
    with pytest.raises(ValueError, match="shotz"):
        RunConfig.load(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        RunConfig.load(tmp_path / "list.yaml")


def test_flags_win_over_file_and_file_over_preset(tmp_path):
    (tmp_path / "c.yaml").write_text("preset: cpu\nshots: 3\nseed: 7\nimage-size: 96\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"), "--seed", "2"])
    cfg = config_from_args(args)
    assert cfg.preset == "cpu" and cfg.epochs == preset("cpu").epochs
    assert cfg.shots == 3 and cfg.seed == 2 and cfg.image_size == 96
    args = build_parser().parse_args(["train", "--clahe", "false", "--patch-area", "0.1", "0.2"])
    cfg = config_from_args(args)
    assert cfg.clahe is False and cfg.patch_area == (0.1, 0.2) and cfg.preset == "paper"


@pytest.mark.parametrize("text,field", [
    ('shots: "ten"', "shots"), ("shots: 2.5", "shots"), ('pseudo_anomaly: "false"', "pseudo_anomaly"),
    ("epochs: null", "epochs"), ("category: 123", "category"), ("patch_area: 0.1", "patch_area"),
    ("clahe_tile: 0", "clahe_tile"), ("lr_step: 0", "lr_step"), ("grad_clip: 0", "grad_clip"),
    ("attn_reduction: 0", "attn_reduction"), ("dev_ref_size: 1", "dev_ref_size"),
    ("dev_margin: .nan", "dev_margin"), ("patch_area: [-0.5, -0.1]", "patch_area"),
    ("seed: -1", "seed"), ("known_type: hole", "known_type"), ("device: foo", "device"),
    ("category: ..", "category"), ("mask_threshold: 300", "mask_threshold"),
])
def test_bad_yaml_values_name_the_field(tmp_path, text, field):
    (tmp_path / "c.yaml").write_text(text + "\n")
    with pytest.raises(ValueError, match=f"'{field}'"):
        RunConfig.load(tmp_path / "c.yaml").validate()


def test_yaml_keys_must_be_names(tmp_path):
    (tmp_path / "c.yaml").write_text("1: 2\n")
    with pytest.raises(ValueError, match="keys must be field names"):
        RunConfig.load(tmp_path / "c.yaml")


@pytest.mark.parametrize("text,field,value", [
    ("lr: 1e-3", "lr", 1e-3), ("weight_decay: 1.0e-5", "weight_decay", 1e-5),
    ("dev_margin: 5E+0", "dev_margin", 5.0), ("patch_area: [2e-2, 1.5e-1]", "patch_area", (0.02, 0.15)),
    ("lr: 0.001", "lr", 0.001), ("lr: 1", "lr", 1),
])
def test_a_number_in_exponent_form_is_the_number_written(tmp_path, text, field, value):
    (tmp_path / "c.yaml").write_text(text + "\n")
    cfg = RunConfig.load(tmp_path / "c.yaml").validate()
    assert getattr(cfg, field) == value and not isinstance(getattr(cfg, field), str)


def test_a_quoted_number_is_still_a_string(tmp_path):
    (tmp_path / "c.yaml").write_text('lr: "1e-3"\n')
    with pytest.raises(ValueError, match="config field 'lr': must be a finite number"):
        RunConfig.load(tmp_path / "c.yaml").validate()


@pytest.mark.parametrize("text,key", [
    ("lr: 1e-3\nseed: 1\nlr: 2e-4\n", "'lr' twice (first on line 1)"),
    ("extra:\n  note: a\n  note: b\n", "'note' twice (first on line 2)"),
    ("{seed: 1, seed: 2}\n", "'seed' twice"),
    ("image-size: 64\nimage_size: 96\n", "'image_size' is given twice"),
])
def test_a_key_given_twice_is_an_error_naming_it(tmp_path, text, key):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ValueError, match=rf"(?s)c\.yaml: .*{re.escape(key)}"):
        RunConfig.load(tmp_path / "c.yaml")


def test_load_yaml_serves_sweep_files_too(tmp_path):
    (tmp_path / "s.yaml").write_text("base:\n  preset: smoke\ngrid:\n  - lr: [1e-3, 2e-4]\n    seed: 0\n")
    assert load_yaml(tmp_path / "s.yaml")["grid"][0]["lr"] == [1e-3, 2e-4]
    (tmp_path / "s.yaml").write_text("grid:\n  - seed: 0\n    seed: 1\n")
    with pytest.raises(yaml.YAMLError, match="'seed' twice"):
        load_yaml(tmp_path / "s.yaml")
    (tmp_path / "a.yaml").write_text("x: &x {a: 1}\ny:\n  <<: *x\n  a: 2\n")   # a merge may override
    assert load_yaml(tmp_path / "a.yaml")["y"] == {"a": 2}


def test_identity_leaves_out_execution_details_but_not_a_chosen_precision():
    from atac.config import identity, identity_differences, same_run

    base = RunConfig().to_dict()
    moved = {**base, "device": "cuda:3", "data_root": "/x", "eval_batch_size": 7, "extra": {"n": 1}}
    assert same_run(base, moved) and identity(base) == identity(moved)
    assert "amp" not in identity(base) and "compile" not in identity(base)
    for field, value in (("amp", "bf16"), ("amp", "off"), ("compile", True), ("lr", 1e-3)):
        assert identity_differences(base, {**base, field: value}) == [field]
    with pytest.raises(ValueError, match="must be a mapping"):
        identity(["not", "a", "config"])
