"""What the data package adds to the shard format of :mod:`egom2p.core.shards`: writing, and the one pattern
string of a dataset's shards under a root folder (finding them is core's ``resolve_source``, opening them,
local or S3, core's ``open_url``).

The layout and pattern grammar (:mod:`egom2p.core.layout`), codec and readers are core's (docs/original-behaviour.md#shard-layout):
``root/<folder>/<dataset>/shard-000000.tar``, one tar per modality folder, the same keys in the same
order in every folder's tar, read with patterns like ``root/[rgb,depth,cam]/egogen/shard-{000000..000003}.tar``.

Sample keys: a tar member's key is its name up to the FIRST dot (webdataset's rule, and core's
:func:`~egom2p.core.layout.sample_key`), so a key containing a dot would be read back as a different
sample. :func:`write_shards` therefore refuses keys with a dot (``egom2p-data write`` names the file to
rename) instead of encoding them: an encoded key would not match the user's file names anywhere else.

What happens to shards already there (refused, replaced, appended to) and how a write stays whole when it fails
is core's rule, :mod:`egom2p.core.dataset_write`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from egom2p.core.dataset_write import WriteMode, begin_write, shard_name
from egom2p.core.layout import check_name
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.core.sources import resolve_source
from tqdm import tqdm

__all__ = ["dataset_pattern", "write_shards"]

def _inside(root: str, path: str) -> str:
    """``path``, after checking that it stays inside ``root`` (the names were checked; this is the backstop)."""
    root_abs, path_abs = os.path.abspath(root), os.path.abspath(path)
    if os.path.commonpath([root_abs, path_abs]) != root_abs:
        raise ValueError(f"output path {path} is outside the output folder {root}")
    return path


def write_shards(
    root: str | os.PathLike,
    dataset: str,
    samples: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    keys: Sequence[str] | None = None,
    samples_per_shard: int = 1000,
    subdir: str | None = None,
    progress: bool = False,
    mode: WriteMode = "new",
) -> str:
    """Write token arrays as shards ``root/<folder>/<dataset>[/<subdir>]/shard-%06d.tar``.

    ``samples`` maps a folder name (``rgb``, ``cam``, ...) to either one stacked array ``[N, *shape]`` or a
    sequence of N per-sample arrays (read one at a time: a lazy sequence keeps memory flat); every folder
    needs the same N. ``keys`` (default ``sample-%08d``) name the samples; they must be unique and contain no
    dot (see the module docstring). Folder, dataset and subdir names must keep every path inside ``root``.
    Arrays keep their integer dtype. ``progress`` shows a tqdm bar over the tars (on a terminal).

    ``mode`` (see :mod:`egom2p.core.dataset_write`): ``new`` refuses folders that hold shards, ``overwrite``
    replaces them, ``append`` numbers the new shards after the last one and refuses a key already there (default
    keys continue after the existing samples' count). The shards are staged aside and moved in when all are
    written: a failed write leaves the dataset as it was. Returns the pattern that reads the dataset's shards back,
    e.g. ``root/[cam,rgb]/demo/shard-{000000..000002}.tar``.
    """
    if not samples:
        raise ValueError("write_shards: no modality folders given")
    if samples_per_shard <= 0:
        raise ValueError(f"write_shards: samples_per_shard must be positive, got {samples_per_shard}")
    check_name(dataset, "dataset")
    if subdir:
        check_name(subdir, "subdir", allow_nested=True)
    for folder in samples:
        check_name(folder, "folder")
    counts = {folder: len(arrays) for folder, arrays in samples.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"write_shards: folders hold different sample counts {counts}")
    n = next(iter(counts.values()))
    if n == 0:
        raise ValueError("write_shards: no samples to write")
    if keys is not None:
        keys = list(keys)
        if len(keys) != n or len(set(keys)) != n:
            raise ValueError(f"write_shards: need {n} unique keys, got {len(keys)} ({len(set(keys))} unique)")
        bad = [k for k in keys if "." in k or "/" in k or not k]
        if bad:
            raise ValueError(f"write_shards: sample keys may not be empty or contain '.' or '/': {bad[:3]}")
    root = os.fspath(root)
    for folder in samples:
        _inside(root, os.path.join(root, folder, dataset, *([subdir] if subdir else [])))
    write = begin_write(root, dataset, samples, subdir=subdir, mode=mode)
    existing = write.existing_keys() if mode == "append" else {}
    if keys is None:  # appended default keys continue after the existing samples
        keys = [f"sample-{i:08d}" for i in range(len(existing), len(existing) + n)]
    repeated = next((k for k in keys if k in existing), None)
    if repeated is not None:
        raise ValueError(f"--append: sample key {repeated!r} is already in {existing[repeated]}")
    num_shards = -(-n // samples_per_shard)
    bar = tqdm(total=num_shards * len(samples), unit="tar", desc="writing shards", disable=None if progress else True)
    try:
        with bar:
            for folder, arrays in samples.items():
                for s in range(num_shards):
                    lo, hi = s * samples_per_shard, min(n, (s + 1) * samples_per_shard)
                    members = ((f"{keys[i]}.npz", encode_tokens(np.asarray(arrays[i]))) for i in range(lo, hi))
                    write_tar(write.staging(folder) / shard_name(write.first_index + s), members)
                    bar.update()
    except BaseException:
        write.abort()
        raise
    write.commit()
    last = write.first_index + num_shards - 1
    folder_part = "[" + ",".join(sorted(samples)) + "]"
    shard_part = shard_name(0) if last == 0 else f"shard-{{000000..{last:06d}}}.tar"
    return os.path.join(root, folder_part, dataset, *([subdir] if subdir else []), shard_part)


def dataset_pattern(root: str | os.PathLike, dataset: str, folders: Sequence[str] | None = None) -> str:
    """One shard pattern for the tars core's :func:`~egom2p.core.sources.resolve_source` finds under ``root``
    (union policy; ``folders`` default to every folder of a local root that holds ``<dataset>/``), e.g.
    ``root/[cam,rgb]/egogen/{shard-000000.tar,shard-000001.tar}``.

    A tar one folder lacks shows up as a missing file. Raises ``FileNotFoundError`` when no tar is found,
    ``ValueError`` for a name that cannot stand in a pattern.
    """
    root = os.fspath(root)
    urls = resolve_source(data_root=root, dataset=check_name(dataset, "dataset"), folders=folders, policy="union")
    # every URL starts root/[folders]/dataset/: the shared folder is the pattern's head, the rest its names
    head = os.path.commonprefix(urls).rpartition("/")[0] + "/"
    names = [check_name(url[len(head):], "shard file", allow_nested=True) for url in urls]
    return head + (names[0] if len(names) == 1 else "{" + ",".join(names) + "}")
