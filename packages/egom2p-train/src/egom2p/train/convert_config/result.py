"""What a translation holds: our configs, the keys not carried (with why) and notes; its one-line error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIFFERS = "differs: "  # prefix of a reason whose setting our trainer cannot reproduce


class ConversionError(ValueError):
    """An original config cannot be translated: a missing file or a key with an impossible value."""


def conversion_error(where: Path | str, key: str, value: Any, problem: str) -> ConversionError:
    """The one-line error for ``key`` of file ``where`` holding ``value``."""
    return ConversionError(f"{where}: key '{key}': {value!r}: {problem}")


@dataclass
class Skipped:
    """One original key (or one key of several datasets) that is not carried."""

    source: str  # the file's name
    key: str  # dotted key in that file; ``*`` / ``{a,b}`` for several datasets
    value: Any
    why: str

    def line(self) -> str:
        """``key: value: why``."""
        return f"{self.key}: {self.value!r}: {self.why}"


@dataclass
class Translation:
    """Our configs for one original main config; paths of ``data`` alphas are relative to the output folder."""

    train: dict[str, Any]  # dotted key -> value (without ``data``, written as the data.yaml path)
    data: dict[str, Any]  # our data config mapping
    alphas: dict[str, Path]  # copy's path relative to the output folder -> the original alphas file
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # our dotted key -> the original key it came from
    carried_keys: set[str] = field(default_factory=set)  # the main config's keys carried to ours
    sources: dict[str, Path] = field(default_factory=dict)  # "main" / "data" -> the files read

    @property
    def differing(self) -> list[Skipped]:
        """The not-carried keys our trainer cannot reproduce."""
        return [s for s in self.skipped if s.why.startswith(DIFFERS)]
