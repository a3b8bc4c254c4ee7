"""Modality and alphas config loading: the shipped files parse, bad files fail with clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from egom2p.data.alphas import load_alphas_config, parse_alphas_string
from egom2p.data.modalities import load_modalities


def test_released_modalities(repo_root):
    mods = load_modalities(repo_root / "configs/modalities/egom2p.yaml")
    assert list(mods) == ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]
    assert mods["tok_rgb"].num_tokens == 5120 and mods["tok_rgb"].shape == (5, 32, 32)
    assert mods["tok_cam"].num_tokens == 30 and mods["tok_cam"].vocab_size == 256
    assert mods["tok_depth"].folder == "depth"


def test_modalities_from_dict_default_folder_and_errors():
    mods = load_modalities({"tok_b": {"vocab_size": 4, "length": 3}, "tok_a": {"vocab_size": 8, "grid": [1, 2, 2]}})
    assert list(mods) == ["tok_a", "tok_b"] and mods["tok_b"].folder == "b" and mods["tok_a"].num_tokens == 4
    with pytest.raises(ValueError, match="tok_x.*unknown key"):
        load_modalities({"tok_x": {"vocab_size": 4, "length": 3, "colour": 1}})
    with pytest.raises(ValueError, match="exactly one of 'grid' or 'length'"):
        load_modalities({"tok_x": {"vocab_size": 4}})


def test_modalities_without_pyyaml(repo_root, tmp_path):
    code = (
        "import sys; sys.modules['yaml'] = None\n"
        "from egom2p.data.modalities import load_modalities\n"
        f"print(load_modalities({str(repo_root / 'configs/modalities/tiny.yaml')!r})['tok_rgb'].num_tokens)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "32"


def test_released_alphas(repo_root):
    cfg = load_alphas_config(repo_root / "configs/alphas/mix_mod4_all2all_uni.yaml")
    assert cfg.num_components == 4 and cfg.sampling_weights == (1.0, 1.0, 1.0, 1.0)
    assert cfg.input_alphas["tok_cam"] == (0.01, 0.1, 1.0, 10.0) == cfg.target_alphas["tok_rgb"]


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"alphas_mixture": {"tok_a": {"input_alphas": [1.0]}}}, "tok_a.target_alphas' is missing"),
        ({"alphas_mixture": {"tok_a": {"input_alphas": [1.0], "target_alphas": [1.0, 2.0]}}}, "same length"),
        ({"alphas_mixture": {"tok_a": {"input_alphas": [-1.0], "target_alphas": [1.0]}}}, "non-negative"),
        ({"sampling_weights": [1, 1], "alphas_mixture": {"tok_a": {"input_alphas": [1], "target_alphas": [1]}}}, "sampling_weights"),
        ({"alphas": {}}, "unknown key"),
    ],
)
def test_alphas_validation(raw, message, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message) as err:
        load_alphas_config(path)
    assert "bad.yaml" in str(err.value)


def test_parse_alphas_string():
    assert parse_alphas_string("0.5-1-2") == (0.5, 1.0, 2.0)
    assert parse_alphas_string(1.0) == (1.0,)
    with pytest.raises(ValueError, match="a1-a2"):
        parse_alphas_string("x-y")
