"""Progress of the tokenizer commands in a log (stderr not a terminal, as under SLURM): a plain line every minute and
one at the end of a long run, nothing for a short one (egom2p.core.progress, as the trainer and egom2p-eval)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from egom2p.core import progress as progress_module
from egom2p.tokenizers.codec import WindowCodec
from egom2p.tokenizers.synthetic import synthetic_camera_windows
from tokenize_cli_helpers import camera_inputs, run


@pytest.fixture
def slow_clock(monkeypatch):
    """A clock that moves 61 s each time it is read: every unit of work takes longer than the log interval."""
    now = [0.0]

    def monotonic() -> float:
        now[0] += 61.0
        return now[0]

    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=monotonic))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny camera tokenizer and two window files (3 + 2 windows)."""
    return camera_inputs(tmp_path_factory.mktemp("progress"), (3, 2))


def _encode(capsys, setup, out):
    return run(capsys, "encode", "--tokenizer", setup / "cam", "--input", setup / "a.npy", setup / "b.npy",
               "--out", out, "--dataset", "ds", "--samples-per-shard", 2)


def test_a_long_encode_prints_a_line_per_interval_and_at_the_end(capsys, tmp_path, setup, slow_clock):
    result = _encode(capsys, setup, tmp_path)
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("encoding cam:")]
    pattern = r"encoding cam: (\d+/\d+ recording \([\d.]+%\))(?:, \w+ \d+)*, [\d.]+ recording/s, elapsed \d:\d\d:\d\d, ETA"
    assert [re.match(pattern, line).group(1) for line in lines] == ["1/2 recording (50.0%)", "2/2 recording (100.0%)"]
    assert "\r" not in result.err  # plain lines, no bar redraws


def test_a_short_encode_prints_no_progress(capsys, tmp_path, setup):
    result = _encode(capsys, setup, tmp_path)
    assert result.code == 0, result.err
    assert "encoding cam" not in result.err and "recording/s" not in result.err


def test_the_codec_counts_batches_in_a_log(capsys, setup, slow_clock):
    """Decoding in batches (``egom2p-tokenize decode``): one line per batch of a slow run, the last at 100%."""
    from egom2p.tokenizers.vqvae import VQVAE

    codec = WindowCodec(VQVAE.from_pretrained(setup / "cam"), batch_size=2, progress=True)
    tokens = codec.encode(synthetic_camera_windows(5, seed=3))
    capsys.readouterr()
    codec.decode(tokens)
    counts = re.findall(r"^decoding: (\d+/\d+) batch", capsys.readouterr().err, flags=re.M)
    assert counts == ["1/3", "2/3", "3/3"]
