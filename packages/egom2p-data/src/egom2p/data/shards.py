"""Token shards on disk or S3: the original's layout, writing and reading.

Layout (SPEC 1.6): ``root/<folder>/<dataset>/shard-000000.tar``, one tar per modality folder, members
``<key>.npz`` (one array ``arr_0``, written with ``np.savez_compressed``) or ``<key>.npy``, identical keys in
the same order in every modality's tar. Paths use brace ranges and bracketed folder lists (SPEC 5.2):
``root/[rgb,depth,cam]/egogen/shard-{000000..000003}.tar``.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from typing import IO

import numpy as np

__all__ = [
    "ShardError",
    "expand_shard_pattern",
    "expand_folders",
    "open_url",
    "decode_tokens",
    "read_tar_members",
    "read_shard",
    "write_shards",
]

_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


class ShardError(RuntimeError):
    """A shard cannot be read (missing, truncated, corrupt or inconsistent across modalities)."""


def expand_shard_pattern(pattern: str) -> list[str]:
    """Expand brace ranges (``{000000..000003}``) with webdataset, keeping ``[a,b]`` folder lists intact."""
    from webdataset.shardlists import expand_urls

    urls = expand_urls(pattern)
    if not urls:
        raise ValueError(f"shard pattern {pattern!r} expands to no shard")
    return list(urls)


def expand_folders(url: str) -> dict[str, str]:
    """One URL per modality folder: ``a/[rgb,cam]/x.tar`` -> ``{"rgb": "a/rgb/x.tar", "cam": "a/cam/x.tar"}``.

    A URL without brackets is one tar returned under the key ``""`` (its folder is not guessed).
    """
    match = _BRACKETS.search(url)
    if match is None:
        return {"": url}
    folders = [f.strip() for f in match.group(1).split(",") if f.strip()]
    if not folders:
        raise ValueError(f"empty folder list [] in shard URL {url!r}")
    return {f: url[: match.start()] + f + url[match.end() :] for f in folders}


def open_url(url: str) -> IO[bytes]:
    """Open a local path or ``s3://bucket/key`` URL for binary streaming reads."""
    if url.startswith("s3://"):
        from egom2p.data.s3 import open_s3

        return open_s3(url)
    if url.startswith("file://"):
        url = url[len("file://") :]
    return open(url, "rb")


def decode_tokens(name: str, data: bytes) -> np.ndarray:
    """Decode one member as SPEC 1.6 does: ``.npz`` -> its ``arr_0``, ``.npy`` -> the array.

    Tokens are cast to int64 here, the single place where dtypes are unified (SPEC quirk 12).
    """
    buffer = io.BytesIO(data)
    if name.endswith(".npz"):
        with np.load(buffer, allow_pickle=False) as archive:
            if "arr_0" not in archive.files:
                raise ValueError(f"{name}: .npz holds {archive.files}, expected 'arr_0'")
            array = archive["arr_0"]
    elif name.endswith(".npy"):
        array = np.load(buffer, allow_pickle=False)
    else:
        raise ValueError(f"{name}: unsupported token file type (expected .npz or .npy)")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: token array has dtype {array.dtype}, expected integers")
    return array.astype(np.int64, copy=False)


def _sample_key(member: str) -> tuple[str, str]:
    base = member.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext


