"""Modality specs: the one description of a token modality, and the one reader of modality files.

A modality file maps a modality name to
``{vocab_size, grid: [T, H, W]}`` (a video token grid, 3-D sin-cos positions) or
``{vocab_size, length: L}`` (a token sequence, 1-D positions), plus an optional ``folder``: the
name of the modality's shard folder (docs/original-behaviour.md#shard-layout). The folder rule lives here and only here: without
``folder``, a ``tok_`` prefix is dropped from the name (``tok_rgb`` -> ``rgb``). The modality sets that ship
with egom2p-core (``egom2p``, the released one; ``tiny`` and ``tiny-hand``, the demos') are read by name
(:mod:`egom2p.core.presets`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from egom2p.core.config_files import read_config_file
from egom2p.core.layout import check_name
from egom2p.core.presets import preset_file, resolve_preset

__all__ = ["ModalitySpec", "RELEASED_MODALITIES", "default_folder", "load_modality_specs"]

_KEYS = ("vocab_size", "grid", "length", "folder")


def default_folder(name: str) -> str:
    """The shard folder of a modality without an explicit ``folder``: ``tok_rgb`` -> ``rgb``."""
    return name[4:] if name.startswith("tok_") and len(name) > 4 else name


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class ModalitySpec:
    """One token modality: ``grid`` (video ``[T, H, W]``) or ``length`` (sequence), never both."""

    name: str
    vocab_size: int
    grid: tuple[int, int, int] | None = None
    length: int | None = None
    folder: str = ""  # "" = default_folder(name)

    def __post_init__(self) -> None:
        where = f"modality {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"modality name must be a non-empty string, got {self.name!r}")
        if not _positive_int(self.vocab_size):
            raise ValueError(f"{where}: vocab_size must be a positive integer, got {self.vocab_size!r}")
        if (self.grid is None) == (self.length is None):
            raise ValueError(f"{where}: give exactly one of 'grid' [T, H, W] or 'length'")
        if self.grid is not None:
            if not isinstance(self.grid, (list, tuple)) or len(self.grid) != 3 or not all(map(_positive_int, self.grid)):
                raise ValueError(f"{where}: grid must be three positive integers [T, H, W], got {self.grid!r}")
            object.__setattr__(self, "grid", tuple(self.grid))
        if self.length is not None and not _positive_int(self.length):
            raise ValueError(f"{where}: length must be a positive integer, got {self.length!r}")
        if not isinstance(self.folder, str):
            raise ValueError(f"{where}: folder must be a plain folder name, got {self.folder!r}")
        if not self.folder:
            object.__setattr__(self, "folder", default_folder(self.name))
        try:  # the shard writers' rule: a folder sits in a [a,b] pattern list
            check_name(self.folder, "folder")
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None

    @property
    def num_tokens(self) -> int:
        """Tokens of one sample: ``T * H * W`` or ``length``."""
        return math.prod(self.shape)

    @property
    def shape(self) -> tuple[int, ...]:
        """Token array shape of one sample: the grid, or ``(length,)``."""
        return self.grid if self.grid is not None else (int(self.length),)  # type: ignore[return-value]

    @property
    def is_video(self) -> bool:
        """True for a ``[T, H, W]`` token grid, False for a sequence."""
        return self.grid is not None

    def to_dict(self) -> dict[str, Any]:
        """This modality's modality-file entry (JSON- and YAML-serialisable)."""
        out: dict[str, Any] = {"vocab_size": self.vocab_size}
        if self.grid is not None:
            out["grid"] = list(self.grid)
        else:
            out["length"] = self.length
        out["folder"] = self.folder
        return out

    def check_tokens(self, array: np.ndarray) -> str | None:
        """Why ``array`` is not one sample of this modality (shape, dtype, vocabulary), or None if it is.

        Accepted shapes are the spec's shape and the flat ``(num_tokens,)``.
        """
        if array.shape != self.shape and array.shape != (self.num_tokens,):
            flat = f" or [{self.num_tokens}]" if self.is_video else ""
            return f"{self.name} has shape {tuple(array.shape)}, expected {list(self.shape)}{flat}"
        if not np.issubdtype(array.dtype, np.integer):
            return f"{self.name} has dtype {array.dtype}, expected integer token ids"
        if array.size:
            lo, hi = int(array.min()), int(array.max())
            if lo < 0 or hi >= self.vocab_size:
                return f"{self.name} tokens in [{lo}, {hi}] are outside the vocabulary [0, {self.vocab_size})"
        return None


def _parse_entry(name: Any, entry: Any, where: str) -> ModalitySpec:
    if not isinstance(name, str):
        raise ValueError(f"{where}: modality names must be strings, got {name!r}")
    if isinstance(entry, ModalitySpec):
        if entry.name != name:
            raise ValueError(f"{where}: key {name!r} holds the spec of modality {entry.name!r}")
        return entry
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: modality '{name}' must be a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise ValueError(f"{where}: modality '{name}' has unknown key(s) {unknown}; allowed {list(_KEYS)}")
    if "vocab_size" not in entry:
        raise ValueError(f"{where}: modality '{name}' is missing 'vocab_size'")
    try:
        return ModalitySpec(name=name, vocab_size=entry["vocab_size"], grid=entry.get("grid"),
                            length=entry.get("length"), folder=entry.get("folder") or "")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_modality_specs(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, ModalitySpec]:
    """Read a modality file or preset name (``egom2p``, ``tiny``: :func:`egom2p.core.presets.resolve_preset`), or a
    mapping of entries or specs, into ``name -> ModalitySpec`` sorted by name.

    Raises ``FileNotFoundError`` for a missing file that is no preset name (one line with the known names) and
    ``ValueError`` naming the file and the bad key otherwise. Two modalities may not share a shard folder.
    """
    if isinstance(source, Mapping):
        raw: Any = source
        where = "<modalities>"
    else:
        where = resolve_preset("modalities", source).path
        raw = read_config_file(where)
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{where}: expected a non-empty mapping of modality name -> {{vocab_size, grid|length}}")
    specs = {name: _parse_entry(name, raw[name], where) for name in sorted(raw, key=str)}
    folders: dict[str, str] = {}
    for spec in specs.values():
        if spec.folder in folders:
            raise ValueError(f"{where}: modalities '{folders[spec.folder]}' and '{spec.name}' share the folder '{spec.folder}'")
        folders[spec.folder] = spec.name
    return specs


# The released EgoM2P set, read from the shipped preset file (its one definition): the model's default modalities
# and the set original checkpoints are converted with. Read by path, so no file of the working directory hides it.
RELEASED_MODALITIES: dict[str, dict[str, Any]] = {
    name: spec.to_dict() for name, spec in load_modality_specs(preset_file("modalities", "egom2p")).items()
}
