"""Checkpoints: our safetensors directory, training-run layouts, the original .pth layout, and the converter CLI."""

from __future__ import annotations

import argparse
import importlib.metadata
import re
from pathlib import Path

import pytest
import torch
from egom2p.model import EgoM2P, resolve_checkpoint, write_pretrained
from egom2p.model.checkpoint import config_from_original_args
from egom2p.model.convert import main as convert_main
from model_helpers import random_batch, tiny_config

# The released checkpoint's keys and shapes (fixtures/PARITY_README.md). Missing = failure.
MANIFEST = Path(__file__).parent / "fixtures" / "egom2p_b_state_dict_manifest.tsv"


def _outputs(model, batch):
    with torch.no_grad():
        return model.eval()(batch, return_logits=True)


def test_save_load_round_trip(tmp_path):
    model = EgoM2P(tiny_config())
    model.save_pretrained(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"model.safetensors", "config.json", "integrity.json"}
    loaded = EgoM2P.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config
    batch = random_batch(model.config)
    a, b = _outputs(model, batch), _outputs(loaded, batch)
    assert torch.equal(a.loss, b.loss)
    # config= overrides what the directory says (here: the attention backend).
    assert EgoM2P.from_pretrained(tmp_path / "ckpt", config=tiny_config(attn_backend="reference")).config.attn_backend == "reference"


def _original_layout(model: EgoM2P) -> dict[str, torch.Tensor]:
    """The original's state dict for ``model``'s weights, built from the released key manifest."""
    ours = model.state_dict()
    buffers = dict(model.named_buffers(remove_duplicate=False))
    state = {}
    rows = [line.split("\t") for line in MANIFEST.read_text().splitlines() if line.strip()]
    for key, _shape, _dtype, kind, *rest in rows:
        layer = re.match(r"(encoder|decoder)\.(\d+)\.", key)
        depth = model.config.encoder_depth if key.startswith("encoder.") else model.config.decoder_depth
        if layer and int(layer.group(2)) >= depth:
            continue
        tied_to = rest[0].strip() if rest and rest[0].strip() else None
        if tied_to:
            state[key] = ours[tied_to].clone()
        elif kind == "buffer":
            state[key] = buffers[key].clone() if key.endswith("pos_emb") else torch.zeros(model.config.dim)
        else:
            state[key] = ours[key].clone()
    return state


def test_original_pth_loads_like_native(tmp_path):
    model = EgoM2P(tiny_config())
    state = _original_layout(model)
    assert len(state) > len(model.state_dict())  # buffers and tied duplicates are in the original layout
    args = argparse.Namespace(model="egom2p_base_12e_12d_swiglu_nobias", in_domains="tok_cam-tok_depth-tok_gaze-tok_rgb",
                              out_domains="tok_cam-tok_depth-tok_gaze-tok_rgb")
    torch.save({"model": state, "args": args, "epoch": 3}, tmp_path / "checkpoint-main.pth")
    loaded = EgoM2P.from_pretrained(tmp_path / "checkpoint-main.pth", config=model.config)
    batch = random_batch(model.config, seed=3)
    assert torch.equal(_outputs(model, batch).loss, _outputs(loaded, batch).loss)
    # A bare state dict in the original layout loads too, given the config.
    assert torch.equal(_outputs(EgoM2P.from_pretrained(state, config=model.config), batch).loss, _outputs(model, batch).loss)


def test_original_args_give_the_released_architecture():
    args = argparse.Namespace(model="egom2p_base_12e_12d_swiglu_nobias", in_domains=["tok_rgb", "tok_depth", "tok_cam", "tok_gaze"],
                              out_domains="tok_rgb-tok_depth-tok_cam-tok_gaze")
    cfg = config_from_original_args(args)
    assert (cfg.dim, cfg.encoder_depth, cfg.num_heads, cfg.gated_mlp, cfg.qkv_bias) == (768, 12, 12, True, False)
    assert list(cfg.modalities) == ["tok_cam", "tok_depth", "tok_gaze", "tok_rgb"]
    assert cfg.modalities["tok_rgb"].vocab_size == 64000 and cfg.modalities["tok_cam"].num_tokens == 30
    with pytest.raises(ValueError, match="egom2p_mystery"):
        config_from_original_args(argparse.Namespace(model="egom2p_mystery", in_domains="tok_rgb"))


