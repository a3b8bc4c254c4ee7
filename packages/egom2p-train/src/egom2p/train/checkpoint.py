"""Atomic, resumable training checkpoints: ``output_dir/checkpoints/step-<N>.pt``.

A checkpoint is written to a temporary file in the same directory, fsynced, renamed over its final
name and the directory fsynced, so a crash at any moment leaves either the old set of checkpoints
or the old set plus one complete new file; leftover temporary files are never mistaken for
checkpoints. Only rank 0 writes (the caller gathers per-rank state beforehand).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_RE = re.compile(r"^step-(\d+)\.pt$")
TEMP_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken after ``step`` optimizer steps."""
    return f"step-{step:09d}.pt"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` so that readers only ever see a complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class CheckpointManager:
    """Saves, lists, prunes and reloads the checkpoints of one run directory."""

    def __init__(self, output_dir: str | Path, keep_last_k: int = 3, s3_save_dir: str | None = None):
        if keep_last_k < 1:
            raise ValueError(f"keep_last_k must be >= 1, got {keep_last_k}")
        self.dir = Path(output_dir) / "checkpoints"
        self.keep_last_k = keep_last_k
        self.s3_save_dir = s3_save_dir

    def list(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as ``(step, path)``, oldest first (temporary files are ignored)."""
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write ``state`` as the checkpoint of ``step``, drop all but the newest K, upload if asked."""
        path = self.dir / checkpoint_name(step)
        atomic_torch_save(state, path)
        self._remove_stale_temp_files()
        for _, old in self.list()[:-self.keep_last_k]:
            old.unlink(missing_ok=True)
        if self.s3_save_dir:
            upload_to_s3(path, self.s3_save_dir)
        return path

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads, or None; an unreadable one is reported and skipped."""
        for _, path in reversed(self.list()):
            try:
                return path, torch.load(path, map_location="cpu", weights_only=False)
            except Exception as err:  # a file damaged outside our control (disk, copy): try the older one
                print(f"warning: skipping unreadable checkpoint {path}: {err}", file=sys.stderr)
        return None

    def _remove_stale_temp_files(self) -> None:
        # Left by a process killed mid-save; only rank 0 writes here, so none is in progress now.
        for p in self.dir.glob(TEMP_PREFIX + "*"):
            p.unlink(missing_ok=True)


def upload_to_s3(path: Path, s3_dir: str) -> str:
    """Upload ``path`` to ``s3_dir/<name>`` with boto3 (default credentials, ``AWS_ENDPOINT_URL``)."""
    try:
        import boto3  # optional: egom2p-train[s3]
    except ImportError as err:
        raise RuntimeError("s3_save_dir needs boto3: pip install 'egom2p-train[s3]'") from err
    bucket, _, prefix = s3_dir.removeprefix("s3://").partition("/")
    key = f"{prefix.rstrip('/')}/{path.name}" if prefix else path.name
    boto3.client("s3").upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"
