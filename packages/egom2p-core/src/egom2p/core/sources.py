"""Where a dataset's shards are: the one rule that turns a data source into shard URLs.

A dataset names its shards in one of two ways (the two keys of a data config entry):

- ``data_path``: a shard pattern, e.g. ``s3://bucket/[rgb,depth]/egogen/shard-{000000..000040}.tar`` (the
  pattern grammar of :mod:`egom2p.core.layout`): every name its braces expand to is a ``.tar``. Resolving a
  pattern opens and lists nothing, so an ``s3://`` pattern costs no request until a shard is read.
- ``data_root``: a root folder, local or ``s3://``, under which the dataset's tars are found as
  ``<root>/<folder>/<dataset>/**.tar`` (:func:`~egom2p.core.layout.find_root_shards`), or (local only) its
  per-sample files ``<root>/<folder>/<dataset>/<key>.npz|.npy``.

:func:`resolve_source` is the one place that decides: the data loader (training and validation), the
trainer's start-up check, ``egom2p-data`` and generate all call it. Importing this module imports neither
torch nor boto3 (an ``s3://`` root is listed through :mod:`egom2p.core.s3` when it is resolved).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from braceexpand import braceexpand
from egom2p.core.errors import SourceError
from egom2p.core.layout import ShardPolicy, expand_shard_pattern, find_root_shards

__all__ = ["check_shard_pattern", "is_shard_pattern", "resolve_source"]

#: How a shard pattern looks, for messages.
PATTERN_EXAMPLE = ".../[rgb,cam]/<dataset>/shard-{000000..000009}.tar"


def is_shard_pattern(text: str) -> bool:
    """Whether ``text`` is a shard pattern: not empty, and every name its braces expand to ends in ``.tar``."""
    if not isinstance(text, str) or not text:
        return False
    return all(url.endswith(".tar") for url in braceexpand(text))


def check_shard_pattern(text: str) -> str:
    """``text`` when it is a shard pattern (:func:`is_shard_pattern`); else :class:`SourceError` saying that a
    folder goes in ``data_root`` (callers put the key in front)."""
    if not is_shard_pattern(text):
        raise SourceError(f"{text!r} is not a shard pattern ({PATTERN_EXAMPLE}): a folder holding <folder>/<dataset>/ "
                          "goes in data_root (the original's val data_path is such a root)")
    return text


def resolve_source(
    data_path: str | None = None, data_root: str | None = None, dataset: str | None = None,
    folders: Iterable[str] | None = None, policy: ShardPolicy = "union", files: bool = False,
) -> list[str]:
    """The shard URLs of one dataset, from exactly one of ``data_path`` (a shard pattern) and ``data_root``.

    A pattern is expanded (nothing is opened). Under a root, ``dataset`` names the folder below each modality
    folder and ``folders`` the modality folders to look in (default: every folder of a local root that holds
    ``<dataset>/``; an ``s3://`` root must name them); each URL then carries the ``[folder,...]`` list of the
    folders that hold it, and ``policy`` says what folders holding different shard names mean
    (:func:`~egom2p.core.layout.find_root_shards`). A local root whose dataset is stored as per-sample files
    gives ``[]`` when ``files`` (the caller reads the files), else an error.

    Raises :class:`SourceError` (a ``ValueError``) for a ``data_path`` that is no shard pattern (a folder goes
    in ``data_root``) or a wrong pair of arguments, ``FileNotFoundError`` for a root that is no folder or holds
    no shards of ``dataset``; every message is one line naming the source.
    """
    if (data_path is None) == (data_root is None):
        raise SourceError("give exactly one of data_path (a shard pattern) and data_root (a root folder), got "
                          + ("both" if data_path is not None else "neither"))
    if data_path is not None:
        check_shard_pattern(data_path)
        try:
            return expand_shard_pattern(data_path)
        except ValueError as err:
            raise SourceError(str(err)) from None
    root = str(data_root).rstrip("/") or "/"
    if not dataset:
        raise SourceError(f"data root {root}: also give the dataset name (the folder below each modality folder)")
    local = not root.startswith("s3://")
    if local and not os.path.isdir(root):
        raise FileNotFoundError(f"data root {root} is not a folder")
    folders = None if folders is None else list(folders)
    try:
        urls = find_root_shards(root, dataset, folders, policy=policy)
    except ValueError as err:  # an s3:// root without folders, a folder name no [a,b] list can hold
        raise SourceError(str(err) if root in str(err) else f"data root {root}: {err}") from None
    if urls:
        return urls
    looked_in = folders if folders is not None else os.listdir(root) if local else []
    if any(os.path.isdir(os.path.join(root, f, dataset)) for f in looked_in):
        if files:
            return []  # the per-sample layout: the caller reads the files
        raise SourceError(f"{root}: dataset {dataset!r} is stored as per-sample files, not tar shards")
    listed = "|".join(folders) if folders else "folder"
    if files and local:
        raise FileNotFoundError(f"no token folders {root}/<{listed}>/{dataset}/")
    raise FileNotFoundError(f"no tar shards under {root}/<{listed}>/{dataset}/")
