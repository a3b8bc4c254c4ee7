"""How a checkpoint lies on disk: its file names and a training run's step directories; no torch needed.

A checkpoint (a model's or a tokenizer's) is a directory holding :data:`WEIGHTS_NAME` and
:data:`CONFIG_NAME`, and, when egom2p wrote it, :data:`INTEGRITY_NAME` (every file's size and checksum,
written last: :mod:`egom2p.core.checkpoint_integrity`). A trainer writes one per saved step as ``output_dir/checkpoints/step-<N>/``,
with :data:`TRAIN_STATE_NAME` beside; a step directory is complete for inference once the two files are in it and
for resuming once the third is too (:func:`is_checkpoint_dir`), and temporary names (``step-5.tmp-<pid>``) are
never steps. The released originals are single PyTorch files with one of :data:`ORIGINAL_SUFFIXES`.
:mod:`egom2p.core.checkpoints` (reading and writing, with torch) and :mod:`egom2p.core.hub` build on this.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "CONFIG_NAME", "INTEGRITY_NAME", "ORIGINAL_SUFFIXES", "STEP_DIR_RE", "TRAIN_STATE_NAME", "WEIGHTS_NAME",
    "complete_steps", "is_checkpoint_dir", "newest_step",
    "step_dir_name",
]

WEIGHTS_NAME = "model.safetensors"
TRAIN_STATE_NAME = "train_state.pt"  # a trainer's step directory: optimizer, step, RNG and data positions
CONFIG_NAME = "config.json"
INTEGRITY_NAME = "integrity.json"
ORIGINAL_SUFFIXES = (".pth", ".pt")
# The whole name: "step-5.tmp-123" and the like are not steps (\Z, unlike $, also refuses a trailing newline).
STEP_DIR_RE = re.compile(r"step-(\d+)\Z")


def step_dir_name(step: int) -> str:
    """Directory name of the checkpoint taken after ``step`` optimizer steps."""
    return f"step-{step}"


def is_checkpoint_dir(path: Path, resumable: bool = False) -> bool:
    """Whether ``path`` is a directory holding :data:`WEIGHTS_NAME` and :data:`CONFIG_NAME` (enough for
    inference), and with ``resumable`` also a trainer's :data:`TRAIN_STATE_NAME` (enough to resume training)."""
    names = (WEIGHTS_NAME, CONFIG_NAME, TRAIN_STATE_NAME) if resumable else (WEIGHTS_NAME, CONFIG_NAME)
    return all((path / name).is_file() for name in names)


def complete_steps(folder: Path, resumable: bool = False) -> list[tuple[int, Path]]:
    """The complete ``step-<N>`` directories of ``folder`` as ``(N, path)``, oldest first (numerically: 2 before
    10); temporary names are not steps, and a missing folder has none."""
    if not folder.is_dir():
        return []
    steps = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_DIR_RE.match(p.name)) and p.is_dir()]
    return sorted((n, p) for n, p in steps if is_checkpoint_dir(p, resumable))


def newest_step(folder: Path) -> Path | None:
    """The highest-numbered complete ``step-<N>`` directory in ``folder`` (for inference), or None."""
    steps = complete_steps(folder)
    return steps[-1][1] if steps else None
