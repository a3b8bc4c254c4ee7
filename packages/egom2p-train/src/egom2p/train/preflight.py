"""Start-up checks: before the first step, every dataset's shard pattern resolves, a shard opens, and the
pattern's folders feed every modality the dataset's domains name.

A missing bucket, a typo in a pattern or data that was never written then ends the run in its first
seconds with one line naming the dataset, the pattern and the fix, instead of tracebacks from every
rank at the first batch. Only rank 0 looks (the caller broadcasts the verdict).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from egom2p.core.modalities import ModalitySpec
from egom2p.core.shards import expand_folders, expand_shard_pattern, open_url
from egom2p.data.loader import folder_modalities
from egom2p.train.config import ConfigError

FIX = ("write the shards there (egom2p-data write, or egom2p-data synth --out DIR for the demo data) "
       "or point data_path at them")


def _open_first(url: str) -> None:
    """Open ``url`` (local or ``s3://``) and read its first byte; raises what opening raises."""
    if url.startswith("s3://"):
        from egom2p.core.s3 import open_s3  # boto3 only when a pattern is on S3

        stream = open_s3(url)
    else:
        stream = open_url(url)
    with stream:
        stream.read(1)


def check_dataset_source(key: str, pattern: str) -> str | None:
    """The problem with the shards of one dataset (``key`` is its dotted config key), or None.

    A ``.tar`` pattern must expand and its first shard must open in every folder of its ``[a,b]``
    list; another path (the original's per-file validation layout) must be a local directory.
    """
    where = f"config key '{key}': {pattern}"
    if ".tar" not in pattern:
        if pattern.startswith("s3://") or os.path.isdir(pattern):
            return None
        return f"{where}: no such directory; {FIX}"
    try:
        urls = expand_shard_pattern(pattern)
    except ValueError as err:
        return f"{where}: the pattern does not expand ({err}); fix the brace ranges"
    if not urls:
        return f"{where}: the pattern names no shard; fix the brace ranges"
    for folder_url in expand_folders(urls[0]).values():
        try:
            _open_first(folder_url)
        except FileNotFoundError:
            return f"{where}: {folder_url} does not exist; {FIX}"
        except (OSError, ValueError, ImportError) as err:  # denied, an outage past the retry budget, no boto3
            return f"{where}: cannot open {folder_url}: {err}"
    return None


def check_dataset_folders(key: str, dataset: Any, specs: Mapping[str, ModalitySpec]) -> str | None:
    """The modalities of ``dataset`` (a ``DatasetConfig``) that no folder of its ``[a,b]`` pattern feeds, as a
    problem naming them and their folders, or None (also for a pattern without a folder list: one tar per shard)."""
    pattern = str(dataset.data_path)
    if ".tar" not in pattern:
        return None
    present = set(expand_folders(expand_shard_pattern(pattern)[0])) - {""}
    if not present:
        return None
    fed = {modality for folder, modality in folder_modalities(dataset, specs).items() if folder in present}
    missing = [m for m in dataset.modalities if m not in fed]
    if not missing:
        return None
    wanted = {m: specs[m].folder for m in missing if m in specs}
    return (f"config key '{key}': {pattern}: no folder for {', '.join(missing)} (folder "
            f"{', '.join(wanted.values()) or '?'}), which the dataset's in_domains / out_domains name; add it to the "
            f"[{','.join(sorted(present))}] list or drop it from the domains")


def check_data_sources(train: Mapping[str, Any], val: Mapping[str, Any],
                       specs: Mapping[str, ModalitySpec] | None = None) -> None:
    """Raise ``ConfigError`` for the first dataset (train, then val) whose shards cannot be read, or (with the
    model's modality ``specs``) whose pattern lacks the folder of a modality its domains name.

    ``train`` / ``val``: dataset name -> an object with ``data_path`` (``DataConfig.train`` / ``.val``).
    """
    for split, datasets in (("train", train), ("val", val)):
        for name, dataset in datasets.items():
            key = f"data.{split}.datasets.{name}.data_path"
            problem = check_dataset_source(key, str(dataset.data_path))
            if problem is None and specs is not None:
                problem = check_dataset_folders(key, dataset, specs)
            if problem is not None:
                raise ConfigError(problem, key)
