"""Helpers of the fault-injection suite: run a console script as a user does, check its outcome, make bad files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from egom2p.core.shards import encode_tokens, write_tar

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY_MODALITIES = ROOT / "configs/modalities/tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def cli(script: str, *args: object, cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the installed console script ``script`` with ``args``; its exit code and output, never raising."""
    return subprocess.run([str(BIN / script), *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def assert_user_error(proc: subprocess.CompletedProcess, *names: object, code: int = 2) -> None:
    """The outcome for a user's mistake: exit ``code``, no traceback, and one ``PROG: error:`` line naming each of
    ``names`` (a file, key or value)."""
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    detail = f"exit {proc.returncode}\nstdout: {proc.stdout[-1500:]}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode == code, detail
    assert "Traceback" not in proc.stderr and len(errors) == 1, detail
    for name in names:
        assert str(name) in errors[0], f"{name!r} not named in: {errors[0]}"


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
