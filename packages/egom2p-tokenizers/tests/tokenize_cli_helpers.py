"""Helpers of the ``egom2p-tokenize`` tests: running the command in-process, and tiny random tokenizers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from egom2p.tokenizers.cli import main
from egom2p.tokenizers.synthetic import synthetic_camera_windows
from egom2p.tokenizers.vqvae import VQVAE

EXAMPLES = Path(__file__).parent / "fixtures" / "examples"


def run(capsys, *argv: object) -> SimpleNamespace:
    """``egom2p-tokenize ARGV`` through ``main``: ``(code, out, err)``; an exception escaping ``main`` fails the
    test, as a traceback would."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: usage errors, --help, --version
        code = exc.code
    captured = capsys.readouterr()
    return SimpleNamespace(code=code, out=captured.out, err=captured.err)


def json_line(result: SimpleNamespace) -> dict:
    """The one JSON line a command printed on stdout."""
    lines = result.out.strip().splitlines()
    assert result.code == 0 and len(lines) == 1, (result.code, result.out, result.err)
    return json.loads(lines[0])


def save_tiny_tokenizer(directory: Path, kind: str, seed: int = 0) -> VQVAE:
    """A random tiny ``kind`` tokenizer (the parity fixture's dimensions) saved into ``directory``, reopened as the
    command will open it."""
    torch.manual_seed(seed)
    VQVAE.from_preset(f"{kind}-tiny").save_pretrained(directory)
    return VQVAE.from_pretrained(directory)


def camera_inputs(root: Path, sizes: tuple[int, int]) -> Path:
    """``root`` holding a tiny camera tokenizer (``cam/``) and two window files ``a.npy``, ``b.npy`` of ``sizes``
    synthetic windows (seeds 1 and 2)."""
    save_tiny_tokenizer(root / "cam", "cam")
    np.save(root / "a.npy", synthetic_camera_windows(sizes[0], seed=1))
    np.save(root / "b.npy", synthetic_camera_windows(sizes[1], seed=2))
    return root
