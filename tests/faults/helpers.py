"""Helpers of the fault-injection suite: run a console script as a user does, check its outcome, make bad files."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from egom2p.core.layout import expand_folders, expand_shard_pattern
from egom2p.core.shards import encode_tokens, write_tar
from scenario_table import DOC, read_table

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY_MODALITIES = "tiny"  # the shipped modalities preset, by name
# A tiny EgoM2P run on the demo shards (the `data_config` fixture): 2 epochs of 8 steps, a checkpoint every 2.
TINY = ["model.preset=egom2p-tiny", f"model.modalities={TINY_MODALITIES}", "model.dim=48", "model.encoder_depth=1",
        "model.decoder_depth=1", "model.num_heads=4", "model.attn_backend=sdpa", "dtype=float32", "device=cpu",
        "loader.num_workers=0", "loader.batch_size=4", "data.train.num_input_tokens=24",
        "data.train.num_target_tokens=24", "schedule.epoch_size=32", "schedule.epochs=2", "schedule.warmup_epochs=1",
        "metrics.log_every_steps=1", "checkpoint.every_steps=2", "metrics.val_every_steps=1000",
        "metrics.log_wandb=false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def cli(script: str, *args: object, cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the installed console script ``script`` with ``args``; its exit code and output, never raising."""
    return subprocess.run([str(BIN / script), *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def train(tmp_path: Path, data_config: Path, *overrides: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """egom2p-train on the tiny model and ``data_config``, writing to ``tmp_path/run``; never raising."""
    return cli("egom2p-train", f"data={data_config}", *TINY, f"output_dir={tmp_path / 'run'}", *overrides,
               timeout=timeout)


def train_here(capsys, *args: object) -> subprocess.CompletedProcess:
    """``egom2p-train ARGS`` through its ``main`` in this process, on one torch thread like the subprocess runs
    (``OMP_NUM_THREADS=1``), returned as :func:`cli` returns a run (no interpreter start-up per run)."""
    import torch
    from egom2p.train.cli import main

    capsys.readouterr()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main([str(a) for a in args])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["egom2p-train", *map(str, args)], code, out.out, out.err)


def assert_user_error(proc: subprocess.CompletedProcess, *names: object, code: int = 2) -> None:
    """The outcome for a user's mistake: exit ``code``, no traceback, and one ``PROG: error:`` line naming each of
    ``names`` (a file, key or value)."""
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    detail = f"exit {proc.returncode}\nstdout: {proc.stdout[-1500:]}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode == code, detail
    assert "Traceback" not in proc.stderr and len(errors) == 1, detail
    for name in names:
        assert str(name) in errors[0], f"{name!r} not named in: {errors[0]}"


def copy_shards(pattern: str, dest: Path) -> str:
    """Copy the shards of ``pattern`` (all its folders) under ``dest``; the pattern of the copies."""
    common = Path(os.path.commonpath(list(expand_folders(pattern).values())))
    for url in expand_folders(pattern).values():
        for shard in expand_shard_pattern(url):
            target = dest / Path(shard).relative_to(common)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shard, target)
    return str(dest / Path(pattern).relative_to(common))


def folder_shard(pattern: str, folder: str, index: int = 0) -> Path:
    """Shard ``index`` of one modality folder of ``pattern``."""
    return Path(expand_shard_pattern(expand_folders(pattern)[folder])[index])


def members(shard: Path) -> list[tuple[str, bytes]]:
    """The ``(name, bytes)`` members of a tar, in order."""
    with tarfile.open(shard) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def replace_member(shard: Path, index: int, data: bytes) -> str:
    """Rewrite ``shard`` with member ``index`` holding ``data``; returns that member's name."""
    items = members(shard)
    name = items[index][0]
    items[index] = (name, data)
    write_tar(shard, items)
    return name


def float_tokens(shape: tuple[int, ...]) -> bytes:
    """An ``.npz`` holding float tokens (which must be rejected, never truncated to ints)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, np.full(shape, 3.7, dtype=np.float32))
    return buffer.getvalue()


def out_of_vocab_tokens(shape: tuple[int, ...], vocab_size: int) -> bytes:
    """An ``.npz`` of integer tokens with one id at ``vocab_size`` (one past the last valid id)."""
    tokens = np.zeros(shape, dtype=np.int64)
    tokens.flat[0] = vocab_size
    return encode_tokens(tokens)


def zlib_bomb(megabytes: int = 256) -> bytes:
    """An ``.npz`` whose ``arr_0.npy`` inflates to ``megabytes`` MB of zeros from well under 1 MB, written in chunks."""
    count = megabytes * 2**20 // 8
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (count,)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("arr_0.npy", "w", force_zip64=True) as member:
        member.write(header.getvalue())
        chunk = bytes(2**20)
        for _ in range(megabytes):
            member.write(chunk)
    return buffer.getvalue()


class _Marker:
    """Unpickling this creates the file ``path``: proof that a loader executed code from a file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def code_pickle(path: Path, marker: Path, payload: dict | None = None) -> Path:
    """Write a torch file at ``path`` that would create ``marker`` when unpickled, next to ``payload``."""
    import torch

    torch.save({**(payload or {}), "evil": _Marker(marker)}, path)
    return path


BY_ID = {s.id: s for s in read_table()}  # the rows of docs/reliability.md's scenario table
TESTED: set[str] = set()  # filled as test modules are collected; the table test checks every id is here


def scenario(scenario_id: str):
    """Mark a test as the one of row ``scenario_id``; a scenario still open is a strict xfail naming the file to fix."""
    TESTED.add(scenario_id)
    if scenario_id not in BY_ID:
        raise KeyError(f"{scenario_id!r} has no row in the scenario table of {DOC}")
    s = BY_ID[scenario_id]

    def mark(test):
        if s.open_in:
            test = pytest.mark.xfail(strict=True, reason=f"open: fix in {s.open_in}")(test)
        return test
    return mark
