"""The one paired reader: a shard's modality folders (or a dataset's per-sample files) read together, their
members paired by sample key (:func:`egom2p.core.layout.sample_key`) under an explicit policy.

- ``union``: every key any folder holds, in the first folder's order, then the keys only later folders hold; a
  sample lacks the folders that lack its key, so a reader that needs them counts the sample as bad instead of
  never seeing it. The training and validation loaders and ``egom2p-data validate`` read this way.
- ``strict``: every folder must hold the same keys in the same order, else :class:`ShardError` naming the
  folders and the difference (:func:`key_mismatches` gives the same lines without raising).
- ``lockstep``: the folders' tars are streamed together, member by member, with flat memory; a key or a length
  that differs raises :class:`ShardError` at that member. Generate reads this way.

Every sample is ``(key, {folder: (member name, bytes)})``; the folder of a URL without a ``[a,b]`` list is ``""``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from itertools import zip_longest
from typing import IO, Literal

from egom2p.core.errors import ShardError
from egom2p.core.layout import expand_folders, sample_key
from egom2p.core.shards import TOKEN_SUFFIXES, iter_tar_members, open_url, read_tar_members

__all__ = ["PairPolicy", "PairedSample", "iter_folder_samples", "iter_shard", "key_mismatches", "pair_members", "read_shard"]

PairPolicy = Literal["union", "strict", "lockstep"]
PairedSample = tuple[str, dict[str, tuple[str, bytes]]]  # (key, {folder: (member name, bytes)})
Member = tuple[str, str, bytes]  # (key, extension, bytes): what the tar reader yields
Opener = Callable[[str], IO[bytes]]
_POLICIES = ("union", "strict", "lockstep")


def key_mismatches(keys: Mapping[str, Sequence[str]], where: str) -> list[str]:
    """One line per folder whose keys differ (in set or order) from the first folder's: the ``strict`` policy's
    complaints, e.g. ``shard.tar: folder 'rgb' vs 'cam': keys differ (6 vs 8 samples, e.g. ['k6', 'k7'])``."""
    (first, ref), *rest = [(f, list(k)) for f, k in keys.items()]
    lines = []
    for folder, own in rest:
        own = list(own)
        if own != ref:
            diff = sorted(set(ref) ^ set(own))[:3]
            what = (f"keys differ ({len(own)} vs {len(ref)} samples, e.g. {diff})" if diff
                    else "keys are in a different order")
            lines.append(f"{where}: folder '{folder}' vs '{first}': {what}")
    return lines


def _pair_keys(keys: Mapping[str, Sequence[str]], policy: PairPolicy, where: str) -> dict[str, list[str]]:
    """Key -> the folders holding it, in the policy's order (``union`` or ``strict``)."""
    if policy not in ("union", "strict"):
        raise ValueError(f"pairing policy must be one of {_POLICIES} ('lockstep' streams: iter_shard), got {policy!r}")
    if policy == "strict" and (mismatch := key_mismatches(keys, where)):
        raise ShardError(mismatch[0])
    holders: dict[str, list[str]] = {}
    for folder, folder_keys in keys.items():
        for key in folder_keys:
            holders.setdefault(key, []).append(folder)
    return holders


def pair_members(per_folder: Mapping[str, Sequence[Member]], policy: PairPolicy = "union", where: str = "") -> list[PairedSample]:
    """Pair the members already read from one shard's folders (folder -> ``[(key, ext, bytes)]``) by key."""
    holders = _pair_keys({f: [m[0] for m in members] for f, members in per_folder.items()}, policy, where)
    by_key = {f: {key: (f"{key}.{ext}", data) for key, ext, data in members} for f, members in per_folder.items()}
    return [(key, {f: by_key[f][key] for f in folders}) for key, folders in holders.items()]


def _tars(shard: str | Mapping[str, str]) -> dict[str, str]:
    """Folder -> tar URL of a shard given as a URL (``[a,b]`` list or one tar) or as that mapping."""
    return expand_folders(shard) if isinstance(shard, str) else dict(shard)


