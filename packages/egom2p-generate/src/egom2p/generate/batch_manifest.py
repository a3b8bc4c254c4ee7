"""Where batch inference outputs came from: the manifest ``egom2p-batch-<task>.json`` in the output root.

The manifest holds what decides the bytes of a task's output shards: the ``settings`` (task, decoding steps,
sampling, batch size, input pattern, decoded signals) and the ``sources`` (the checkpoint and each tokenizer:
the path given, the path it resolved to and the SHA-256 of its weights file). Beside them, not compared: the
output shards the run writes (``outputs``, relative to the root) and what wrote them (``written_by``: package
and torch versions, device).

A run claims a root with :func:`claim_root`. A root without this task's manifest is new, unless it already holds
one of the run's output shards (of unknown origin: refused). A root whose manifest has the same settings and
sources resumes. Any other is refused with one line naming the first setting that differs and both values,
unless the caller asks to overwrite (the old run's outputs are deleted, then the shards generated again) or for
a new root (the first of ``<root>-2``, ``<root>-3``, ... that is free or holds this same run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from egom2p.core.atomic import fsync_dir, write_atomic
from egom2p.core.checkpoint_integrity import file_sha256
from egom2p.core.checkpoints import WEIGHTS_NAME, resolve_checkpoint

__all__ = ["FORMAT", "RootClaim", "build_manifest", "claim_root", "first_difference", "manifest_path",
           "source_identity"]

FORMAT = 1  # bump when the meaning of a field changes
_HINT = "give --new-root to write to a new directory, or --overwrite to replace its outputs"


def manifest_path(root: str | os.PathLike, task: str) -> Path:
    """The manifest of ``task``'s outputs under ``root``: ``root/egom2p-batch-<task>.json``."""
    return Path(root) / f"egom2p-batch-{task}.json"


def source_identity(source: str | os.PathLike) -> dict[str, str]:
    """``{given, path, sha256}`` of a checkpoint source (anything ``resolve_checkpoint`` opens: a directory, a
    run, an original ``.pth``, a Hub id, whose snapshot path names the repository and commit): the path it resolves
    to and the SHA-256 of its weights file."""
    path = resolve_checkpoint(source).resolve()
    weights = path if path.is_file() else path / WEIGHTS_NAME
    return {"given": os.fspath(source), "path": str(path), "sha256": file_sha256(weights)}


def build_manifest(settings: Mapping[str, Any], sources: Mapping[str, Mapping[str, str]], outputs: Sequence[str],
                   device: str) -> dict[str, Any]:
    """The manifest of a run (see the module docstring), as it reads back from JSON."""
    manifest = {
        "format": FORMAT, "settings": dict(settings), "sources": {k: dict(v) for k, v in sources.items()},
        "outputs": sorted(outputs),
        "written_by": {"egom2p-generate": version("egom2p-generate"), "torch": torch.__version__, "device": device},
    }
    return json.loads(json.dumps(manifest))  # tuples become lists, as they read back


def _compared(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that must agree for a run to resume, by the name a message gives them."""
    fields: dict[str, Any] = {"manifest format": manifest.get("format")}
    fields.update(manifest.get("settings") or {})
    for name, identity in (manifest.get("sources") or {}).items():
        fields[f"{name} sha256"] = identity.get("sha256") if isinstance(identity, Mapping) else identity
    return fields


def first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """``(setting, old value, new value)`` of the first compared field that differs, or None when they agree."""
    before, after = _compared(old), _compared(new)
    for name in [*after, *(n for n in before if n not in after)]:
        if before.get(name) != after.get(name):
            return name, before.get(name), after.get(name)
    return None


def _read(path: Path) -> dict[str, Any] | str:
    """The manifest at ``path``, or why it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"unreadable ({type(err).__name__})"
    return data if isinstance(data, dict) else "not a JSON object"


@dataclass
class RootClaim:
    """The root a run writes into and what must happen before its first shard: :meth:`commit`."""

    root: Path
    manifest_file: Path
    manifest: dict[str, Any] | None  # None: the root's manifest is this run's already
    stale: list[Path] = field(default_factory=list)  # an overwritten run's outputs

    def commit(self) -> None:
        """Delete the overwritten run's outputs, then write this run's manifest (atomically). Idempotent."""
        for path in self.stale:
            path.unlink(missing_ok=True)
        self.stale = []
        if self.manifest is not None:
            text = json.dumps(self.manifest, indent=2) + "\n"
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(self.manifest_file, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
            fsync_dir(self.root)
            self.manifest = None


def _inside(root: Path, names: Sequence[str]) -> list[Path]:
    """The files ``names`` (relative) under ``root`` that stay inside it; a manifest is never trusted to leave."""
    real = os.path.realpath(root)
    paths = [root / name for name in names if isinstance(name, str)]
    return [p for p in paths if os.path.commonpath([real, os.path.realpath(p)]) == real]


def _check(root: Path, task: str, manifest: Mapping[str, Any], overwrite: bool) -> RootClaim:
    """The claim on ``root`` (see :func:`claim_root`) without looking for a new root."""
    path = manifest_path(root, task)
    outputs = _inside(root, manifest["outputs"])
    if not path.exists():
        existing = [p for p in outputs if p.exists()]
        if existing and not overwrite:
            raise ValueError(f"{existing[0]}: an output shard of unknown origin ({path.name} is missing); {_HINT}")
        return RootClaim(root, path, dict(manifest), existing)
    old = _read(path)
    if isinstance(old, str):
        if not overwrite:
            raise ValueError(f"{path}: {old}; {_HINT}")
        return RootClaim(root, path, dict(manifest), [p for p in outputs if p.exists()])
    difference = first_difference(old, manifest)
    if difference is None:
        return RootClaim(root, path, None)
    if not overwrite:
        name, before, now = difference
        raise ValueError(f"{root} holds {task} outputs made with {name} {before!r}, this run has {now!r} "
                         f"({path.name}); {_HINT}")
    return RootClaim(root, path, dict(manifest), _inside(root, old.get("outputs") or []) + outputs)


def claim_root(root: str | os.PathLike, task: str, manifest: Mapping[str, Any], *, overwrite: bool = False,
               new_root: bool = False) -> RootClaim:
    """Which root ``task``'s run described by ``manifest`` (from :func:`build_manifest`) writes into.

    ``root`` itself when it is new (and holds none of ``manifest["outputs"]``) or holds the same run; with
    ``overwrite``, ``root`` in any case (the other run's outputs are deleted on :meth:`RootClaim.commit`); with
    ``new_root``, the first of ``root``, ``<root>-2``, ``<root>-3``, ... that is new or holds the same run. Otherwise
    a ``ValueError`` (one line) naming the first differing setting and both values.
    """
    if overwrite and new_root:
        raise ValueError("give --overwrite or --new-root, not both")
    root = Path(root)
    if not new_root:
        return _check(root, task, manifest, overwrite)
    for n in range(1, 10_000):
        candidate = root if n == 1 else root.with_name(f"{root.name}-{n}")
        try:
            return _check(candidate, task, manifest, overwrite=False)
        except ValueError:
            continue
    raise ValueError(f"--new-root: {root}-2 ... {root}-9999 all hold other runs of {task}")
