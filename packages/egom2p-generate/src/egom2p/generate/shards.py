"""Evaluation samples from pre-tokenised data, read with the one shard format of ``egom2p.core.shards``.

Two layouts (docs/original-behaviour.md#shard-layout): tar shards ``root/<folder>/<dataset>/shard-*.tar``, one tar per modality folder holding
the same ``<key>.npz|.npy`` members in the same order; or folders of per-sample files
``root/<folder>/<dataset>/<key>.npz``, paired across folders by key. ``data`` is a shard pattern or a root plus a
dataset name, told apart and resolved by core's :func:`~egom2p.core.sources.resolve_source` (under a root it finds
the tars at any depth). A shard pattern holds exactly one ``[folder,...]`` list and brace ranges, e.g.
``data/demo/val/[cam,depth,gaze,rgb]/synth_full/shard-{000000..000001}.tar``. Patterns and roots may name
``s3://bucket/...`` URLs (the ``[s3]`` extra); per-sample files are read from a local root only.

Batch inference writes its outputs "in the same layout": :class:`DataShard` knows where the tar of
another modality folder goes under an output root (``root/<folder>/<dataset>/shard-000000.tar``). The folders
in which a pattern's shards differ are kept (``in/{a,b}/[rgb]/shard-0.tar`` -> ``root/a/depth/shard-0.tar`` and
``root/b/depth/shard-0.tar``), so no two shards share an output; a path that would leave the root is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from egom2p.core.layout import expand_folders
from egom2p.core.pairing import iter_folder_samples, iter_shard
from egom2p.core.shards import TOKEN_SUFFIXES, decode_tokens
from egom2p.core.sources import is_shard_pattern, resolve_source

Shard = dict[str, str]  # folder -> tar path, one modality folder each
KeyedTokens = tuple[str, dict[str, np.ndarray]]  # (key, folder -> int64 token array)


def expand_data_pattern(pattern: str) -> list[Shard]:
    """Expand a shard pattern into one ``{folder: tar path}`` per shard, in pattern order.

    The pattern must hold exactly one ``[a,b,...]`` list naming the modality folders (a single
    folder is written ``[cam]``): the folder tells which modality a tar holds.
    """
    return _pattern_shards(pattern)[1]


def _pattern_shards(pattern: str) -> tuple[list[str], list[Shard]]:
    """The shard URLs of ``pattern`` (resolved once) and each one's ``{folder: tar path}``."""
    urls = resolve_source(data_path=pattern)
    shards = [expand_folders(url) for url in urls]
    if "" in shards[0]:
        raise ValueError(
            f"data pattern {pattern!r} must contain exactly one [folder,...] list, "
            "e.g. 'data/demo/val/[cam,rgb]/synth_full/shard-{000000..000001}.tar'"
        )
    return urls, shards


@dataclass(frozen=True)
class DataShard:
    """One shard: a tar per modality folder, and the shard's place in the layout.

    The tar of folder ``f`` is ``rel + head + f + tail`` relative to the data root, e.g. rel ``""``, head
    ``""`` and tail ``"/val/shard-000000.tar"``; ``rel`` holds the folders in which the shards of one pattern
    differ before the folder list (``"a/"`` for ``in/{a,b}/[rgb]/...``). :meth:`output_path` puts another
    folder's tar in the same place under another root.
    """

    tars: dict[str, str]  # folder -> tar URL
    head: str
    tail: str
    rel: str = ""

    def output_path(self, root: str | os.PathLike, folder: str) -> str:
        """Where folder ``folder``'s tar of this shard goes under ``root`` (a local directory).

        Raises ``ValueError`` naming the shard when the path would leave ``root``: a ``..`` in the shard's
        path, or a symbolic link on the way that leads outside ``root``.
        """
        relative = f"{self.rel}{self.head}{folder}{self.tail}".lstrip("/")
        if ".." in relative.split("/"):
            raise ValueError(f"{self.tars[next(iter(self.tars))]}: its output {relative!r} would leave the output "
                             f"root {os.fspath(root)} ('..' in the shard's path)")
        path = os.path.join(os.fspath(root), relative)
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            raise ValueError(f"{path}: a symbolic link on the way leads outside the output root {os.fspath(root)} "
                             f"(to {os.path.realpath(path)})")
        return path


