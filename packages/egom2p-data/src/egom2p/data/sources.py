"""The inputs of ``egom2p-data write``: a folder of per-sample token files, or stacked arrays.

``--from-dir DIR`` reads ``DIR/<folder>/<key>.npy|.npz``. A sample's key is core's
(:func:`egom2p.core.layout.sample_key`: the file name up to its first dot), and the rules below make a mistake
an error naming the file instead of a lost or mispaired sample:

- a name with a dot before its ``.npy`` / ``.npz`` is refused (its key would end at that dot, see
  :mod:`egom2p.data.shards`): rename ``clip.v1.npy`` to ``clip_v1.npy``;
- two files for one key in a folder (``a.npy`` and ``a.npz``) are an error, and so is one key stored as
  ``.npy`` in one folder and ``.npz`` in another (files of two export runs mixed in one tree);
- every folder must hold the same keys.

Files are read one at a time while shards are written (:class:`TokenFiles`), so memory stays flat.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
from egom2p.core.layout import sample_key
from egom2p.core.shards import TOKEN_SUFFIXES, load_token_array

__all__ = ["TokenFiles", "load_token_file", "read_from_dir", "read_stacked"]


def load_token_file(path: str) -> np.ndarray:
    """A token file (``.npy`` or ``.npz`` ``arr_0``) as an integer array in its stored dtype; never unpickles.
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {path}: {exc.strerror or exc}") from None
    array = load_token_array(path, data)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: token array has dtype {array.dtype}, expected integers")
    return array


class TokenFiles(Sequence):
    """A sequence of token files that loads file ``i`` when item ``i`` is read."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        return load_token_file(self.paths[i])


def _folder_files(directory: str) -> dict[str, str]:
    """``key -> path`` of the token files in one folder, checking the key rules (module docstring)."""
    files: dict[str, str] = {}
    ignored = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(TOKEN_SUFFIXES) or not os.path.isfile(path):
            ignored.append(name)
            continue
        key, ext = sample_key(name)
        if not key or "." in ext:  # the key would end at an earlier dot than the token suffix's
            stem, suffix = os.path.splitext(name)
            raise ValueError(f"{path}: sample key {stem!r} contains a dot, which tar readers take as the start of the "
                             f"extension; rename the file (e.g. {stem.replace('.', '_') or 'sample'}{suffix})")
        if key in files:
            raise ValueError(f"{directory}: two files for sample key {key!r}: {os.path.basename(files[key])} and {name}")
        files[key] = path
    if ignored:
        warnings.warn(f"{directory}: ignored {len(ignored)} entries that are not .npy/.npz files, e.g. {ignored[0]!r}",
                      UserWarning, stacklevel=3)
    return files


def read_from_dir(directory: str) -> tuple[list[str], dict[str, TokenFiles]]:
    """The sorted sample keys of ``directory/<folder>/<key>.npy|.npz`` and each folder's files in key order."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--from-dir {directory} is not a folder")
    folders = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if not folders:
        raise ValueError(f"{directory} has no modality folders (expected {directory}/<folder>/<key>.npy)")
    files = {f: _folder_files(os.path.join(directory, f)) for f in folders}
    keys = sorted(files[folders[0]])
    if not keys:
        raise ValueError(f"{os.path.join(directory, folders[0])} holds no .npy/.npz token files")
    for f in folders[1:]:
        if sorted(files[f]) != keys:
            diff = sorted(set(files[f]) ^ set(keys))[:5]
            raise ValueError(f"folder '{f}' and '{folders[0]}' hold different sample keys, e.g. {diff}")
    for key in keys:
        suffixes = {f: os.path.splitext(files[f][key])[1] for f in folders}
        if len(set(suffixes.values())) > 1:
            raise ValueError(f"sample key {key!r} is stored in mixed formats: "
                             + ", ".join(f"{f}/{key}{s}" for f, s in suffixes.items()) + "; use one format per sample")
    return keys, {f: TokenFiles([files[f][k] for k in keys]) for f in folders}


def read_stacked(items: Sequence[str]) -> dict[str, np.ndarray]:
    """``FOLDER=FILE`` items as ``{folder: stacked [N, ...] array}``."""
    samples: dict[str, np.ndarray] = {}
    for item in items:
        folder, sep, path = item.partition("=")
        if not sep or not folder or not path:
            raise ValueError(f"--stacked takes FOLDER=FILE, got {item!r}")
        if folder in samples:
            raise ValueError(f"--stacked names folder {folder!r} twice")
        samples[folder] = load_token_file(path)
    return samples