def read_tar_members(url: str) -> list[tuple[str, str, bytes]]:
    """All regular members of one tar as ``(key, extension, bytes)`` in tar order.

    Raises :class:`ShardError` naming the URL when it is missing, truncated or corrupt.
    """
    try:
        with open_url(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            members = []
            for info in tar:
                if not info.isfile():
                    continue
                handle = tar.extractfile(info)
                data = handle.read() if handle is not None else b""
                if len(data) != info.size:
                    raise ShardError(f"{url}: member {info.name} is truncated")
                key, ext = _sample_key(info.name)
                members.append((key, ext, data))
            return members
    except ShardError:
        raise
    except Exception as exc:  # I/O, tar and network errors alike (e.g. an S3 stream dropped mid-read)
        raise ShardError(f"cannot read shard {url}: {type(exc).__name__}: {exc}") from exc


def read_shard(url: str, folder_to_modality: Mapping[str, str] | None = None) -> list[tuple[str, dict[str, tuple[str, bytes]]]]:
    """Read a (possibly multi-folder) shard URL into ``[(key, {modality: (member_name, bytes)})]``.

    Samples follow the first folder's member order; a key absent from another folder's tar leaves that
    modality out of the sample (the loader then counts the sample as bad). Folder names are renamed to
    modality names with ``folder_to_modality`` when given.
    """
    per_folder = expand_folders(url)
    order: list[str] = []
    samples: dict[str, dict[str, tuple[str, bytes]]] = {}
    for i, (folder, folder_url) in enumerate(per_folder.items()):
        name = (folder_to_modality or {}).get(folder, folder)
        for key, ext, data in read_tar_members(folder_url):
            if key not in samples:
                if i > 0:
                    continue  # a key only some later folder has cannot form a full sample
                samples[key] = {}
                order.append(key)
            samples[key][name] = (f"{key}.{ext}", data)
    return [(key, samples[key]) for key in order]


def _write_tar(path: str, members: Iterable[tuple[str, bytes]]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0  # reproducible bytes for identical inputs
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def _npz_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, array)
    return buffer.getvalue()


def write_shards(
    root: str | os.PathLike,
    dataset: str,
    samples: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    keys: Sequence[str] | None = None,
    samples_per_shard: int = 1000,
    subdir: str | None = None,
) -> str:
    """Write token arrays as shards ``root/<folder>/<dataset>[/<subdir>]/shard-%06d.tar``.

    ``samples`` maps a folder name (``rgb``, ``cam``, ...) to either one stacked array ``[N, *shape]`` or a
    sequence of N per-sample arrays; every folder needs the same N. ``keys`` (default ``sample-%08d``)
    name the samples; they must be unique and contain no dot. Returns the brace pattern that reads the
    shards back, e.g. ``root/[cam,rgb]/demo/shard-{000000..000002}.tar``.
    """
    if not samples:
        raise ValueError("write_shards: no modality folders given")
    if samples_per_shard <= 0:
        raise ValueError(f"write_shards: samples_per_shard must be positive, got {samples_per_shard}")
    counts = {folder: len(arrays) for folder, arrays in samples.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"write_shards: folders hold different sample counts {counts}")
    n = next(iter(counts.values()))
    if n == 0:
        raise ValueError("write_shards: no samples to write")
    keys = [f"sample-{i:08d}" for i in range(n)] if keys is None else list(keys)
    if len(keys) != n or len(set(keys)) != n:
        raise ValueError(f"write_shards: need {n} unique keys, got {len(keys)} ({len(set(keys))} unique)")
    bad = [k for k in keys if "." in k or "/" in k or not k]
    if bad:
        raise ValueError(f"write_shards: sample keys may not be empty or contain '.' or '/': {bad[:3]}")
    num_shards = -(-n // samples_per_shard)
    for folder, arrays in samples.items():
        directory = os.path.join(os.fspath(root), folder, dataset, *([subdir] if subdir else []))
        for s in range(num_shards):
            lo, hi = s * samples_per_shard, min(n, (s + 1) * samples_per_shard)
            members = ((f"{keys[i]}.npz", _npz_bytes(np.asarray(arrays[i]))) for i in range(lo, hi))
            _write_tar(os.path.join(directory, f"shard-{s:06d}.tar"), members)
    folders = sorted(samples)
    folder_part = "[" + ",".join(folders) + "]"
    shard_part = "shard-000000.tar" if num_shards == 1 else f"shard-{{000000..{num_shards - 1:06d}}}.tar"
    return os.path.join(os.fspath(root), folder_part, dataset, *([subdir] if subdir else []), shard_part)