def test_mismatches_name_the_keys():
    model = EgoM2P(tiny_config())
    state = _original_layout(model)
    state.pop("decoder.1.mlp.fc2.weight")
    state["encoder.0.attn.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['decoder.1.mlp.fc2.weight'\].*unexpected keys \['encoder.0.attn.extra'\]"):
        EgoM2P.from_pretrained(state, config=model.config)
    state = _original_layout(model)
    state["encoder_embeddings.tok_rgb.pos_emb"] = state["encoder_embeddings.tok_rgb.pos_emb"] + 0.1
    with pytest.raises(ValueError, match="tok_rgb.pos_emb.*sin-cos"):
        EgoM2P.from_pretrained(state, config=model.config)
    state = _original_layout(model)
    state["decoder_embeddings.tok_cam.to_logits.weight"] = state["decoder_embeddings.tok_cam.to_logits.weight"] + 1
    with pytest.raises(ValueError, match="to_logits.*tied"):
        EgoM2P.from_pretrained(state, config=model.config)
    with pytest.raises(ValueError, match="pass config="):
        EgoM2P.from_pretrained(state)


def test_convert_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--help"])
    assert exit_info.value.code == 0 and "egom2p-convert --checkpoint checkpoint-main.pth --out" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--version"])
    version = importlib.metadata.version("egom2p-model")  # the wheel's, read by hatch from __init__.py
    assert exit_info.value.code == 0 and f"egom2p-convert {version}" in capsys.readouterr().out
    # A run directory converts its newest step (the path a released .pth takes is the same code).
    model = EgoM2P(tiny_config())
    model.save_pretrained(tmp_path / "run" / "checkpoints" / "step-3")
    assert convert_main(["--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "b")]) == 0
    assert "step-3" in capsys.readouterr().out
    assert EgoM2P.from_pretrained(tmp_path / "b").config == model.config
    assert "# b" in (tmp_path / "b" / "README.md").read_text()  # the model card, named after the folder


def _step(run: Path, name: str, model: EgoM2P | None = None) -> Path:
    """A trainer step directory: weights + config (when ``model`` is given) and the ignored train state."""
    step = run / "checkpoints" / name
    step.mkdir(parents=True)
    if model is not None:
        model.save_pretrained(step)
    torch.save({"step": 1}, step / "train_state.pt")
    return step


def test_resolve_checkpoint_finds_step_dirs_runs_and_original_files(tmp_path):
    model = EgoM2P(tiny_config())
    run = tmp_path / "run"
    step2, step10 = _step(run, "step-2", model), _step(run, "step-10", model)
    _step(run, "step-11")  # interrupted: no weights yet
    (run / "checkpoints" / "step-12.tmp").mkdir()  # being written
    model.save_pretrained(run / "checkpoints" / "step-13.tmp")
    # A step directory (train_state.pt beside the weights) is itself a checkpoint.
    assert resolve_checkpoint(step2) == step2
    loaded = EgoM2P.from_pretrained(step2)
    batch = random_batch(model.config)
    assert torch.equal(_outputs(loaded, batch).loss, _outputs(model, batch).loss)
    # The run directory and its checkpoints/ folder: the highest complete step, numerically (10 > 2).
    assert resolve_checkpoint(run) == step10
    assert resolve_checkpoint(str(run / "checkpoints")) == step10
    assert EgoM2P.from_pretrained(run).config == model.config
    # An original file is itself.
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoint-main.pth")
    assert resolve_checkpoint(tmp_path / "checkpoint-main.pth") == tmp_path / "checkpoint-main.pth"


def test_resolve_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such file or directory; expected a directory with model.safetensors"):
        resolve_checkpoint(tmp_path / "nowhere")
    _step(tmp_path / "run", "step-4")  # only a train state, no weights
    (tmp_path / "run" / "checkpoints" / "step-5.tmp").mkdir()
    with pytest.raises(FileNotFoundError, match=r"run: not a checkpoint.*checkpoints/step-<N>/"):
        resolve_checkpoint(tmp_path / "run")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"weights.bin: not a checkpoint"):
        EgoM2P.from_pretrained(tmp_path / "weights.bin")


def test_write_pretrained_from_a_state_dict(tmp_path):
    model = EgoM2P(tiny_config())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    write_pretrained(tmp_path / "out", state, model.config)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "integrity.json", "model.safetensors"]  # no temp files
    batch = random_batch(model.config)
    assert torch.equal(_outputs(EgoM2P.from_pretrained(tmp_path / "out"), batch).loss, _outputs(model, batch).loss)
    # Overwriting keeps the directory valid, and a state dict that does not fit the config is refused.
    write_pretrained(tmp_path / "out", state, model.config)
    state["encoder.0.attn.extra"] = state.pop("mask_token")
    with pytest.raises(ValueError, match=r"missing keys \['mask_token'\]; unexpected keys \['encoder.0.attn.extra'\]"):
        write_pretrained(tmp_path / "bad", state, model.config)
    assert not (tmp_path / "bad").exists()
