"""Alphas configs: the shipped files parse, each key of the original's format keeps its meaning, bad files
fail with clear errors; per-dataset alphas strings are one value per sorted domain."""

from __future__ import annotations

import json

import pytest
from egom2p.data.alphas import load_alphas_config, parse_alphas_string, per_modality_alphas
from egom2p.data.masking import UnifiedMasking


def test_released_alphas(repo_root):
    cfg = load_alphas_config("mix_mod4_all2all_uni")
    assert cfg.num_components == 4 and cfg.sampling_weights == (1.0, 1.0, 1.0, 1.0)
    assert cfg.input_alphas["tok_cam"] == (0.01, 0.1, 1.0, 10.0) == cfg.target_alphas["tok_rgb"]
    demo = load_alphas_config("demo_rgb2all_all2all")
    assert demo.num_components == 3 and demo.input_alphas["tok_rgb"][0] == 1000.0 and demo.target_alphas["tok_rgb"][0] == 0.0


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"alphas_mixture": {"tok_a": {"input_alphas": [1.0]}}}, "tok_a.target_alphas' is missing"),
        ({"alphas_mixture": {"tok_a": {"input_alphas": [1.0], "target_alphas": [1.0, 2.0]}}}, "same length"),
        ({"alphas_mixture": {"tok_a": {"input_alphas": [-1.0], "target_alphas": [1.0]}}}, "non-negative"),
        ({"sampling_weights": [1, 1], "alphas_mixture": {"tok_a": {"input_alphas": [1], "target_alphas": [1]}}}, "sampling_weights"),
        ({"alphas_mixture": {}, "weights": [1]}, "unknown key"),
        ({"sampling_weights": [1]}, "'alphas_mixture' must be"),
        ({"tok_a": [1.0]}, "'tok_a' must be a mapping"),
        ({"tok_a": {"input_alphas": [1], "target_alphas": [1], "keeep": [1]}}, r"'tok_a' has unknown key\(s\) \['keeep'\]"),
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
    with pytest.raises(ValueError, match="non-negative"):
        parse_alphas_string([1.0, 2.0])


def test_per_modality_alphas_zips_sorted_domains():
    assert per_modality_alphas("0.5", ["tok_rgb", "tok_cam"]) == {"tok_cam": 0.5, "tok_rgb": 0.5}
    assert per_modality_alphas("1-2-3", ["tok_rgb", "tok_cam", "tok_depth"]) == {"tok_cam": 1.0, "tok_depth": 2.0, "tok_rgb": 3.0}
    with pytest.raises(ValueError, match=r"input_alphas '1-2' has 2 values for the 3 sorted domains"):
        per_modality_alphas("1-2", ["tok_rgb", "tok_cam", "tok_depth"], "input_alphas")


# -- one test per key of the original's alphas file (docs/original-behaviour.md#alphas-files) --------------------

ENTRY = {"input_alphas": [1.0, 0.0], "target_alphas": [0.0, 1.0]}


def component_shares(cfg) -> float:
    """Share of samples drawn from component 0 (all input tokens on tok_a) of a two-modality masking."""
    masking = UnifiedMasking.from_config({"tok_a": 50, "tok_b": 50}, ["tok_a", "tok_b"], ["tok_a", "tok_b"], 10, 10,
                                         alphas_config=cfg)
    b_in, _ = masking.sample_budgets(8000, 0)
    return (b_in[:, 0] == 10).double().mean().item()


def test_key_sampling_weights_with_alphas_mixture():
    cfg = load_alphas_config({"sampling_weights": [3, 1], "alphas_mixture": {"tok_a": ENTRY, "tok_b": {**ENTRY, "input_alphas": [0.0, 1.0]}}})
    assert cfg.sampling_weights == (3.0, 1.0) and abs(component_shares(cfg) - 0.75) < 0.02
    null = load_alphas_config({"sampling_weights": None, "alphas_mixture": {"tok_a": ENTRY, "tok_b": ENTRY}})
    assert null.sampling_weights is None  # 'sampling_weights' present but null: uniform, as the original


def test_without_sampling_weights_modalities_sit_at_the_top_level():
    """The original's other layout: no sampling_weights, the file maps modalities to alphas, components uniform."""
    cfg = load_alphas_config({"tok_a": ENTRY, "tok_b": {**ENTRY, "input_alphas": [0.0, 1.0]}})
    assert cfg.sampling_weights is None and cfg.input_alphas["tok_b"] == (0.0, 1.0)
    assert abs(component_shares(cfg) - 0.5) < 0.02


def test_alphas_mixture_without_sampling_weights_is_uniform():
    # The original fails on this file (it looks for the modalities at the top level); uniform is its only sense.
    cfg = load_alphas_config({"alphas_mixture": {"tok_a": ENTRY, "tok_b": {**ENTRY, "input_alphas": [0.0, 1.0]}}})
    assert cfg.sampling_weights is None and abs(component_shares(cfg) - 0.5) < 0.02


def test_key_keep_has_no_effect():
    """The original reads 'keep' for sequence modalities only (text span masking); EgoM2P has none."""
    with_keep = load_alphas_config({"tok_a": {**ENTRY, "keep": ["random", "all"]}, "tok_b": ENTRY})
    assert with_keep == load_alphas_config({"tok_a": ENTRY, "tok_b": ENTRY})
