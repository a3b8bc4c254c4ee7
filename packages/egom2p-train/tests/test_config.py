"""Config loading: defaults -> YAML -> dotted overrides, strict validation naming the key."""

from pathlib import Path

import pytest
import yaml
from egom2p.train.config import ConfigError, TrainConfig, load_config, save_resolved_config

BASE = {"data_config": "configs/data/demo.yaml", "output_dir": "/tmp/run", "epoch_size": 1000}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_then_overrides_win(tmp_path):
    path = write(tmp_path, {**BASE, "blr": 2e-4, "batch_size": 8})
    cfg = load_config(path, ["batch_size=4", "opt_betas=[0.9,0.99]", "model_overrides.dim=48", "clip_grad=1.0"])
    assert cfg.blr == 2e-4 and cfg.batch_size == 4
    assert cfg.opt_betas == [0.9, 0.99] and cfg.model_overrides == {"dim": 48} and cfg.clip_grad == 1.0
    assert cfg.num_input_tokens == TrainConfig().num_input_tokens  # untouched default


def test_yaml_scientific_notation_string_is_a_float(tmp_path):
    # YAML 1.1 reads "1e-4" (no dot) as a string; it must still be accepted as a float.
    cfg = load_config(write(tmp_path, {**BASE, "clip_grad": 1.0}), ["blr=1e-4", "clip_grad=null"])
    assert cfg.blr == pytest.approx(1e-4) and cfg.clip_grad is None


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, {**BASE, "bllr": 1e-4})
    with pytest.raises(ConfigError, match=r"'bllr'.*train\.yaml.*did you mean 'blr'"):
        load_config(path)


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'not_a_key'"):
        load_config(None, [f"{k}={v}" for k, v in BASE.items()] + ["not_a_key=3"])


@pytest.mark.parametrize("override, key", [
    ("batch_size=abc", "batch_size"),
    ("log_wandb=3", "log_wandb"),
    ("blr=-1e-4", "blr"),
    ("dtype=float8", "dtype"),
    ("loss_type=l2", "loss_type"),
    ("total_tokens=10", "warmup_tokens"),  # with warmup_tokens=20 below
    ("epoch_size=0", "epoch_size"),
    ("max_steps=0", "max_steps"),
    ("opt_betas=[0.9]", "opt_betas"),
    ("keep_last_k=0", "keep_last_k"),
])
def test_bad_values_name_the_key(tmp_path, override, key):
    path = write(tmp_path, {**BASE, "warmup_tokens": 20})
    with pytest.raises(ConfigError, match=f"'{key}'") as info:
        load_config(path, [override])
    assert info.value.key == key or key in str(info.value)


def test_value_error_names_its_source_file(tmp_path):
    path = write(tmp_path, {**BASE, "blr": -1.0})
    with pytest.raises(ConfigError, match=r"'blr'.*train\.yaml"):
        load_config(path)


def test_warmup_longer_than_run_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="'warmup_epochs'"):
        load_config(write(tmp_path, {**BASE, "epochs": 2, "warmup_epochs": 3}))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["model_overrides.dim=48", "seed=7"])
    saved = save_resolved_config(cfg, tmp_path / "out")
    assert saved == tmp_path / "out" / "config.yaml"
    assert load_config(saved) == cfg
