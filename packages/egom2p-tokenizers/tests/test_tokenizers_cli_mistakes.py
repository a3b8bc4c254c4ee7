"""Every user mistake of ``egom2p-tokenize`` is one line ``egom2p-tokenize: error: ...`` naming the file, key or value,
exit 2, nothing on stdout and no traceback; ``--help`` and ``--version`` follow the house style."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.tokenizers import __version__
from egom2p.tokenizers.synthetic import synthetic_camera_windows, synthetic_gaze_windows
from tokenize_cli_helpers import EXAMPLES, run, save_tiny_tokenizer


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("mistakes")
    for kind in ("cam", "gaze"):
        save_tiny_tokenizer(root / kind, kind)
    windows = synthetic_camera_windows(3, seed=0)
    np.save(root / "w.npy", windows)
    np.save(root / "short.npy", windows[:, :59])
    stretched = windows.copy()
    stretched[1, 3, :3, :3] *= 1.1
    np.save(root / "stretched.npy", stretched)
    flipped = windows.copy()
    flipped[2, 0, :3, 0] *= -1
    np.save(root / "flipped.npy", flipped)
    np.save(root / "track.npy", windows.reshape(180, 4, 4))
    np.savez(root / "both.npz", poses=windows[0], times=np.arange(60) / 30, fps=30.0)
    np.savez(root / "badfps.npz", poses=windows[0], fps=-2.0)
    np.savez(root / "unsorted.npz", poses=windows[0], times=np.r_[np.arange(30), np.arange(30)] / 30)
    (root / "bad.tum").write_text("0 0 0 0 0 0 0 1\n0.1 0 0 0 0 0 1\n")
    gaps = windows[:1].copy()
    gaps[0, 5] = np.nan
    np.save(root / "gaps.npy", gaps)
    gaze = synthetic_gaze_windows(2, seed=0, frame="holoassist")
    gaze[0, 3, 1] = np.inf
    np.save(root / "inf_gaze.npy", gaze)
    np.save(root / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    tokens = np.zeros((2, 30), dtype=np.int64)
    tokens[1, 7] = 256
    np.save(root / "big.npy", tokens)
    np.save(root / "floats.npy", np.zeros((2, 30)))
    np.save(root / "tokens29.npy", np.zeros((2, 29), dtype=np.int64))
    np.save(root / "one.npy", np.zeros(30, dtype=np.int64))
    write_tar(root / "shards/cam/ds/shard-000000.tar",
              [("x_000000.npz", encode_tokens(np.zeros(30, np.int64))), ("x_000060.npz", encode_tokens(np.full(30, 300)))])
    (root / "sub").mkdir()
    np.save(root / "sub/w.npy", windows)
    np.save(root / "pred50.npy", windows[0, :50])
    return root


ENCODE = ["encode", "--tokenizer", "cam", "--out", "out", "--dataset", "ds", "--input"]
RECON = ["recon", "--tokenizer", "cam", "--out", "r.npy", "--input"]
DECODE = ["decode", "--tokenizer", "cam", "--out", "d.npy", "--input"]
GAZE_SIZES = ["--orig-res", "896", "504", "--resize-res", "896", "504"]

MISTAKES = [
    # wrong shapes and values of signals, each naming the file (and the window, frame)
    (ENCODE + ["short.npy"], "short.npy: expected camera poses windows (N, 60, 4, 4) or one window (60, 4, 4), got "
                             "shape (3, 59, 4, 4); a track (T, 4, 4) needs --fps"),
    (ENCODE + ["track.npy"], "track.npy: expected camera poses windows (N, 60, 4, 4)"),
    (ENCODE + ["stretched.npy"], "stretched.npy: frame (1, 3) has a rotation that is not orthonormal (R^T R != I)"),
    (RECON + ["flipped.npy"], "flipped.npy: frame (2, 0) has a reflection instead of a rotation (det R = -1)"),
    (["metrics", "--pred", "w.npy", "--gt", "stretched.npy"], "stretched.npy: frame (1, 3) has a rotation that is not "
                                                              "orthonormal"),
    (["encode", "--tokenizer", "gaze", "--gaze-frame", "holoassist", "--out", "o", "--dataset", "d", "--input",
      "inf_gaze.npy"], "inf_gaze.npy: gaze point (0, 3) is infinite (use NaN for a missing point)"),
    (ENCODE + ["pickled.npy"], "pickled.npy: not a readable .npy array"),
    (RECON + ["gaps.npy"], "gaps.npy: no window of 60 frames to reconstruct (skipped 1 window with missing poses)"),
    # tracks and their frame-rate fields
    (ENCODE + ["both.npz"], "both.npz: needs exactly one of 'times' (seconds per frame) or 'fps' beside 'poses'"),
    (ENCODE + ["badfps.npz"], "badfps.npz: fps must be one positive number, got array(-2.)"),
    (ENCODE + ["unsorted.npz"], "unsorted.npz: times must be strictly increasing; frame 30 at 0.0 s follows"),
    (ENCODE + ["bad.tum"], "bad.tum:2: expected 8 numbers 't tx ty tz qx qy qz qw'"),
    (ENCODE + ["w.npy", "--fps", "0"], "argument --fps: expected a positive number, got '0'"),
    # inputs and outputs
    (ENCODE + ["nope.npy"], "--input nope.npy: no such file or folder"),
    (ENCODE + ["w.npy", "w.npy"], "--input w.npy is given twice"),
    (ENCODE + ["w.npy", "sub"], "--input sub/w.npy and w.npy share the recording stem 'w', so their windows would share "
                                "sample keys; rename one"),
    (["encode", "--tokenizer", "cam", "--out", "out", "--dataset", "../x", "--input", "w.npy"],
     "--dataset '../x' must be a plain name inside the output folder"),
    (["decode", "--tokenizer", "cam", "--out", "d.txt", "--input", "one.npy"],
     "--out d.txt: expected a .npy file"),
    (["recon", "--tokenizer", "cam", "--out", "r.txt", "--input", "w.npy"], "--out r.txt: expected a .npy file"),
    (["recon", "--tokenizer", "cam", "--out", "r.csv", "--input", "track.npy", "--fps", "30"],
     "--out r.csv: expected a .npy / .npz / .txt / .tum file"),
    # tokenizers and conventions
    (["decode", "--tokenizer", "nope", "--out", "d.npy", "--input", "big.npy"], "nope: no such file or directory; expected a "
                                                                    "directory with model.safetensors + config.json"),
    (ENCODE + ["w.npy", "--basis", "mars"], "argument --basis: invalid choice: 'mars'"),
    (ENCODE + ["w.npy", "--device", "nonsense"], "argument --device: unknown device 'nonsense'"),
    (["encode", "--tokenizer", "gaze", "--out", "o", "--dataset", "d", "--input", "w.npy"],
     "a gaze tokenizer needs the frame of the gaze pixels: --gaze-frame NAME, or --orig-res W H --resize-res W H"),
    (ENCODE + ["w.npy", "--gaze-frame", "egoexo"], "the gaze frame options (--gaze-frame NAME, or --orig-res W H "
                                                   "--resize-res W H [--crop W H]) apply to a gaze tokenizer; this is a "
                                                   "camera one"),
    (["recon", "--tokenizer", "gaze", "--gaze-frame", "egoexo", "--basis", "egoexo", "--out", "r.npy", "--input",
      "w.npy"], "basis 'egoexo': a camera basis does not apply to a gaze tokenizer"),
    (ENCODE + ["w.npy", "--kind", "gaze"], "--kind gaze: cam is a cam tokenizer"),
    (ENCODE + ["w.npy", "--orig-res", "896", "504"], "--orig-res: the gaze frame also needs --resize-res "
                                                     "(or use --gaze-frame NAME)"),
    (ENCODE + ["w.npy", "--gaze-frame", "egoexo", "--crop", "4", "4"], "give --gaze-frame or --orig-res/--resize-res/"
                                                                       "--crop, not both (got --gaze-frame and --crop)"),
    (["decode", "--tokenizer", "gaze", *GAZE_SIZES, "--crop", "900", "900", "--out", "d.npy", "--input", "big.npy"],
     "--orig-res/--resize-res/--crop: GazeFrame.crop (900, 900) is larger than the resized frame (896, 504)"),
    # token files and shards
    (DECODE + ["big.npy"], "big.npy row 1: tok_cam tokens in [0, 256] are outside the vocabulary [0, 256)"),
    (DECODE + ["floats.npy"], "floats.npy: token array has dtype float64, expected integers"),
    (DECODE + ["tokens29.npy"], "tokens29.npy: expected tok_cam tokens (30,) or (N, 30), got shape (2, 29)"),
    (DECODE + ["shards/[cam]/ds/shard-000000.tar"], "shards/cam/ds/shard-000000.tar: sample x_000060: tok_cam tokens in "
                                                   "[300, 300] are outside the vocabulary [0, 256)"),
    (DECODE + ["shards/[rgb,depth]/ds/shard-000000.tar"], "--input shards/[rgb,depth]/ds/shard-000000.tar: the folder "
                                                         "list ['depth', 'rgb'] lacks this tokenizer's folder 'cam'; "
                                                         "name the one folder to read"),
    (DECODE + ["shards/[cam]/other/shard-{000000..000001}.tar"], "data file not found: shards/cam/other/shard-000000.tar"),
    (DECODE + ["nope.npz"], "token file not found: nope.npz"),
    # metrics
    (["metrics", "--pred", "pred50.npy", "--gt", str(EXAMPLES / "cam.npy")],
     "pred50.npy has windows x frames (50,), " + str(EXAMPLES / "cam.npy") + " has (60,)"),
    (["metrics", "--pred", str(EXAMPLES / "gaze.npy"), "--gt", str(EXAMPLES / "cam.npy")],
     str(EXAMPLES / "gaze.npy") + " holds gaze values, expected cam"),
    (["metrics", "--pred", str(EXAMPLES / "token__cam-recon.npy"), "--gt", str(EXAMPLES / "cam.npy"), "--pred-space",
      "crop"], "--pred-space crop applies to gaze; camera predictions are 'signal' or 'model'"),
    (["metrics", "--pred", "nope.npy", "--gt", "w.npy"], "prediction file not found: nope.npy"),
    (["metrics", "--pred", "w.npy", "--gt", "w.npy", "--kind", "gaze"], "w.npy holds camera values, expected gaze"),
    (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
    (["encode", "--tokenizer", "cam"], "the following arguments are required: --input, --out, --dataset"),
]


@pytest.mark.parametrize("argv,message", MISTAKES, ids=[f"{i:02d}-{m[0][0]}" for i, m in enumerate(MISTAKES)])
def test_mistake_is_one_line_exit_2(capsys, monkeypatch, work, argv, message):
    monkeypatch.chdir(work)
    result = run(capsys, *argv)
    assert result.code == 2, (result.out, result.err)
    assert result.out == ""
    lines = result.err.splitlines()
    # usage errors name the subcommand too (argparse's prog), as every egom2p command's
    assert len(lines) == 1 and re.match(r"egom2p-tokenize( \w+)?: error: ", lines[0]), result.err
    assert message in lines[0]


def test_help_and_version(capsys):
    result = run(capsys, "--version")
    assert (result.code, result.out) == (0, f"egom2p-tokenize {__version__}\n")
    for command in ("encode", "decode", "recon", "metrics"):
        result = run(capsys, command, "--help")
        assert result.code == 0 and "examples:" in result.out and "egom2p-tokenize metrics --pred" in result.out
        assert "(default: " in result.out or command == "decode"


def test_cuda_device_without_cuda_is_one_line(capsys, monkeypatch, work):
    monkeypatch.chdir(work)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run(capsys, *DECODE, "one.npy", "--device", "cuda")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "--device" in result.err and "CUDA is not available on this machine" in result.err