def _wanted(members: Iterable[Member], suffixes: Sequence[str] | None) -> Iterator[Member]:
    return (m for m in members if suffixes is None or f"{m[0]}.{m[1]}".endswith(tuple(suffixes)))


def read_shard(shard: str | Mapping[str, str], opener: Opener = open_url, policy: PairPolicy = "union",
               suffixes: Sequence[str] | None = None) -> list[PairedSample]:
    """Read every folder of a shard (a URL with a ``[a,b]`` list, one tar, or folder -> tar URL) and pair the members
    by key under ``policy`` (module docstring); ``suffixes`` keeps only the members whose name ends in one of
    them (None: all). Raises :class:`ShardError` for an unreadable tar (and, ``strict``, differing keys)."""
    if policy == "lockstep":
        return list(iter_shard(shard, opener, policy, suffixes))
    tars = _tars(shard)
    where = shard if isinstance(shard, str) else " + ".join(tars.values())
    per_folder = {f: list(_wanted(read_tar_members(url, opener), suffixes)) for f, url in tars.items()}
    return pair_members(per_folder, policy, where)


def iter_shard(shard: str | Mapping[str, str], opener: Opener = open_url, policy: PairPolicy = "lockstep",
               suffixes: Sequence[str] | None = None) -> Iterator[PairedSample]:
    """The samples of :func:`read_shard`, streamed: with ``lockstep`` one member of each folder's tar at a time (the
    tars must hold the same keys in the same order: a differing key or length raises :class:`ShardError` naming
    every tar of the shard); other policies read the tars whole first."""
    if policy != "lockstep":
        yield from read_shard(shard, opener, policy, suffixes)
        return
    tars = _tars(shard)
    folders = list(tars)
    with ExitStack() as stack:
        streams = [_wanted(iter_tar_members(stack.enter_context(opener(tars[f])), tars[f]), suffixes) for f in folders]
        for items in zip_longest(*streams):
            if any(item is None for item in items):
                ended = [tars[f] for f, item in zip(folders, items) if item is None]
                raise ShardError(f"shards differ in length: {ended} ended before {list(tars.values())}")
            keys = [key for key, _, _ in items]
            if len(set(keys)) != 1:
                found = ", ".join(f"{tars[f]}: {key!r}" for f, key in zip(folders, keys))
                raise ShardError(f"sample keys differ across modality shards: {found}")
            yield keys[0], {f: (f"{key}.{ext}", data) for f, (key, ext, data) in zip(folders, items)}


def iter_folder_samples(root: str | os.PathLike, dataset: str, folders: Iterable[str],
                        policy: PairPolicy = "union") -> Iterator[PairedSample]:
    """The original's per-file layout ``root/<folder>/<dataset>/<key>.npz|.npy``, paired by key under ``policy``
    (``union`` or ``strict``), each folder's files in sorted order; files are read as their sample is yielded.

    Folders that do not exist are left out (a dataset may lack a modality). Raises ``FileNotFoundError`` when no
    folder exists.
    """
    folders = list(folders)
    files: dict[str, dict[str, str]] = {}
    for folder in folders:
        directory = os.path.join(os.fspath(root), folder, dataset)
        if os.path.isdir(directory):
            names = sorted(n for n in os.listdir(directory) if n.endswith(TOKEN_SUFFIXES))
            files[folder] = {sample_key(n)[0]: os.path.join(directory, n) for n in names}
    if not files:
        raise FileNotFoundError(f"no token folders {os.fspath(root)}/<{'|'.join(folders)}>/{dataset}/")
    where = os.path.join(os.fspath(root), "<folder>", dataset)
    for key, holding in _pair_keys({f: list(paths) for f, paths in files.items()}, policy, where).items():
        sample = {}
        for folder in holding:
            with open(files[folder][key], "rb") as f:
                sample[folder] = (os.path.basename(files[folder][key]), f.read())
        yield key, sample
