"""Modality descriptions read from ``configs/modalities/*.yaml``.

The data package only needs each modality's token count, vocabulary size and shard folder name.
The files are written in the JSON subset of YAML, so they are read with PyYAML when it is installed
and with :mod:`json` otherwise (comment lines starting with ``#`` are dropped first).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ModalityInfo", "load_modalities"]


@dataclass(frozen=True)
class ModalityInfo:
    """One token modality: ``shape`` is the per-sample token array shape (``[T, H, W]`` or ``[L]``)."""

    name: str
    vocab_size: int
    shape: tuple[int, ...]
    folder: str

    @property
    def num_tokens(self) -> int:
        """Number of tokens per sample (the flattened length)."""
        return math.prod(self.shape)


def _read_config_text(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        import yaml
    except ImportError:  # the JSON subset of YAML: strip comments and use json
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        return json.loads("\n".join(lines))
    return yaml.safe_load(text)


def _positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return value


def _parse_one(name: str, entry: Any, where: str) -> ModalityInfo:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: modality '{name}' must be a mapping, got {type(entry).__name__}")
    known = {"vocab_size", "grid", "length", "folder", "embedding", "type"}
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"{where}: modality '{name}' has unknown key(s) {sorted(unknown)}")
    if "vocab_size" not in entry:
        raise ValueError(f"{where}: modality '{name}' is missing 'vocab_size'")
    vocab = _positive_int(entry["vocab_size"], f"{name}.vocab_size", where)
    if ("grid" in entry) == ("length" in entry):
        raise ValueError(f"{where}: modality '{name}' needs exactly one of 'grid' or 'length'")
    if "grid" in entry:
        grid = entry["grid"]
        if not isinstance(grid, (list, tuple)) or not grid:
            raise ValueError(f"{where}: '{name}.grid' must be a non-empty list, got {grid!r}")
        shape = tuple(_positive_int(g, f"{name}.grid", where) for g in grid)
    else:
        shape = (_positive_int(entry["length"], f"{name}.length", where),)
    folder = entry.get("folder", name[4:] if name.startswith("tok_") else name)
    if not isinstance(folder, str) or not folder:
        raise ValueError(f"{where}: '{name}.folder' must be a non-empty string, got {folder!r}")
    return ModalityInfo(name=name, vocab_size=vocab, shape=shape, folder=folder)


def load_modalities(path_or_dict: str | os.PathLike | Mapping[str, Any]) -> dict[str, ModalityInfo]:
    """Read a modality file (or an already-parsed mapping) into ``name -> ModalityInfo``, sorted by name.

    Raises ``ValueError`` naming the file and the bad key for malformed entries.
    """
    if isinstance(path_or_dict, Mapping):
        raw, where = path_or_dict, "<modalities dict>"
    else:
        where = os.fspath(path_or_dict)
        raw = _read_config_text(where)
    if isinstance(raw, Mapping) and raw and all(isinstance(v, ModalityInfo) for v in raw.values()):
        return {k: raw[k] for k in sorted(raw)}
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{where}: expected a non-empty mapping of modality name -> description")
    return {name: _parse_one(name, raw[name], where) for name in sorted(raw)}
