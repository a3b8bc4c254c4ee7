"""Modality descriptions (``configs/modalities/*.yaml``, docs/contracts.md "Modality files").

Each modality is a video token grid ``[T, H, W]`` (3-D sin-cos positions) or a token sequence of
fixed length (1-D sin-cos positions), with its own vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The released EgoM2P set (SPEC 1.1), kept here so the package works without the repo's configs/.
RELEASED_MODALITIES: dict[str, dict[str, Any]] = {
    "tok_cam": {"vocab_size": 256, "length": 30, "folder": "cam"},
    "tok_depth": {"vocab_size": 64000, "grid": [5, 32, 32], "folder": "depth"},
    "tok_gaze": {"vocab_size": 256, "length": 30, "folder": "gaze"},
    "tok_rgb": {"vocab_size": 64000, "grid": [5, 32, 32], "folder": "rgb"},
}


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: ``grid`` (video, ``[T, H, W]``) or ``length`` (sequence), never both."""

    name: str
    vocab_size: int
    grid: tuple[int, int, int] | None = None
    length: int | None = None
    folder: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.vocab_size, int) or self.vocab_size < 1:
            raise ValueError(f"modality {self.name!r}: vocab_size must be a positive int, got {self.vocab_size!r}")
        if (self.grid is None) == (self.length is None):
            raise ValueError(f"modality {self.name!r}: give exactly one of 'grid' [T, H, W] or 'length'")
        if self.grid is not None:
            grid = tuple(self.grid)
            if len(grid) != 3 or not all(isinstance(g, int) and g > 0 for g in grid):
                raise ValueError(f"modality {self.name!r}: grid must be three positive ints [T, H, W], got {self.grid!r}")
            object.__setattr__(self, "grid", grid)
        if self.length is not None and (not isinstance(self.length, int) or self.length < 1):
            raise ValueError(f"modality {self.name!r}: length must be a positive int, got {self.length!r}")

    @property
    def num_tokens(self) -> int:
        """Number of tokens of one sample of this modality."""
        if self.grid is not None:
            t, h, w = self.grid
            return t * h * w
        return int(self.length)

    @property
    def shape(self) -> tuple[int, ...]:
        """Token tensor shape of one sample: the grid, or ``(length,)``."""
        return self.grid if self.grid is not None else (int(self.length),)

    def to_dict(self) -> dict[str, Any]:
        """The modality-file entry for this modality (JSON-serialisable)."""
        out: dict[str, Any] = {"vocab_size": self.vocab_size}
        if self.grid is not None:
            out["grid"] = list(self.grid)
        else:
            out["length"] = self.length
        if self.folder is not None:
            out["folder"] = self.folder
        return out


_ALLOWED_KEYS = {"vocab_size", "grid", "length", "folder"}


def _read_file(path: Path) -> Mapping[str, Any]:
    text = path.read_text()
    try:
        import yaml  # optional; the shipped files are the JSON subset of YAML
    except ImportError:
        yaml = None
    if yaml is not None:
        return yaml.safe_load(text)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    try:
        return json.loads("\n".join(lines))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON-compatible YAML and PyYAML is not installed ({err})") from err


def load_modality_specs(source: str | Path | Mapping[str, Any]) -> dict[str, ModalitySpec]:
    """Read modalities from a file path or a mapping; returns them in sorted name order.

    Mapping values may be dicts (``{vocab_size, grid|length, folder?}``) or ``ModalitySpec``.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"modality file not found: {path}")
        raw = _read_file(path)
    else:
        raw = source
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"modalities must be a non-empty mapping name -> spec, got {type(raw).__name__}")
    specs: dict[str, ModalitySpec] = {}
    for name in sorted(raw):
        entry = raw[name]
        if isinstance(entry, ModalitySpec):
            if entry.name != name:
                raise ValueError(f"modality key {name!r} holds a spec named {entry.name!r}")
            specs[name] = entry
            continue
        if not isinstance(entry, Mapping):
            raise ValueError(f"modality {name!r}: expected a mapping, got {type(entry).__name__}")
        unknown = set(entry) - _ALLOWED_KEYS
        if unknown:
            raise ValueError(f"modality {name!r}: unknown keys {sorted(unknown)}; allowed {sorted(_ALLOWED_KEYS)}")
        if "vocab_size" not in entry:
            raise ValueError(f"modality {name!r}: missing 'vocab_size'")
        grid = entry.get("grid")
        specs[name] = ModalitySpec(
            name=name,
            vocab_size=entry["vocab_size"],
            grid=tuple(grid) if grid is not None else None,
            length=entry.get("length"),
            folder=entry.get("folder"),
        )
    return specs
