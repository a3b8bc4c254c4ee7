"""Disk space for a write: checked before it starts, and "disk full" said in those words when a write runs out.

A write can run out of room three ways: the filesystem is full (``ENOSPC``), the user's quota is spent
(``EDQUOT``), or the process's file size limit is reached (``EFBIG``, ``ulimit -f``). Libraries report them
differently: Python raises the ``OSError`` itself, torch wraps it in a ``RuntimeError`` (the ``OSError`` is
its context when torch writes to a Python file), safetensors' Rust writer puts ``(os error N)`` in its
message. :func:`disk_full_errors` turns each into a :class:`DiskFullError` naming the path. No torch needed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from egom2p.core.errors import DiskFullError

__all__ = ["HEADROOM", "disk_full_errors", "out_of_space_reason", "require_free_space", "tensor_bytes"]

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
HEADROOM = 1 << 20  # file headers, config.json, the pickle around the tensors


def tensor_bytes(tree: Any) -> int:
    """The bytes of every tensor in ``tree`` (nested dicts, lists and tuples; anything with ``nbytes``)."""
    if isinstance(tree, Mapping):
        return sum(tensor_bytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(tensor_bytes(v) for v in tree)
    nbytes = getattr(tree, "nbytes", 0)
    return nbytes if isinstance(nbytes, int) else 0


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def require_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Raise :class:`DiskFullError` naming ``folder`` unless its filesystem has ``needed`` bytes (plus a MiB) free.

    ``folder`` need not exist yet: its nearest existing parent is measured.
    """
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed + HEADROOM:
        raise DiskFullError(folder, f"{what} needs about {_size(needed + HEADROOM)}, {_size(free)} free")


def out_of_space_reason(err: BaseException) -> str | None:
    """Why ``err`` (or an error it wraps) means the write found no room, e.g. "File too large"; None otherwise."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return os.strerror(current.errno)
        for match in _RUST_OS_ERROR.finditer(str(current)):
            if int(match.group(1)) in _FULL_ERRNOS:
                return os.strerror(int(match.group(1)))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def disk_full_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an out-of-room failure inside the block as :class:`DiskFullError` naming ``path``; others pass."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        reason = out_of_space_reason(err)
        if reason is None:
            raise
        raise DiskFullError(path, reason) from err
