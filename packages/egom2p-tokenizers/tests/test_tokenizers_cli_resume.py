"""``egom2p-tokenize encode`` resumes a killed run, checks what it keeps, and never mixes two runs' shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from egom2p.core.shards import encode_tokens, read_tar_members, write_tar
from egom2p.tokenizers.codec import WindowCodec
from egom2p.tokenizers.encode import MANIFEST_NAME
from egom2p.tokenizers.synthetic import synthetic_camera_windows
from tokenize_cli_helpers import camera_inputs, run

SHARDS = [f"shard-{i:06d}.tar" for i in range(3)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny camera tokenizer, 8 windows in two files, and the shards of one uninterrupted run (3 per shard)."""
    return camera_inputs(tmp_path_factory.mktemp("resume"), (5, 3))


def _encode(capsys, setup, out, *extra):
    return run(capsys, "encode", "--tokenizer", setup / "cam", "--input", setup / "a.npy", setup / "b.npy",
               "--out", out, "--dataset", "ds", "--samples-per-shard", 3, *extra)


def _shard_bytes(out):
    return {name: (out / "cam/ds" / name).read_bytes() for name in SHARDS}


@pytest.fixture(scope="module")
def clean(setup):
    """The shards of an uninterrupted run."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from egom2p.tokenizers.cli import main

    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["encode", "--tokenizer", str(setup / "cam"), "--input", str(setup / "a.npy"),
                     str(setup / "b.npy"), "--out", str(setup / "clean"), "--dataset", "ds",
                     "--samples-per-shard", "3"]) == 0
    return _shard_bytes(setup / "clean")


def _kill_on_the_second_shard(monkeypatch):
    """Make the encoder raise KeyboardInterrupt (Ctrl-C, as a kill mid-run) on its second batch; returns the real
    ``WindowCodec.encode`` to put back."""
    calls = []
    encode = WindowCodec.encode

    def killed_on_the_second_shard(self, windows):
        calls.append(len(windows))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return encode(self, windows)

    monkeypatch.setattr(WindowCodec, "encode", killed_on_the_second_shard)
    return encode


def test_a_killed_run_resumes_to_the_same_shards(capsys, tmp_path, monkeypatch, setup, clean):
    encode = _kill_on_the_second_shard(monkeypatch)
    result = _encode(capsys, setup, tmp_path)
    assert result.code == 130 and result.err.strip() == "egom2p-tokenize: error: interrupted"
    monkeypatch.setattr(WindowCodec, "encode", encode)
    folder = tmp_path / "cam/ds"
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, SHARDS[0]]
    # A kill during the rename-less write leaves the writer's temporary file (core's atomic writer names it so).
    (folder / f".{SHARDS[1]}.4242.0123abcd.tmp").write_bytes(b"half a tar")
    finished = (folder / SHARDS[0]).stat()

    result = _encode(capsys, setup, tmp_path)
    assert result.code == 0, result.err
    assert "encoded 5 windows from 2 recordings (3 windows kept in 1 shard finished earlier)" in result.out
    assert "removed 1 unfinished temporary shard file(s)" in result.err
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, *SHARDS]
    assert _shard_bytes(tmp_path) == clean
    kept = (folder / SHARDS[0]).stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns)  # not rewritten
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["complete"] is True and manifest["shards"] == 3 and manifest["windows"] == 8

    # Everything finished: a third run encodes nothing and keeps all.
    result = _encode(capsys, setup, tmp_path)
    assert "encoded 0 windows from 2 recordings (8 windows kept in 3 shards finished earlier)" in result.out


def test_a_damaged_shard_is_found_and_encoded_again(capsys, tmp_path, setup, clean):
    assert _encode(capsys, setup, tmp_path).code == 0
    folder = tmp_path / "cam/ds"
    (folder / SHARDS[1]).write_bytes(clean[SHARDS[1]][:700])  # truncated
    write_tar(folder / SHARDS[2], [("b_000000.npz", encode_tokens(np.zeros(30, np.int64)))])  # a wrong key list
    result = _encode(capsys, setup, tmp_path)
    assert result.code == 0
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warnings) == 2 and all("does not hold the planned windows; encoding it again" in w for w in warnings)
    assert "encoded 5 windows from 2 recordings (3 windows kept in 1 shard finished earlier)" in result.out
    assert _shard_bytes(tmp_path) == clean


def test_another_run_is_refused_unless_overwrite(capsys, tmp_path, setup, clean):
    assert _encode(capsys, setup, tmp_path).code == 0
    result = _encode(capsys, setup, tmp_path, "--stride", 30)  # other keys: another run
    assert result.code == 2 and result.out == ""
    assert result.err == (f"egom2p-tokenize: error: {tmp_path / 'cam/ds'} already holds 3 shard file(s) of another "
                          "egom2p-tokenize run; pass --overwrite to replace them, --append to add to them, or choose another "
                          "--dataset or --out\n")
    assert _shard_bytes(tmp_path) == clean  # untouched
    # --overwrite with an input that turns out bad: refused before anything is deleted
    np.save(tmp_path / "bad.npy", np.zeros((2, 59, 4, 4)))
    result = _encode(capsys, setup, tmp_path, "--overwrite", "--input", tmp_path / "bad.npy")
    assert result.code == 2 and "bad.npy: expected camera poses windows" in result.err
    assert _shard_bytes(tmp_path) == clean
    result = run(capsys, "encode", "--tokenizer", setup / "cam", "--input", setup / "a.npy", "--out", tmp_path,
                 "--dataset", "ds", "--samples-per-shard", 10, "--overwrite")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "cam/ds").iterdir()) == [MANIFEST_NAME, SHARDS[0]]
    # --overwrite also re-encodes a finished run of the same identity
    result = run(capsys, "encode", "--tokenizer", setup / "cam", "--input", setup / "a.npy", "--out", tmp_path,
                 "--dataset", "ds", "--samples-per-shard", 10, "--overwrite")
    assert "encoded 5 windows from 1 recording; skipped none" in result.out


def test_a_killed_overwrite_keeps_the_old_shards_and_resumes_aside(capsys, tmp_path, monkeypatch, setup, clean):
    assert _encode(capsys, setup, tmp_path, "--stride", 30).code == 0  # another run's dataset, to be replaced
    folder = tmp_path / "cam/ds"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    encode = _kill_on_the_second_shard(monkeypatch)
    assert _encode(capsys, setup, tmp_path, "--overwrite").code == 130
    monkeypatch.setattr(WindowCodec, "encode", encode)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the old dataset, whole
    staged = tmp_path / "cam/.ds.egom2p-new"
    assert sorted(p.name for p in staged.iterdir()) == [MANIFEST_NAME, SHARDS[0]]
    # Without --overwrite the old dataset is still another run's: refused, the staged run kept for later.
    assert _encode(capsys, setup, tmp_path).code == 2 and staged.is_dir()

    result = _encode(capsys, setup, tmp_path, "--overwrite")
    assert result.code == 0, result.err
    assert "encoded 5 windows from 2 recordings (3 windows kept in 1 shard finished earlier)" in result.out
    assert _shard_bytes(tmp_path) == clean and sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, *SHARDS]
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == ["ds"]  # nothing staged or swapped out is left


def test_shards_of_unknown_origin_are_never_mixed(capsys, tmp_path, setup):
    folder = tmp_path / "cam/ds"
    write_tar(folder / SHARDS[0], [("x_000000.npz", encode_tokens(np.zeros(30, np.int64)))])
    result = _encode(capsys, setup, tmp_path)
    assert result.code == 2 and "holds 1 shard file(s) of unknown origin (no egom2p-tokenize.json)" in result.err
    write_tar(folder / "token" / SHARDS[0], [("x_000000.npz", encode_tokens(np.zeros(30, np.int64)))])
    result = _encode(capsys, setup, tmp_path, "--overwrite")
    assert result.code == 2 and result.err.count("\n") == 1
    assert f"--overwrite: {folder / 'token' / SHARDS[0]} is not a shard file of {folder}" in result.err
    (folder / "token" / SHARDS[0]).unlink()
    assert _encode(capsys, setup, tmp_path, "--overwrite").code == 0


def test_nothing_to_encode_exits_1_and_writes_nothing(capsys, tmp_path, setup):
    windows = synthetic_camera_windows(2, seed=1)
    windows[:, 5] = np.nan
    np.save(tmp_path / "gaps.npy", windows)
    result = run(capsys, "encode", "--tokenizer", setup / "cam", "--input", tmp_path / "gaps.npy", "--out",
                 tmp_path / "out", "--dataset", "ds")
    assert result.code == 1 and result.out == ""
    assert result.err == ("egom2p-tokenize: error: nothing encoded: encoded 0 windows from 1 recording; skipped 2 "
                          f"windows with missing poses; 0 shards in {tmp_path / 'out/cam/ds'}\n")
    assert not (tmp_path / "out").exists()


def test_a_bfloat16_run_is_another_run(capsys, tmp_path, setup, clean):
    assert _encode(capsys, setup, tmp_path).code == 0
    result = _encode(capsys, setup, tmp_path, "--dtype", "bfloat16")  # its tokens may differ at near-ties
    assert result.code == 2 and "of another egom2p-tokenize run" in result.err
    assert _shard_bytes(tmp_path) == clean
    assert _encode(capsys, setup, tmp_path / "bf16", "--dtype", "bfloat16").code == 0
    assert _encode(capsys, setup, tmp_path / "bf16", "--dtype", "bfloat16").code == 0  # its own run resumes


def _append(capsys, setup, out, *inputs, extra=()):
    return run(capsys, "encode", "--tokenizer", setup / "cam", "--input", *inputs, "--out", out, "--dataset", "ds",
               "--samples-per-shard", 3, "--append", *extra)


def test_append_numbers_after_the_last_shard_and_refuses_repeated_keys(capsys, tmp_path, setup, clean):
    first = run(capsys, "encode", "--tokenizer", setup / "cam", "--input", setup / "a.npy", "--out", tmp_path,
                "--dataset", "ds", "--samples-per-shard", 3)
    assert first.code == 0 and first.out.splitlines()[0].endswith("shard-{000000..000001}.tar")
    folder = tmp_path / "cam/ds"
    before = {name: (folder / name).read_bytes() for name in SHARDS[:2]}
    result = _append(capsys, setup, tmp_path, setup / "b.npy")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == f"{tmp_path}/[cam]/ds/shard-{{000000..000002}}.tar"  # the whole dataset
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, *SHARDS]
    assert {name: (folder / name).read_bytes() for name in SHARDS[:2]} == before  # untouched
    assert [p.name for p in (tmp_path / "cam").iterdir()] == ["ds"]  # nothing left staged
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["first_shard"] == 2 and manifest["shards"] == 1 and manifest["complete"] is True
    assert [run["inputs"][0]["file"] for run in manifest["earlier_runs"]] == ["a.npy"]
    assert [key for key, _, _ in read_tar_members(str(folder / SHARDS[2]))] == ["b_000000", "b_000060", "b_000120"]
    # the same recording again: its keys are in the dataset already
    result = _append(capsys, setup, tmp_path, setup / "b.npy")
    assert result.code == 2 and f"--append: window key 'b_000000' is already in {folder / SHARDS[2]}" in result.err
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, *SHARDS]
    assert [p.name for p in (tmp_path / "cam").iterdir()] == ["ds"]
    # a plain rerun of the first command is now another run's folder: refused, nothing rewritten
    again = run(capsys, "encode", "--tokenizer", setup / "cam", "--input", setup / "a.npy", "--out", tmp_path,
                "--dataset", "ds", "--samples-per-shard", 3)
    assert again.code == 2 and "already holds 3 shard file(s) of another egom2p-tokenize run" in again.err


def test_a_killed_append_resumes_aside_and_leaves_the_dataset_as_it_was(capsys, tmp_path, monkeypatch, setup, clean):
    np.save(tmp_path / "c.npy", synthetic_camera_windows(7, seed=3))
    assert run(capsys, "encode", "--tokenizer", setup / "cam", "--input", setup / "a.npy", "--out", tmp_path,
               "--dataset", "ds", "--samples-per-shard", 3).code == 0
    folder = tmp_path / "cam/ds"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    encode = _kill_on_the_second_shard(monkeypatch)
    assert _append(capsys, setup, tmp_path, tmp_path / "c.npy").code == 130
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing of the append shows yet
    monkeypatch.setattr(WindowCodec, "encode", encode)
    result = _append(capsys, setup, tmp_path, tmp_path / "c.npy")
    assert result.code == 0, result.err
    assert "encoded 4 windows from 1 recording (3 windows kept in 1 shard finished earlier)" in result.out
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, *(f"shard-{i:06d}.tar" for i in range(5))]


def test_append_and_overwrite_exclude_each_other(capsys, tmp_path, setup):
    result = _append(capsys, setup, tmp_path, setup / "a.npy", extra=("--overwrite",))
    assert result.code == 2 and "not allowed with argument" in result.err
