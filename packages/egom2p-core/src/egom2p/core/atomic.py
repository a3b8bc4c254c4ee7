"""Durable file writes: a reader sees the old file or the new one, never half of it; no torch needed.

The one implementation for every egom2p writer that replaces files in place (checkpoint files, token
shards, a trainer's state): write under a temporary name in the same folder, fsync, rename over the
target, and fsync the folder when the rename itself must survive a crash.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(temp_path)`` beside ``path``, fsync, then rename over ``path``: readers see old or new, never half.

    The temporary file is hidden (``.<name>.<pid>.<random>.tmp``) and removed if ``write`` fails. The result gets
    the permissions a new file gets under the umask, whatever ``write`` set (safetensors writes 0600). Call
    :func:`fsync_dir` on the folder afterwards when the rename must be durable.
    """
    path = Path(path)
    # A unique name in the same folder: same filesystem, so the rename is atomic.
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"))
    try:
        with open(tmp, "xb"):
            pass
        mode = os.stat(tmp).st_mode & 0o777  # what a new file gets under the umask
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync ``directory`` so that renames and new entries in it survive a crash.

    Does nothing where the platform or filesystem cannot open a directory for fsync.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
