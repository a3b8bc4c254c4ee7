"""The overwrite scenarios: dataset writes refuse, replace atomically or append.

The commands run in-process through their ``main`` (same parsing, same one-line errors and exit codes); the kill
is a real ``egom2p-data write`` process killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from egom2p.core.layout import expand_shard_pattern
from egom2p.core.pairing import read_shard
from egom2p.data.cli import main as data_main
from egom2p.data.shards import write_shards
from helpers import BIN, ENV, ROOT, assert_user_error, scenario


def run_main(capsys, main: Callable[[list[str]], int], *argv: object) -> subprocess.CompletedProcess:
    """A console script's ``main`` run in-process, its outcome as :func:`helpers.cli` returns it."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def stacked(tmp_path: Path, n: int, value: int) -> list[str]:
    """``--stacked`` arguments: ``n`` samples of rgb and cam, sample i filled with ``value + i``."""
    for folder in ("rgb", "cam"):
        np.save(tmp_path / f"{folder}-{value}.npy", (value + np.arange(n))[:, None] + np.zeros((1, 4), np.int64))
    return ["--stacked", f"rgb={tmp_path / f'rgb-{value}.npy'}", f"cam={tmp_path / f'cam-{value}.npy'}"]


def samples(pattern: str) -> list[tuple[str, list[str]]]:
    """(key, folders) of every sample of ``pattern``, in order."""
    return [(key, sorted(raw)) for url in expand_shard_pattern(pattern) for key, raw in read_shard(url)]


def hidden(root: Path) -> list[Path]:
    """What a write staged, swapped out or journaled and left behind."""
    return sorted(root.rglob(".*"))


@scenario("write-existing-dataset")
def test_write_existing_dataset(tmp_path, capsys):
    first = run_main(capsys, data_main, "write", *stacked(tmp_path, 5, 0), "--out", tmp_path / "out", "--dataset", "ds")
    before = samples(first.stdout.strip())
    proc = run_main(capsys, data_main, "write", *stacked(tmp_path, 3, 9), "--out", tmp_path / "out", "--dataset", "ds")
    assert_user_error(proc, tmp_path / "out/cam/ds", "--overwrite", "--append")
    assert samples(first.stdout.strip()) == before


@scenario("write-overwrite-killed")
def test_write_overwrite_killed(tmp_path, capsys):
    out = tmp_path / "out"
    old = write_shards(out, "ds", {"rgb": np.zeros((6, 4), np.int64), "cam": np.ones((6, 4), np.int64)},
                       samples_per_shard=2)
    before = samples(old)
    # Thousands of one-sample shards: the kill lands while they are written aside.
    cmd = [str(BIN / "egom2p-data"), "write", *stacked(tmp_path, 2000, 0), "--out", str(out), "--dataset", "ds",
           "--samples-per-shard", "1", "--overwrite"]
    writer = subprocess.Popen(cmd, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    staged = [out / folder / ".ds.egom2p-new" for folder in ("rgb", "cam")]
    deadline = time.monotonic() + 120
    while not any(next(s.glob("*.tar"), None) for s in staged if s.is_dir()):
        assert writer.poll() is None, writer.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no staged shard in time"
        time.sleep(0.01)
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait()
    writer.stderr.close()

    assert samples(old) == before  # the old dataset, whole and readable
    assert run_main(capsys, data_main, "validate", "--data", old).returncode == 0
    assert any(s.is_dir() for s in staged)

    proc = run_main(capsys, data_main, "write", *stacked(tmp_path, 3, 7), "--out", out, "--dataset", "ds",
                    "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert "the staged shards of an unfinished write" in proc.stderr and "Traceback" not in proc.stderr
    new = proc.stdout.strip()
    assert samples(new) == [(f"sample-{i:08d}", ["cam", "rgb"]) for i in range(3)]
    assert run_main(capsys, data_main, "validate", "--data", new).returncode == 0
    assert hidden(out) == [] and sorted(p.name for p in (out / "rgb/ds").iterdir()) == ["shard-000000.tar"]


@scenario("write-append")
def test_write_append(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--out", out, "--dataset", "ds", "--samples-per-shard", 4]
    assert run_main(capsys, data_main, "write", *stacked(tmp_path, 8, 0), *args).returncode == 0
    proc = run_main(capsys, data_main, "write", *stacked(tmp_path, 4, 50), *args, "--append")
    assert proc.returncode == 0, proc.stderr
    pattern = proc.stdout.strip()
    assert pattern == f"{out}/[cam,rgb]/ds/shard-{{000000..000002}}.tar"
    assert samples(pattern) == [(f"sample-{i:08d}", ["cam", "rgb"]) for i in range(12)]
    assert run_main(capsys, data_main, "validate", "--data", pattern, "--expect-samples-per-shard", 4).returncode == 0
    # The same files once more: their keys are in the dataset now.
    src = tmp_path / "tokens"
    for folder in ("rgb", "cam"):
        (src / folder).mkdir(parents=True)
        np.save(src / folder / "sample-00000009.npy", np.zeros(4, np.int64))
    proc = run_main(capsys, data_main, "write", "--from-dir", src, *args, "--append")
    assert_user_error(proc, "sample-00000009", out / "cam/ds/shard-000002.tar")
    assert samples(pattern) == [(f"sample-{i:08d}", ["cam", "rgb"]) for i in range(12)] and hidden(out) == []


@scenario("encode-existing-dataset")
def test_encode_existing_dataset(tmp_path, capsys):
    from egom2p.tokenizers.cli import main as tokenize_main
    from egom2p.tokenizers.synthetic import synthetic_camera_windows
    from egom2p.tokenizers.vqvae import VQVAE

    VQVAE.from_preset("cam-tiny").save_pretrained(tmp_path / "cam-tokenizer")
    np.save(tmp_path / "clip.npy", synthetic_camera_windows(3, seed=0))
    out = tmp_path / "out"
    other = write_shards(out, "ds", {"cam": np.zeros((2, 30), np.int64)})  # written by egom2p-data, say
    before = samples(other)
    encode = ["encode", "--tokenizer", tmp_path / "cam-tokenizer", "--input", tmp_path / "clip.npy", "--out", out,
              "--dataset", "ds"]
    assert_user_error(run_main(capsys, tokenize_main, *encode), out / "cam/ds", "--overwrite", "--append")
    assert samples(other) == before
    proc = run_main(capsys, tokenize_main, *encode, "--append")  # numbered after the old shard, which stays
    assert proc.returncode == 0, proc.stderr
    assert samples(proc.stdout.splitlines()[0]) == before + [(f"clip_{60 * i:06d}", ["cam"]) for i in range(3)]
    assert_user_error(run_main(capsys, tokenize_main, *encode, "--append"), "window key 'clip_000000' is already in")
    proc = run_main(capsys, tokenize_main, *encode, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert samples(proc.stdout.splitlines()[0]) == [(f"clip_{60 * i:06d}", ["cam"]) for i in range(3)]
    assert hidden(out) == []