def list_data_shards(data: str | os.PathLike, folders: Sequence[str], dataset: str | None = None) -> list[DataShard]:
    """The tar shards of a shard pattern, or of ``root`` + ``dataset`` (see :func:`iter_samples`).

    Raises ``ValueError`` for a pattern naming unknown folders, a root without ``dataset``, or a dataset stored as
    per-sample files instead of tars; ``FileNotFoundError`` when a root holds no tars of ``dataset``;
    ``ShardError`` when its folders hold different shard names (core's strict policy).
    """
    text = os.fspath(data)
    if is_shard_pattern(text):
        urls, shards = _pattern_shards(text)
        unknown = sorted(set(shards[0]) - set(folders))
        if unknown:
            raise ValueError(f"data folders {unknown} in {text!r} match no modality; known folders: {sorted(folders)}")
        return [_data_shard(url, tars, rel) for url, tars, rel in zip(urls, shards, _differing_folders(urls))]
    if dataset is None:
        raise ValueError(f"data {text!r} is a root, not a shard pattern (.../shard-{{000000..000009}}.tar): also give "
                         "the dataset name")
    urls = resolve_source(data_root=text, dataset=dataset, folders=folders, policy="strict")
    return [_data_shard(url, expand_folders(url)) for url in urls]


def _data_shard(url: str, tars: Shard, rel: str = "") -> DataShard:
    """The :class:`DataShard` of one shard URL ``.../head[a,b]tail`` whose tars are ``tars``."""
    before, _, rest = url.partition("[")
    return DataShard(tars, before.rsplit("/", 1)[-1], rest.partition("]")[2], rel)


def _differing_folders(urls: Sequence[str]) -> list[str]:
    """Per shard URL, the folders before its ``[...]`` list below the folders all of ``urls`` share (``"a/"``)."""
    parts = [[p for p in url.partition("[")[0].split("/")[:-1] if p not in ("", ".")] for url in urls]
    shared = 0
    while all(len(p) > shared and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    return ["".join(f"{p}/" for p in path[shared:]) for path in parts]


def iter_shard_samples(shards: Iterable[Mapping[str, str]]) -> Iterator[KeyedTokens]:
    """Stream ``(key, {folder: tokens})`` from each shard's tars in lockstep (core's paired reader,
    :func:`egom2p.core.pairing.iter_shard`); members other than token files are ignored.

    The tars of one shard must hold the same keys in the same order: a differing key or length
    raises ``ShardError`` naming every tar of the shard.
    """
    for shard in shards:
        for key, members in iter_shard(shard, policy="lockstep", suffixes=TOKEN_SUFFIXES):
            yield key, {f: decode_tokens(f"{shard[f]}:{name}", data) for f, (name, data) in members.items()}


def iter_file_samples(root: str | os.PathLike, dataset: str, folders: Sequence[str]) -> Iterator[KeyedTokens]:
    """``(key, {folder: tokens})`` from per-sample files ``root/<folder>/<dataset>/<key>.npz``, paired by key with
    core's ``union`` policy (:func:`egom2p.core.pairing.iter_folder_samples`).

    A folder lacking a key is left out of that sample. Raises ``FileNotFoundError`` when no folder exists.
    """
    for key, files in iter_folder_samples(root, dataset, folders, policy="union"):
        yield key, {
            folder: decode_tokens(os.path.join(os.fspath(root), folder, dataset, name), data)
            for folder, (name, data) in files.items()
        }


def iter_samples(data: str | os.PathLike, folders: Sequence[str], dataset: str | None = None) -> Iterator[KeyedTokens]:
    """Samples of a shard pattern (``data`` holds a ``[folder,...]`` list) or of a ``root`` + ``dataset``, local
    or ``s3://``.

    ``folders`` are the known modality folders: a pattern may name only these, and under a root
    these are looked for. Under a root, a dataset's tar shards are read if it has any (folders holding
    different shard names raise ``ShardError``), else (a local root) its per-sample files.
    """
    text = os.fspath(data)
    if is_shard_pattern(text) or dataset is None:
        return iter_shard_samples(shard.tars for shard in list_data_shards(text, folders, dataset))
    urls = resolve_source(data_root=text, dataset=dataset, folders=folders, policy="strict", files=True)
    return iter_shard_samples(map(expand_folders, urls)) if urls else iter_file_samples(text, dataset, folders)
