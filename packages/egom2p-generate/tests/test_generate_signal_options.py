"""The --tokenizer / gaze-frame options of egom2p-generate and egom2p-eval without egom2p-tokenizers: option
mistakes are one line and exit 2 before any model loads, and a missing [tokenizers] extra is the install hint."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.generate.cli import main as generate_main
from egom2p.generate.eval_cli import main as eval_main
from egom2p.generate.signals import parse_tokenizer_options, signal_file, signal_folder

HINT = "--tokenizer needs egom2p-tokenizers: pip install 'egom2p-generate[tokenizers]'"


def _run(main, argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse usage errors
        code = exit_info.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def without_tokenizers(monkeypatch):
    """egom2p-tokenizers not installed: its package and every loaded module of it cannot be imported."""
    for name in [n for n in sys.modules if n == "egom2p.tokenizers" or n.startswith("egom2p.tokenizers.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "egom2p.tokenizers", None)


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", rng.integers(0, 256, (2, 4, 4)))
    write_tar(tmp_path / "rgb" / "val" / "shard-0.tar", [("k0.npz", encode_tokens(rng.integers(0, 256, (2, 4, 4))))])
    write_tar(tmp_path / "cam" / "val" / "shard-0.tar", [("k0.npz", encode_tokens(rng.integers(0, 64, 8)))])
    return tmp_path


def _commands(checkpoint, root):
    """Each command's argv, up to the signal options (file mode, batch mode, eval)."""
    ck = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    return [
        (generate_main, "egom2p-generate", [*ck, "--cond", f"tok_rgb={root / 'rgb.npz'}", "--target", "tok_cam",
                                            "--out", str(root / "o.npz")]),
        (generate_main, "egom2p-generate", [*ck, "--data", str(root) + "/[rgb]/val/shard-0.tar", "--task", "rgb2cam",
                                            "--out", str(root / "preds")]),
        (eval_main, "egom2p-eval", [*ck, "--task", "rgb2cam", "--data", str(root) + "/[rgb,cam]/val/shard-0.tar"]),
    ]


def test_without_the_extra_a_tokenizer_is_the_install_hint(checkpoint, inputs, without_tokenizers, capsys):
    for main, prog, argv in _commands(checkpoint, inputs):
        code, out, err = _run(main, [*argv, "--tokenizer", f"tok_cam={inputs / 'cam-tokenizer'}"], capsys)
        assert code == 2 and err == f"{prog}: error: {HINT}\n", err
        assert not out  # nothing ran
        # without --tokenizer nothing needs the extra: tokens as before
        assert _run(main, argv, capsys)[0] == 0
    assert not (inputs / "o_tok_cam_poses.npy").exists() and (inputs / "o.npz").is_file()
    assert sorted(p.name for p in (inputs / "preds").iterdir()) == ["cam", "egom2p-batch-rgb2cam.json"]  # no signal folder


@pytest.mark.parametrize("extra, expected", [
    (["--tokenizer", "tok_cam"], "--tokenizer 'tok_cam': expected MODALITY=SOURCE"),
    (["--tokenizer", "tok_rgb=cosmos"], "--tokenizer tok_rgb: no signal tokenizer decodes it; give tok_cam=SOURCE or "
                                        "tok_gaze=SOURCE"),
    (["--tokenizer", "tok_cam=a", "--tokenizer", "tok_cam=b"], "--tokenizer tok_cam is given twice"),
    (["--gaze-frame", "holoassist"], "--gaze-frame applies only with --tokenizer tok_gaze=SOURCE"),
    (["--tokenizer", "tok_cam=a", "--crop", "480", "480"], "--crop applies only with --tokenizer tok_gaze=SOURCE"),
    (["--tokenizer", "tok_gaze=g"], "--tokenizer tok_gaze needs the gaze image frame: --gaze-frame NAME or "
                                    "--orig-res W H --resize-res W H [--crop W H]"),
    (["--tokenizer", "tok_gaze=g", "--orig-res", "896", "504"], "(missing --resize-res)"),
    (["--tokenizer", "tok_gaze=g", "--gaze-frame", "holoassist", "--orig-res", "896", "504"],
     "give --gaze-frame or --orig-res/--resize-res/--crop, not both"),
    (["--tokenizer", "tok_gaze=g", "--orig-res", "896", "0"], "argument --orig-res: expected a positive integer"),
])
def test_signal_option_mistakes_are_one_line(checkpoint, inputs, without_tokenizers, capsys, extra, expected):
    # all of these are found before the tokenizers are imported or any model loads
    for main, prog, argv in _commands(checkpoint, inputs):
        code, out, err = _run(main, [*argv, *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
        assert expected in err and not out, err


def test_output_names():
    assert parse_tokenizer_options(["tok_gaze=org/gaze", "tok_cam=runs/cam=1"]) == {"tok_gaze": "org/gaze",
                                                                                  "tok_cam": "runs/cam=1"}
    assert signal_file(Path("out/clip.npz"), "tok_cam") == Path("out/clip_tok_cam_poses.npy")
    assert signal_file(Path("clip"), "tok_gaze") == Path("clip_tok_gaze_pixels.npy")
    assert (signal_folder("cam", "tok_cam"), signal_folder("eye", "tok_gaze")) == ("cam_poses", "eye_pixels")
