"""Named presets: the config files the wheels ship, accepted by name wherever a config file is.

Each kind of config ships inside the package that reads or runs it, as ``egom2p/<package>/configs/<kind>/<name>.yaml``:

==============  ==============  ===========================================================================
kind            shipped by      what
==============  ==============  ===========================================================================
``modalities``  egom2p-core     modality sets (``egom2p``: the released one)
``alphas``      egom2p-data     Dirichlet mixtures of a data config's ``alphas_config``
``data``        egom2p-data     data configs of the demos
``train``       egom2p-train    configs ``egom2p-train --config`` runs: the demos and the tokenizer demos
==============  ==============  ===========================================================================

The rule, :func:`resolve_preset`, is the same in an installed wheel and in an editable checkout (the files sit in
the package's source tree either way): an existing file always wins; otherwise a value that is a preset name is the
shipped file; otherwise a one-line ``FileNotFoundError`` names the path tried and the known names. A folder of a
preset's name does not hide the preset (a folder is never a config file).

Relative paths written inside a preset resolve as if the preset sat in the project of whoever named it: against
the working directory when it is named on the command line, against the naming file's project root
(:func:`egom2p.core.paths.config_base_dir`) when a config file names it. So ``egom2p-train --config demo-cpu`` reads
``data/demo/...`` and writes ``runs/demo-cpu`` under the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from egom2p.core.paths import config_base_dir, resolve_path

__all__ = ["PRESET_KINDS", "ConfigFile", "preset_file", "preset_names", "resolve_preset"]

#: kind -> the package that ships its files under ``<package>/configs/<kind>/``.
PRESET_KINDS: dict[str, str] = {
    "modalities": "egom2p.core",
    "alphas": "egom2p.data",
    "data": "egom2p.data",
    "train": "egom2p.train",
}
_SUFFIX = ".yaml"


@dataclass(frozen=True)
class ConfigFile:
    """A config file to read: ``path``, where the relative paths written in it resolve (``base_dir``), and the
    preset name when a name picked it (None for a path)."""

    path: str
    base_dir: str
    preset: str | None = None


def _kind_dir(kind: str) -> Path | None:
    """The folder of ``kind``'s shipped files, or None when the package that ships them is not installed."""
    if kind not in PRESET_KINDS:
        raise ValueError(f"unknown preset kind {kind!r}; known: {', '.join(PRESET_KINDS)}")
    try:
        root = resources.files(PRESET_KINDS[kind])
    except ModuleNotFoundError:
        return None
    return Path(str(root)) / "configs" / kind


def preset_names(kind: str) -> list[str]:
    """The sorted names of ``kind``'s shipped presets (empty when the package that ships them is not installed)."""
    folder = _kind_dir(kind)
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name[: -len(_SUFFIX)] for p in folder.iterdir() if p.name.endswith(_SUFFIX))


def preset_file(kind: str, name: str) -> str:
    """The shipped file of preset ``name`` of ``kind``; ``FileNotFoundError`` listing the known names otherwise."""
    if name in preset_names(kind):
        return os.fspath(_kind_dir(kind) / f"{name}{_SUFFIX}")  # type: ignore[operator]
    raise FileNotFoundError(f"no {kind} preset {name!r}: {_known(kind)}")


def _known(kind: str) -> str:
    """The known names of ``kind``, or which package to install for them."""
    names = preset_names(kind)
    if names:
        return f"the {kind} presets are {', '.join(names)}"
    package = PRESET_KINDS[kind].replace(".", "-")
    return f"the {kind} presets ship with {package}, which is not installed"


def resolve_preset(kind: str, value: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> ConfigFile:
    """The config file that ``value`` names: an existing file, else the shipped preset ``value`` of ``kind``.

    A relative ``value`` is a path against ``base_dir`` (default: the working directory, and then kept relative as
    given). A file's relative paths resolve against its project root; a preset's against ``base_dir`` (module
    docstring). Raises ``FileNotFoundError`` (one line: the path tried and the known names) when ``value`` is
    neither; a folder that is no preset, or a path the reader refuses more precisely (through a file, a symlink
    loop), is returned for the reader to refuse.
    """
    text = os.fspath(value)
    path = resolve_path(text, base_dir) if base_dir is not None else os.path.expanduser(text)
    if os.path.lexists(path) and not os.path.isdir(path):  # a dangling symlink too: the reader says where it points
        return ConfigFile(path, config_base_dir(path))
    base = os.fspath(base_dir) if base_dir is not None else os.getcwd()
    if text in preset_names(kind):
        return ConfigFile(preset_file(kind, text), base, preset=text)
    if os.path.isdir(path) or not _missing(path):
        return ConfigFile(path, config_base_dir(path))  # the reader says what is wrong (a folder, a path through a file)
    raise FileNotFoundError(f"config file not found: {path}, and {_known(kind)}")


def _missing(path: str) -> bool:
    """True when ``path`` simply does not exist (not when a file stands where a folder of it should be, or a loop)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False
