"""How a checkpoint lies on disk: its file names and a training run's step directories; no torch needed.

A checkpoint (a model's or a tokenizer's) is a directory holding :data:`WEIGHTS_NAME` and
:data:`CONFIG_NAME`, and, when egom2p wrote it, :data:`INTEGRITY_NAME` (every file's size and checksum,
written last: :mod:`egom2p.core.checkpoint_integrity`). A trainer writes one per saved step as ``output_dir/checkpoints/step-<N>/``; a
step directory is complete once both files are in it, and temporary names (``step-5.tmp-<pid>``) are
never steps. The released originals are single PyTorch files with one of :data:`ORIGINAL_SUFFIXES`.
:mod:`egom2p.core.checkpoints` (reading and writing, with torch) and :mod:`egom2p.core.hub` build on this.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "CONFIG_NAME", "INTEGRITY_NAME", "ORIGINAL_SUFFIXES", "STEP_DIR_RE", "WEIGHTS_NAME", "is_checkpoint_dir", "newest_step",
    "step_dir_name",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
INTEGRITY_NAME = "integrity.json"
ORIGINAL_SUFFIXES = (".pth", ".pt")
# The whole name: "step-5.tmp-123" and the like are not steps (\Z, unlike $, also refuses a trailing newline).
STEP_DIR_RE = re.compile(r"step-(\d+)\Z")


def step_dir_name(step: int) -> str:
    """Directory name of the checkpoint taken after ``step`` optimizer steps."""
    return f"step-{step}"


def is_checkpoint_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding both :data:`WEIGHTS_NAME` and :data:`CONFIG_NAME`."""
    return (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()


def newest_step(folder: Path) -> Path | None:
    """The highest-numbered complete ``step-<N>`` directory in ``folder`` (numerically: 10 > 2), or None."""
    steps = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_DIR_RE.match(p.name)) and p.is_dir()]
    complete = [(n, p) for n, p in steps if is_checkpoint_dir(p)]
    return max(complete)[1] if complete else None
