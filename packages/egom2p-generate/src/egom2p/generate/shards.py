"""A small reader of pre-tokenised evaluation data, independent of egom2p-data.

Layouts (SPEC 1.6): tar shards `root/<folder>/<dataset>/shard-*.tar` with members `<key>.npz`
(array `arr_0`) or `<key>.npy`, one tar per modality folder with the same keys in the same order;
or folders of per-sample files `root/<folder>/<dataset>/<file>.npz`, paired across modalities by
sorted file name. Patterns use the original's notation: a bracket list of folders and brace
ranges/lists, e.g. `data/demo/val/[cam,depth,gaze,rgb]/synth_full/shard-{000000..000001}.tar`.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

_BRACE = re.compile(r"\{([^{}]*)\}")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def brace_expand(pattern: str) -> list[str]:
    """Expand `{000000..000003}` (zero-padded numeric range) and `{a,b}` (alternatives), left to right."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[: match.start()], pattern[match.end() :]
    numeric = _RANGE.match(body)
    if numeric:
        lo, hi = numeric.groups()
        if int(hi) < int(lo):
            raise ValueError(f"empty brace range {{{body}}} in {pattern!r}")
        width = len(lo)
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    return [expanded for option in options for expanded in brace_expand(head + option + tail)]


def expand_data_pattern(pattern: str) -> dict[str, list[str]]:
    """Expand a shard pattern to `{folder: [shard paths]}`; every folder gets the same shard list.

    The pattern must hold exactly one `[a,b,...]` list naming the modality folders (a single
    folder is written `[cam]`): the folder tells which modality a shard holds.
    """
    brackets = _BRACKET.findall(pattern)
    if len(brackets) != 1:
        raise ValueError(
            f"data pattern {pattern!r} must contain exactly one [folder,...] list, "
            "e.g. 'data/demo/[rgb,cam]/val/shard-{000000..000001}.tar'"
        )
    folders = [f.strip() for f in brackets[0].split(",") if f.strip()]
    return {folder: brace_expand(_BRACKET.sub(folder, pattern, count=1)) for folder in folders}


def dataset_sources(root: str | Path, dataset: str, folders: Sequence[str]) -> dict[str, list[str]]:
    """`{folder: files}` for `root/<folder>/<dataset>/`: its `*.tar` shards, else its `*.npz`/`*.npy` files.

    Folders that do not exist under root are left out (a dataset may lack a modality).
    """
    sources: dict[str, list[str]] = {}
    for folder in folders:
        directory = Path(root) / folder / dataset
        if not directory.is_dir():
            continue
        files = sorted(directory.glob("*.tar")) or sorted(
            p for p in directory.iterdir() if p.suffix in (".npz", ".npy")
        )
        if files:
            sources[folder] = [str(p) for p in files]
    if not sources:
        raise FileNotFoundError(f"no shards or sample files under {Path(root)}/<{'|'.join(folders)}>/{dataset}/")
    return sources


def _load_array(name: str, data: bytes) -> np.ndarray:
    with io.BytesIO(data) as buffer:
        if name.endswith(".npz"):
            with np.load(buffer) as archive:
                if "arr_0" not in archive:
                    raise ValueError(f"{name}: npz without 'arr_0' (has {list(archive.keys())})")
                return archive["arr_0"]
        return np.load(buffer)


def _tar_samples(path: str) -> Iterator[tuple[str, np.ndarray]]:
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith((".npz", ".npy")):
                continue
            key = Path(member.name).name.split(".", 1)[0]
            handle = tar.extractfile(member)
            if handle is None:
                continue
            yield key, _load_array(member.name, handle.read())


def _file_samples(paths: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    for path in paths:
        yield Path(path).name.split(".", 1)[0], _load_array(path, Path(path).read_bytes())


def iter_samples(sources: dict[str, list[str]]) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield `(key, {folder: array})` walking every folder's files in lockstep.

    Tar shards must hold the same keys in the same order (a mismatch raises, naming both);
    per-sample files are paired by sorted order, as the original's validation reader does.
    """
    for path_list in sources.values():
        for path in path_list:
            if not Path(path).is_file():
                raise FileNotFoundError(f"data file not found: {path}")
    folders = list(sources)
    counts = {folder: len(paths) for folder, paths in sources.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"modality folders have different numbers of files: {counts}")
    for file_index in range(counts[folders[0]]):
        paths = {folder: sources[folder][file_index] for folder in folders}
        streams = {
            folder: _tar_samples(path) if path.endswith(".tar") else _file_samples([path])
            for folder, path in paths.items()
        }
        yield from _zip_streams(streams, paths, strict_keys=paths[folders[0]].endswith(".tar"))


def _zip_streams(streams, paths, strict_keys: bool):
    sentinel = object()
    while True:
        items = {folder: next(stream, sentinel) for folder, stream in streams.items()}
        ended = [folder for folder, item in items.items() if item is sentinel]
        if ended:
            if len(ended) != len(items):
                raise ValueError(f"shards differ in length: {[paths[f] for f in ended]} ended before the others")
            return
        keys = {folder: item[0] for folder, item in items.items()}
        if strict_keys and len(set(keys.values())) != 1:
            raise ValueError(f"sample keys differ across modality shards: {keys} (files {list(paths.values())})")
        first = next(iter(keys.values()))
        yield first, {folder: item[1] for folder, item in items.items()}
