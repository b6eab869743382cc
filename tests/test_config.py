"""Configuration: layering, unknown keys, overrides and the hash."""

import pytest

from pmtrec.config import config_hash, load_config, merge, parse_override
from pmtrec.errors import ConfigError


def test_overrides_apply_in_order_and_parse_yaml_values():
    cfg = load_config(overrides=["train.epochs=3", "train.lr=0.01", "eval.ks=[5, 20]", "train.epochs=4"])
    assert cfg["train"]["epochs"] == 4 and cfg["train"]["lr"] == 0.01 and cfg["eval"]["ks"] == [5, 20]


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="train.epoch'"):
        load_config(overrides=["train.epoch=3"])


def test_free_form_sections_merge_key_by_key():
    cfg = load_config(overrides=["dataset.custom.interactions=a.csv", "dataset.custom.name=x",
                                 "train.method_params.tau=2", "train.method_params.focus_max=0.3"])
    assert cfg["dataset"]["custom"]["interactions"] == "a.csv" and cfg["dataset"]["custom"]["name"] == "x"
    assert cfg["train"]["method_params"] == {"tau": 2, "focus_max": 0.3}


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("train.epochs")


def test_hash_ignores_key_order_but_not_values():
    a = {"x": 1, "y": {"a": 1, "b": 2}}
    b = {"y": {"b": 2, "a": 1}, "x": 1}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(merge(a, {"x": 2}))
