"""The exceptions of egom2p-core, in one module that imports nothing of egom2p: every other module (and every
package) imports them from here, so no module needs another one's internals for an exception class.

Each is a subclass of a built-in error, so ``except OSError`` / ``except ImportError`` callers keep working;
the CLIs print each as one line (``egom2p.core.cli.USER_ERRORS``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["DiskFullError", "MissingExtraError", "ShardError", "SourceError"]


class ShardError(RuntimeError):
    """A shard cannot be read: missing, truncated, corrupt or inconsistent across modalities."""


class SourceError(ValueError):
    """A data source that names no shards: a folder given as a pattern, a missing root, a root without the
    dataset's tars. The message is one line naming the source."""


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which ``pip install`` brings it."""


class DiskFullError(OSError):
    """A write found no room: ``disk full: PATH: REASON[; HINT]`` (errno ``ENOSPC``, whatever the cause was)."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = ""):
        self.path, self.reason = Path(path), reason
        super().__init__(errno.ENOSPC, f"disk full: {path}: {reason}" + (f"; {hint}" if hint else ""))

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]"
        return self.strerror
