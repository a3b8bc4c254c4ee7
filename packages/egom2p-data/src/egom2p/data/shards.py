"""What the data package adds to the shard format of :mod:`egom2p.core.shards`: S3 opening and writing.

The layout, pattern grammar, codec and readers are core's (SPEC 1.6):
``root/<folder>/<dataset>/shard-000000.tar``, one tar per modality folder, the same keys in the same
order in every folder's tar, read with patterns like ``root/[rgb,depth,cam]/egogen/shard-{000000..000003}.tar``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import IO

import numpy as np
from egom2p.core.shards import encode_tokens, open_local, write_tar

__all__ = ["open_url", "write_shards"]


def open_url(url: str) -> IO[bytes]:
    """Open a local path, ``file://`` URL or ``s3://bucket/key`` URL for binary streaming reads.

    Pass it as the ``opener`` of :func:`egom2p.core.shards.read_shard` / ``read_tar_members``.
    """
    if url.startswith("s3://"):
        from egom2p.core.s3 import open_s3  # boto3 is the optional [s3] extra

        return open_s3(url)
    return open_local(url)


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
    name the samples; they must be unique and contain no dot. Arrays keep their integer dtype. Returns
    the pattern that reads the shards back, e.g. ``root/[cam,rgb]/demo/shard-{000000..000002}.tar``.
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
            members = ((f"{keys[i]}.npz", encode_tokens(np.asarray(arrays[i]))) for i in range(lo, hi))
            write_tar(os.path.join(directory, f"shard-{s:06d}.tar"), members)
    folder_part = "[" + ",".join(sorted(samples)) + "]"
    shard_part = "shard-000000.tar" if num_shards == 1 else f"shard-{{000000..{num_shards - 1:06d}}}.tar"
    return os.path.join(os.fspath(root), folder_part, dataset, *([subdir] if subdir else []), shard_part)
