"""State-dict layout of the tokenizers (the released names must load unchanged) and their configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from egom2p.tokenizers.config import TokenizerConfig
from egom2p.tokenizers.presets import TOKENIZER_PRESETS, tokenizer_config
from egom2p.tokenizers.vqvae import VQVAE

FIXTURES = Path(__file__).parent / "fixtures"
# The released tokenizers' parameter counts (every nn.Parameter, position embeddings included), from
# fixtures/TOKENIZERS_PARITY_README.md.
RELEASED_PARAMETERS = {"cam": 179_681_330, "gaze": 179_659_812}


def _manifest(kind: str) -> list[tuple[str, tuple[int, ...], str, str]]:
    lines = (FIXTURES / f"{kind}_tokenizer_state_dict_manifest.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["key", "shape", "dtype", "kind"]
    rows = []
    for line in lines[1:]:
        key, shape, dtype, kind_ = line.split("\t")
        rows.append((key, tuple(int(n) for n in shape.strip("()").split(",") if n.strip()), dtype, kind_))
    return rows


def _layout(model: VQVAE) -> list[tuple[str, tuple[int, ...], str, str]]:
    parameters = dict(model.named_parameters())
    return [(key, tuple(value.shape), str(value.dtype).removeprefix("torch."),
             "parameter" if key in parameters else "buffer") for key, value in model.state_dict().items()]


@pytest.mark.parametrize("kind", ["cam", "gaze"])
def test_released_preset_has_the_released_state_dict_layout(kind):
    with torch.device("meta"):  # shapes only
        model = VQVAE.from_preset(f"{kind}-released")
    manifest = _manifest(kind)
    assert len(manifest) == 313
    assert _layout(model) == manifest  # names, order, shapes, dtypes, parameter vs buffer
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS[kind]
    for part in ("encoder", "decoder"):
        assert not getattr(model, part).position_embeddings.requires_grad


@pytest.mark.parametrize("kind", ["cam", "gaze"])
def test_tiny_preset_has_the_fixture_layout(kind, tokenizers_tiny):
    model = VQVAE.from_preset(f"{kind}-tiny")
    recorded = tokenizers_tiny[kind]["state_dict"]
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [(k, tuple(v.shape)) for k, v in recorded.items()]
    assert model.config == TokenizerConfig.from_dict(tokenizers_tiny[kind]["config"])


def test_model_properties_and_fresh_codebook():
    model = VQVAE.from_preset("gaze-tiny")
    assert (model.kind, model.num_tokens, model.vocab_size) == ("gaze", 30, 256)
    codebook = model.quantize._codebook
    torch.testing.assert_close(codebook.embed.norm(dim=-1), torch.ones(256))  # l2-normalised rows
    assert codebook.initted.item() == 1.0 and codebook.cluster_size.abs().sum().item() == 0.0


def test_config_round_trips_and_derives_in_channels():
    for name in TOKENIZER_PRESETS:
        config = tokenizer_config(name)
        assert TokenizerConfig.from_dict(config.to_dict()) == config
    assert tokenizer_config("cam-released").in_channels == 9
    assert tokenizer_config("gaze-released").in_channels == 2
    assert tokenizer_config("cam-tiny").replace(kind="gaze").in_channels == 2
    assert tokenizer_config("cam-released", num_frames=40).num_tokens == 20


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"unknown TokenizerConfig keys \['dim'\]"):
        TokenizerConfig.from_dict({"kind": "cam", "dim": 768})
    with pytest.raises(ValueError, match="unknown tokenizer preset 'cam'"):
        tokenizer_config("cam")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "depth"}, "kind must be one of"),
        ({"num_frames": 61}, "num_frames (61) must be divisible by temporal_compress (2)"),
        ({"num_heads": 5}, "dim_tokens (768) must be divisible by num_heads (5)"),
        ({"depth": 0}, "depth must be a positive int"),
        ({"ema_decay": 1.0}, "ema_decay must be in [0, 1)"),
        ({"threshold_ema_dead_code": -1}, "threshold_ema_dead_code must be >= 0"),
        ({"in_channels": 3}, "in_channels must be 9 for kind 'cam'"),
        ({"code_replacement_policy": "linde_buzo_gray"}, "code_replacement_policy must be one of"),
        ({"post_mlp": "yes"}, "post_mlp must be true or false"),
    ],
)
def test_bad_config_values_are_one_line_errors(changes, message):
    with pytest.raises(ValueError) as err:
        TokenizerConfig.from_dict({"kind": "cam", **changes})
    assert message in str(err.value) and "\n" not in str(err.value)
