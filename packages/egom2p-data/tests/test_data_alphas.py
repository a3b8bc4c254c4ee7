"""Alphas config loading: the shipped files parse, bad files fail with clear errors."""

from __future__ import annotations

import json

import pytest
from egom2p.data.alphas import load_alphas_config, parse_alphas_string


def test_released_alphas(repo_root):
    cfg = load_alphas_config(repo_root / "configs/alphas/mix_mod4_all2all_uni.yaml")
    assert cfg.num_components == 4 and cfg.sampling_weights == (1.0, 1.0, 1.0, 1.0)
    assert cfg.input_alphas["tok_cam"] == (0.01, 0.1, 1.0, 10.0) == cfg.target_alphas["tok_rgb"]
    demo = load_alphas_config(repo_root / "configs/alphas/demo_rgb2all_all2all.yaml")
    assert demo.num_components == 3 and demo.input_alphas["tok_rgb"][0] == 1000.0 and demo.target_alphas["tok_rgb"][0] == 0.0


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
