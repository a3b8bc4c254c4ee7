"""Modalities in the config, position embeddings, config validation and presets."""

from __future__ import annotations

import json
import math

import pytest
import torch
from egom2p.core.modalities import ModalitySpec
from egom2p.model import PRESETS, EgoM2P, EgoM2PConfig, preset_config
from egom2p.model.embeddings import sincos_1d, sincos_3d
from model_helpers import TINY_MODALITIES, tiny_config


def test_sincos_1d_halves():
    table = sincos_1d(5, 8)
    assert table.shape == (1, 5, 8)
    omega = [10000 ** (-k / 4) for k in range(4)]
    n = 3
    expected = [math.sin(n * w) for w in omega] + [math.cos(n * w) for w in omega]
    torch.testing.assert_close(table[0, n], torch.tensor(expected))


def test_sincos_3d_axes_and_row_major_order():
    table = sincos_3d(2, 3, 4, 12)
    assert table.shape == (1, 24, 12)
    t, h, w = 1, 2, 3
    f = [1.0, 10000 ** (-2 / 4)]

    def axis(p):
        return [v for freq in f for v in (math.sin(p * freq), math.cos(p * freq))]

    torch.testing.assert_close(table[0, t * 12 + h * 4 + w], torch.tensor(axis(t) + axis(h) + axis(w)))


def test_position_tables_need_the_right_width():
    with pytest.raises(ValueError, match="divisible by 6"):
        sincos_3d(2, 2, 2, 16)
    with pytest.raises(ValueError, match="even"):
        sincos_1d(3, 7)


def test_config_modalities_by_preset_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the modality sets egom2p-core ships, found without the repository
    tiny = tiny_config(modalities="tiny").modalities
    assert sorted(tiny) == ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]
    assert (tiny["tok_rgb"].grid, tiny["tok_rgb"].vocab_size, tiny["tok_cam"].length) == ((2, 4, 4), 64, 8)
    assert EgoM2PConfig().modalities == EgoM2PConfig(modalities="egom2p").modalities  # the default: the released set
    assert EgoM2PConfig().modalities["tok_rgb"].grid == (5, 32, 32)
    with pytest.raises(FileNotFoundError, match="tinyy, and the modalities presets are egom2p, tiny, tiny-hand"):
        tiny_config(modalities="tinyy")


def test_config_modalities_from_file_entries_or_specs(tmp_path):
    path = tmp_path / "mods.yaml"
    path.write_text("tok_b: {vocab_size: 8, length: 4}\ntok_a: {vocab_size: 9, grid: [1, 2, 6], folder: video_a}\n")
    from_file = tiny_config(modalities=path)
    specs = from_file.modalities
    assert list(specs) == ["tok_a", "tok_b"] and all(isinstance(m, ModalitySpec) for m in specs.values())
    assert (specs["tok_a"].num_tokens, specs["tok_a"].folder, specs["tok_b"].folder) == (12, "video_a", "b")
    assert tiny_config(modalities={k: v.to_dict() for k, v in specs.items()}) == from_file
    assert tiny_config(modalities=dict(specs)) == from_file
    # config.json always records each modality's folder.
    assert json.loads(json.dumps(from_file.to_dict()))["modalities"]["tok_b"] == {"vocab_size": 8, "length": 4, "folder": "b"}
    with pytest.raises(ValueError, match="tok_c.*exactly one"):
        tiny_config(modalities={"tok_c": {"vocab_size": 3, "length": 2, "grid": [1, 1, 2]}})
    with pytest.raises(ValueError, match=r"tok_c.*unknown key\(s\) \['size'\]"):
        tiny_config(modalities={"tok_c": {"vocab_size": 3, "length": 2, "size": 1}})
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        tiny_config(modalities=tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="modalities must be a path or a mapping"):
        tiny_config(modalities=["tok_a"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_heads=5), "divisible by num_heads"),
        (dict(dim=20, num_heads=2), "divisible by 6"),
        (dict(attn_backend="flash"), "attn_backend"),
        (dict(encoder_depth=0), "encoder_depth"),
        (dict(decoder_causal_mask=True, attn_backend="triton"), "causal"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_config_dict_round_trip_and_unknown_keys():
    cfg = tiny_config(qk_norm=True)
    again = EgoM2PConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.modalities["tok_rgb"].grid == (2, 2, 3)
    with pytest.raises(ValueError, match="unknown EgoM2PConfig keys.*'depth'"):
        EgoM2PConfig.from_dict({**cfg.to_dict(), "depth": 3})
    assert cfg.mlp_hidden == 64 and tiny_config(gated_mlp=False).mlp_hidden == 96


def test_released_base_parameter_count_on_meta():
    with torch.device("meta"):
        model = EgoM2P.from_preset("egom2p-base")
    assert sum(p.numel() for p in model.parameters()) == 396_226_560
    assert PRESETS["egom2p_base_12e_12d_swiglu_nobias"] == PRESETS["egom2p-base"]


def test_every_original_registry_name_is_a_preset():
    sizes = ["tiny_6e_6d", "small_8e_8d", "base_12e_12d", "large_24e_24d", "xlarge_24e_24d"]
    names = [f"egom2p_{s}_gelu" for s in sizes] + [f"egom2p_{s}_swiglu_nobias" for s in sizes]
    names += [f"egom2p_{s}_swiglu_qknorm_nobias" for s in sizes[2:]] + ["egom2p_base_12e_12d_swiglu_nobias_causal"]
    assert set(names) <= set(PRESETS)
    large = preset_config("egom2p_large_24e_24d_swiglu_nobias")
    assert (large.dim, large.num_heads, large.encoder_depth) == (1020, 15, 24)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("egom2p-huge")


@pytest.mark.parametrize(
    "preset",
    ["egom2p_tiny_6e_6d_gelu", "egom2p_base_12e_12d_swiglu_qknorm_nobias", "egom2p_base_12e_12d_swiglu_nobias_causal"],
)
def test_variants_run(preset):
    # The variants' layer options on tiny widths: GELU with biases, qk-norm, causal decoder.
    cfg = preset_config(preset, dim=24, num_heads=2, encoder_depth=1, decoder_depth=1, modalities=TINY_MODALITIES, attn_backend="sdpa")
    model = EgoM2P(cfg)
    gen = torch.Generator().manual_seed(0)
    batch = {
        name: {
            "tensor": torch.randint(0, spec.vocab_size, (2, spec.num_tokens), generator=gen),
            "input_mask": torch.rand(2, spec.num_tokens, generator=gen) > 0.5,
            "target_mask": torch.rand(2, spec.num_tokens, generator=gen) > 0.5,
        }
        for name, spec in cfg.modalities.items()
    }
    loss = model(batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    keys = set(model.state_dict())
    assert ("encoder.0.attn.q_norm.weight" in keys) == cfg.qk_norm
    assert ("encoder.0.mlp.fc3.weight" in keys) == cfg.gated_mlp
    assert ("encoder.0.norm1.bias" in keys) == cfg.norm_bias
