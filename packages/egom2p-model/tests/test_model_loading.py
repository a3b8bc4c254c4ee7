"""from_pretrained's device / dtype / eval mode, original files through the safe loader, and egom2p-convert's
common mistakes (the safe loader itself is tested in egom2p-core's test_core_checkpoints.py)."""

from __future__ import annotations

import argparse
import pathlib

import pytest
import torch
from egom2p.model import EgoM2P
from egom2p.model.convert import main as convert_main
from model_helpers import random_batch, tiny_config

RELEASED_ARGS = dict(model="egom2p_base_12e_12d_swiglu_nobias", in_domains="tok_cam-tok_depth-tok_gaze-tok_rgb",
                     out_domains="tok_cam-tok_depth-tok_gaze-tok_rgb")


class Custom:
    """A type the safe loader does not know (pickled by reference as test_model_loading.Custom)."""


def test_from_pretrained_returns_eval_mode_on_the_device_and_dtype(tmp_path):
    model = EgoM2P(tiny_config())
    model.save_pretrained(tmp_path / "ckpt")
    loaded = EgoM2P.from_pretrained(tmp_path / "ckpt")
    assert not loaded.training and next(loaded.parameters()).dtype == torch.float32
    half = EgoM2P.from_pretrained(tmp_path / "ckpt", device="cpu", dtype="bfloat16")
    assert not half.training and {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert next(half.parameters()).device == torch.device("cpu")
    assert torch.equal(half.mask_token, model.mask_token.to(torch.bfloat16))
    with torch.no_grad():
        assert torch.isfinite(half(random_batch(model.config)).loss)
    assert EgoM2P.from_pretrained(model.state_dict(), config=model.config, dtype=torch.float16).mask_token.dtype == torch.float16


def _released_like(tmp_path, name: str, **extra) -> tuple[EgoM2P, pathlib.Path]:
    model = EgoM2P(tiny_config())
    path = tmp_path / name
    torch.save({"model": model.state_dict(), **extra}, path)
    return model, path


def test_original_file_with_namespace_args_loads_safely(tmp_path):
    model, path = _released_like(tmp_path, "checkpoint-main.pth", args=argparse.Namespace(**RELEASED_ARGS), epoch=3)
    loaded = EgoM2P.from_pretrained(path, config=model.config)
    assert torch.equal(loaded.mask_token, model.mask_token) and not loaded.training
    # args as a plain dict (what the conversion in the refusal message writes) is read like the Namespace
    _, converted = _released_like(tmp_path, "converted.pth", args={"model": "egom2p_mystery", "in_domains": "tok_rgb"})
    with pytest.raises(ValueError, match="args.model='egom2p_mystery' is not a known architecture"):
        EgoM2P.from_pretrained(converted)


def test_the_conversion_in_the_message_works(tmp_path):
    model, path = _released_like(tmp_path, "checkpoint-main.pth", args=argparse.Namespace(**RELEASED_ARGS), extra=Custom())
    with pytest.raises(ValueError) as err:
        EgoM2P.from_pretrained(path, config=model.config)
    command = str(err.value).split('python -c "')[1].split('"')[0]
    exec(command, {})  # what the user runs once, on a file they trust
    loaded = EgoM2P.from_pretrained(tmp_path / "checkpoint-main.safe.pth", config=model.config)
    assert torch.equal(loaded.mask_token, model.mask_token)


def test_broken_safetensors_and_wrong_shapes_are_value_errors(tmp_path):
    model = EgoM2P(tiny_config())
    model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file"):
        EgoM2P.from_pretrained(tmp_path / "ckpt")
    state = model.state_dict()
    state["mask_token"] = torch.zeros(1, 1, 7)
    with pytest.raises(ValueError, match="do not fit the config.*mask_token"):
        EgoM2P.from_pretrained(state, config=model.config)


def _convert_error(capsys, argv) -> tuple[int, str]:
    try:
        code = convert_main(argv)
    except SystemExit as exit_info:  # argparse usage errors
        code = exit_info.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def test_convert_common_mistakes_exit_2_with_one_line(tmp_path, capsys):
    model, unsafe = _released_like(tmp_path, "unsafe.pth", extra=Custom())
    (tmp_path / "junk.pth").write_bytes(b"hello")
    model.save_pretrained(tmp_path / "ours")
    cases = [
        ([], "the following arguments are required: --checkpoint, --out"),
        (["old.pth", "--checkpoint", "x", "--out", "y"], "unrecognized arguments: old.pth"),  # the old positional form
        (["--checkpoint", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "o")], "missing.pth: no such file or directory"),
        (["--checkpoint", str(tmp_path / "junk.pth"), "--out", str(tmp_path / "o")], "junk.pth: not a PyTorch checkpoint"),
        (["--checkpoint", str(unsafe), "--out", str(tmp_path / "o")], "holds test_model_loading.Custom"),
        (["--checkpoint", str(tmp_path / "ours"), "--out", str(tmp_path / "o"), "--push-to-hub", "not a repo"],
         "--push-to-hub 'not a repo': expected a Hub repository id"),
    ]
    for argv, expected in cases:
        code, err = _convert_error(capsys, argv)
        assert code == 2 and err.count("\n") == 1 and err.startswith("egom2p-convert: error: "), (argv, err)
        assert expected in err, (argv, err)
    assert not (tmp_path / "o").exists()  # nothing written on a mistake
