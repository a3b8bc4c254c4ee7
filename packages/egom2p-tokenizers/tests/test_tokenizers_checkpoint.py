"""Saving and loading tokenizers: our directories, training runs, the released ``.pth`` layout (read without
running code), bare state dicts, and the errors users see."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from egom2p.tokenizers.checkpoint import config_from_state
from egom2p.tokenizers.presets import tokenizer_config
from egom2p.tokenizers.vqvae import VQVAE


def _original_args(kind: str) -> argparse.Namespace:
    """The original trainer's args for a tokenizer run (the names of its YAML; no width, depth or heads)."""
    transformer = {"cam": "CamTransformer", "gaze": "GazeTransformer"}[kind]
    return argparse.Namespace(
        encoder_type=transformer, decoder_type=transformer, domain=kind, num_frames=60, post_mlp=True,
        codebook_size=256, latent_dim=32, norm_codes=True, quantizer_type="lucid", coef_ema_dead_code=32.0,
        code_replacement_policy="batch_random", commitment_weight=1.0, quantizer_ema_decay=0.99,
        kmeans_init=False, temporal_downsampling=2, loss_fn="mse" if kind == "cam" else "mse_mask",
    )


def _save_original(path: Path, entry: dict, args: object) -> Path:
    torch.save({"model": entry["state_dict"], "args": args, "epoch": 3, "scaler": {}}, path)
    return path


@pytest.mark.parametrize("kind", ["cam", "gaze"])
def test_released_layout_file_loads_safely_and_gives_the_original_tokens(kind, tokenizers_tiny, tmp_path):
    entry = tokenizers_tiny[kind]
    path = _save_original(tmp_path / f"{kind}_tokenizer.pth", entry, _original_args(kind))
    with pytest.raises(ValueError, match=r"num_heads") as err:  # width 96 does not say its heads
        VQVAE.from_pretrained(path)
    assert "\n" not in str(err.value)
    model = VQVAE.from_pretrained(path, config={"num_heads": 4})
    assert not model.training
    assert model.config.to_dict() == tokenizer_config(f"{kind}-tiny").to_dict()
    assert torch.equal(model.tokenize(entry["input"]), entry["eval"]["tokens"])
    assert not model.encoder.position_embeddings.requires_grad


def test_released_shapes_tell_the_whole_released_config():
    for name in ("cam-released", "gaze-released"):
        with torch.device("meta"):
            state = VQVAE.from_preset(name).state_dict()
        fields = config_from_state(state, _original_args(name.split("-")[0]))
        assert fields == {k: v for k, v in tokenizer_config(name).to_dict().items()
                          if k not in ("threshold_ema_dead_code", "eps")}


def test_args_set_the_quantizer_settings(tokenizers_tiny):
    args = _original_args("cam")
    args.quantizer_ema_decay, args.commitment_weight = 0.9, 0.5
    fields = config_from_state(tokenizers_tiny["cam"]["state_dict"], args)
    assert (fields["ema_decay"], fields["commitment_weight"]) == (0.9, 0.5)


class _WritesAFile:
    """Unpickling this would create ``target``: the side effect a safe loader must never let happen."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_a_file_that_would_run_code_is_refused_and_nothing_runs(tokenizers_tiny, tmp_path):
    marker = tmp_path / "pwned"
    path = _save_original(tmp_path / "evil.pth", tokenizers_tiny["cam"], _WritesAFile(marker))
    assert not marker.exists()
    with pytest.raises(ValueError) as err:
        VQVAE.from_pretrained(path, config={"num_heads": 4})
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "open" in message
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["cam", "gaze"])
def test_save_pretrained_round_trip_is_exact(kind, fixture_model, tokenizers_tiny, tmp_path):
    model = fixture_model(kind)
    model.quantize._codebook.cluster_size.uniform_()  # buffers travel too
    model.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "integrity.json", "model.safetensors"]
    loaded = VQVAE.from_pretrained(tmp_path / "tok")
    assert loaded.config == model.config and not loaded.training
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert [n for n, p in loaded.named_parameters() if not p.requires_grad] == [
        "encoder.position_embeddings", "decoder.position_embeddings"]
    assert torch.equal(loaded.tokenize(tokenizers_tiny[kind]["input"]), tokenizers_tiny[kind]["eval"]["tokens"])


def test_a_run_directory_resolves_to_its_newest_complete_step(fixture_model, tmp_path):
    run = tmp_path / "run"
    for step in (2, 10, 9):
        model = fixture_model("cam")
        model.quantize._codebook.cluster_size.fill_(step)  # marks which step was loaded
        model.save_pretrained(run / "checkpoints" / f"step-{step}")
    (run / "checkpoints" / "step-11").mkdir()  # incomplete: no files yet
    (run / "checkpoints" / "step-11" / "model.safetensors").write_bytes(b"")
    for source in (run, run / "checkpoints", run / "checkpoints" / "step-9"):
        expected = 9 if source.name == "step-9" else 10
        assert VQVAE.from_pretrained(source).quantize._codebook.cluster_size[0].item() == expected


def test_a_state_dict_source_needs_what_the_shapes_do_not_say(tokenizers_tiny):
    entry = tokenizers_tiny["gaze"]
    with pytest.raises(ValueError, match="num_heads"):
        VQVAE.from_pretrained(entry["state_dict"])
    embed = entry["state_dict"]["quantize._codebook.embed"].clone()
    model = VQVAE.from_pretrained(entry["state_dict"], config=tokenizer_config("gaze-tiny"))
    assert torch.equal(model.tokenize(entry["input"]), entry["eval"]["tokens"])
    model.train()(entry["input"])  # the EMA step must not write into the caller's tensors
    assert torch.equal(entry["state_dict"]["quantize._codebook.embed"], embed)
    assert not torch.equal(model.quantize.codebook, embed)


def test_weights_that_do_not_fit_are_one_line_errors(tokenizers_tiny, tmp_path):
    state = dict(tokenizers_tiny["cam"]["state_dict"])
    del state["decoder.out_proj.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['decoder.out_proj.bias'\]") as err:
        VQVAE.from_pretrained(state, config=tokenizer_config("cam-tiny"))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="wrong shapes"):
        VQVAE.from_pretrained(tokenizers_tiny["cam"]["state_dict"], config=tokenizer_config("cam-tiny", depth=3,
                                                                                           dim_tokens=128))
    with pytest.raises(ValueError, match=r"3 input channels"):
        state = {**tokenizers_tiny["cam"]["state_dict"], "encoder.conv.weight": torch.zeros(96, 3, 2)}
        VQVAE.from_pretrained(state)


def test_missing_sources_and_bad_configs_are_named(fixture_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        VQVAE.from_pretrained(tmp_path / "nothing-here")
    fixture_model("cam").save_pretrained(tmp_path / "tok")
    with pytest.raises(ValueError, match=r"tok: unknown TokenizerConfig keys \['dim'\]"):
        VQVAE.from_pretrained(tmp_path / "tok", config={"dim": 3})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a PyTorch checkpoint"):
        VQVAE.from_pretrained(tmp_path / "junk.pth")
