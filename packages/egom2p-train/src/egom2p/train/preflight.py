"""Start-up checks: before the first step, every dataset's source resolves (a shard pattern expands, a data root
holds the dataset's tars), a shard opens, and the shard's folders feed every modality the dataset's domains name.

A missing bucket, a typo in a pattern, a folder given as a pattern or data that was never written then ends the
run in its first seconds with one line naming the dataset, its source and the fix, instead of tracebacks from
every rank at the first batch (or a hundred shard draws later). Only rank 0 looks (the caller broadcasts the
verdict). The sources resolve as the loader resolves them (:meth:`egom2p.data.config.DatasetConfig.shard_urls`).
"""

from __future__ import annotations

from collections.abc import Mapping

from egom2p.core.layout import expand_folders
from egom2p.core.modalities import ModalitySpec
from egom2p.core.shards import open_url
from egom2p.data.config import DatasetConfig
from egom2p.train.config import ConfigError

FIX = ("write the shards there (egom2p-data write, or egom2p-data synth --out DIR for the demo data) "
       "or point data_path (a shard pattern) or data_root (a root folder) at them")


def _open_first(url: str) -> None:
    """Open ``url`` (local or ``s3://``) and read its first byte; raises what opening raises."""
    if url.startswith("s3://"):
        from egom2p.core.s3 import open_s3  # boto3 only when a pattern is on S3

        stream = open_s3(url)
    else:
        stream = open_url(url)
    with stream:
        stream.read(1)


def check_dataset_source(key: str, dataset: DatasetConfig, specs: Mapping[str, ModalitySpec] | None = None,
                         files: bool = False) -> str | None:
    """The problem with the shards of one dataset (``key`` is its dotted source key), or None.

    The source must resolve and its first shard must open in every folder of its ``[a,b]`` list, which must feed
    every modality the dataset names (given the model's ``specs``). ``files``: a local root of the original's
    per-sample files is accepted (validation reads them).
    """
    where = f"config key '{key}': {dataset.source}"
    try:
        urls = dataset.shard_urls(specs, files=files)
    except FileNotFoundError as err:
        return f"{where}: {err}; {FIX}"
    except ValueError as err:  # a wrong pattern or root: the message says what to write instead
        return f"{where}: {err}"
    if not urls:
        return None  # per-sample files
    for folder_url in expand_folders(urls[0]).values():
        try:
            _open_first(folder_url)
        except FileNotFoundError:
            return f"{where}: {folder_url} does not exist; {FIX}"
        except (OSError, ValueError, ImportError) as err:  # denied, an outage past the retry budget, no boto3
            return f"{where}: cannot open {folder_url}: {err}"
    return None if specs is None else _unfed_modalities(where, dataset, specs, urls[0])


def _unfed_modalities(where: str, dataset: DatasetConfig, specs: Mapping[str, ModalitySpec], url: str) -> str | None:
    """The modalities of ``dataset`` that no folder of the shard ``url`` feeds, as a problem naming them and their
    folders, or None (also for a shard without a folder list: one tar per shard)."""
    present = set(expand_folders(url)) - {""}
    if not present:
        return None
    fed = {modality for folder, modality in dataset.folder_modalities(specs).items() if folder in present}
    missing = [m for m in dataset.modalities if m not in fed]
    if not missing:
        return None
    wanted = {m: specs[m].folder for m in missing if m in specs}
    return (f"{where}: no folder for {', '.join(missing)} (folder {', '.join(wanted.values()) or '?'}), which the "
            f"dataset's in_domains / out_domains name; add it to the [{','.join(sorted(present))}] list or drop it "
            "from the domains")


def check_data_sources(train: Mapping[str, DatasetConfig], val: Mapping[str, DatasetConfig],
                       specs: Mapping[str, ModalitySpec] | None = None) -> None:
    """Raise ``ConfigError`` for the first dataset (train, then val) whose shards cannot be read, or (with the
    model's modality ``specs``) whose shards lack the folder of a modality its domains name.

    ``train`` / ``val``: ``DataConfig.train`` / ``.val``; a val entry may name a root of per-sample files.
    """
    for split, datasets in (("train", train), ("val", val)):
        for name, dataset in datasets.items():
            key = f"data.{split}.datasets.{name}.{dataset.source_key}"
            problem = check_dataset_source(key, dataset, specs, files=split == "val")
            if problem is not None:
                raise ConfigError(problem, key)
