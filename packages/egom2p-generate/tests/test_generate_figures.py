"""Pictures of true vs generated tokens, drawn headless (matplotlib's Agg through the object API)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from egom2p.core.modalities import ModalitySpec
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.generate.eval_cli import main as eval_main

matplotlib = pytest.importorskip("matplotlib")

from egom2p.generate.figures import save_token_figure  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _red_pixels(path) -> int:
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    return int(((pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.2) & (pixels[..., 2] < 0.2)).sum())


def test_video_and_sequence_figures(tmp_path):
    video = ModalitySpec("tok_depth", 256, grid=(2, 4, 4))
    truth = np.arange(32).reshape(2, 4, 4)
    generated = truth.copy()
    generated[1, 2, 3] = 7
    path = save_token_figure(tmp_path / "d" / "k0.png", video, truth, generated.reshape(-1), title="rgb2depth")
    assert path.read_bytes()[:8] == PNG
    assert _red_pixels(path) > 0  # the wrong token is marked
    assert _red_pixels(save_token_figure(tmp_path / "d" / "k1.png", video, truth, truth)) == 0
    sequence = ModalitySpec("tok_cam", 64, length=8)
    path = save_token_figure(tmp_path / "c.png", sequence, np.arange(8), np.array([0, 1, 2, 9, 4, 5, 6, 0]))
    assert path.read_bytes()[:8] == PNG and _red_pixels(path) > 0
    assert "matplotlib.pyplot" not in sys.modules  # no pyplot, no GUI backend: safe headless


def test_eval_saves_figures(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    for folder, shape, vocab in (("rgb", (2, 4, 4), 256), ("cam", (8,), 64), ("depth", (2, 4, 4), 256)):
        write_tar(tmp_path / folder / "val" / "shard-0.tar",
                  [(f"clip{i}.npz", encode_tokens(rng.integers(0, vocab, shape))) for i in range(3)])
    code = eval_main(["--checkpoint", str(checkpoint), "--device", "cpu", "--task", "rgb2cam", "--task", "rgb2depth",
                      "--data", str(tmp_path) + "/[rgb,cam,depth]/val/shard-0.tar", "--save-figures",
                      str(tmp_path / "figs"), "--max-figures", "2", "--batch-size", "2"])
    assert code == 0 and "figures:" in capsys.readouterr().out
    for task in ("rgb2cam", "rgb2depth"):
        files = sorted(p.name for p in (tmp_path / "figs" / task).iterdir())
        assert files == ["clip0.png", "clip1.png"]
        assert (tmp_path / "figs" / task / "clip0.png").read_bytes()[:8] == PNG
