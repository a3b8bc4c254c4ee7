"""The token-shard layout: the rules every reader and writer of shards shares, each defined here once.

Layout: ``root/<folder>/<dataset>/shard-000000.tar``, one tar per modality folder, members ``<key>.npz`` (one
array ``arr_0``, ``np.savez_compressed``) or ``<key>.npy``, the same keys in the same order in every folder's
tar. The rules:

- names (:func:`check_name`): a folder, dataset, subdir or shard file name is a plain path component without
  the pattern grammar's brackets and braces; the modality spec's ``folder`` follows it too;
- sample keys (:func:`sample_key`): a member's or file's base name up to its FIRST dot, so ``clip.v1.npz`` is
  the sample ``clip`` (writers refuse keys with a dot);
- patterns (:func:`expand_shard_pattern`, :func:`expand_folders`): brace expansion as in bash, by ``braceexpand``
  (``{000000..000003}`` zero-padded ranges, descending ranges count down, ``{a,b}`` alternatives), then at most
  one bracketed folder list ``[rgb,depth,cam]`` naming the modality folders:
  ``root/[rgb,depth,cam]/egogen/shard-{000000..000003}.tar``;
- folders and modalities (:func:`folder_modalities`): the folder of a modality is its spec's ``folder``, unless
  a dataset's ``modality_name_map`` says otherwise;
- a dataset under a root (:func:`find_root_shards`): its tars at any depth below ``<root>/<folder>/<dataset>/``.

Reading a shard's folders together, paired by key, is :mod:`egom2p.core.pairing`; tar bytes are
:mod:`egom2p.core.shards`; which of a pattern and a root a data source is, :mod:`egom2p.core.sources`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from braceexpand import braceexpand
from egom2p.core import s3
from egom2p.core.errors import ShardError

__all__ = [
    "ShardPolicy",
    "check_name",
    "domain_list",
    "expand_folders",
    "expand_shard_pattern",
    "find_root_shards",
    "folder_list",
    "folder_modalities",
    "sample_key",
]

_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
_PATTERN_CHARS = "[]{}"  # the pattern grammar's brackets and braces: never part of a written name
ShardPolicy = Literal["union", "strict"]  # what find_root_shards does when folders hold different shard names


def check_name(value: str, what: str, allow_nested: bool = False, inside: str | None = "the output folder") -> str:
    """``value`` as a path component of a shard path: not empty, ``.`` or ``..``, no path separator, no pattern
    bracket or brace (and no comma in a folder or shard name: they sit in ``[a,b]`` / ``{a,b}`` lists).
    ``allow_nested`` accepts ``a/b`` made of such components. Raises ``ValueError`` naming ``what`` (and, for a
    written name, that it must stay ``inside`` the output folder)."""
    listed = what in ("folder", "shard file")
    for part in value.split("/") if allow_nested else [value]:
        if part in ("", ".", "..") or any(c in part for c in "/\\" + _PATTERN_CHARS + ("," if listed else "")):
            raise ValueError(f"{what} {value!r} must be a plain name{f' inside {inside}' if inside else ''} "
                             f"(no '..', no path separators, no []{{}}{' or commas' if listed else ''})")
    return value


def domain_list(value: str | Iterable[str]) -> list[str]:
    """A list of modality names as the original writes it, a hyphen-separated string (``"tok_rgb-tok_depth"``, empty
    parts dropped), or as a list of names: the names, in order."""
    if isinstance(value, str):
        return [v for v in value.split("-") if v]
    return [str(v) for v in value]


def sample_key(member_name: str) -> tuple[str, str]:
    """``(key, extension)`` of a tar member or file: ``dir/clip-1.npz`` -> ``("clip-1", "npz")``; the key ends at
    the base name's first dot (``clip.v1.npy`` -> ``("clip", "v1.npy")``)."""
    base = member_name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext


def expand_shard_pattern(pattern: str) -> list[str]:
    """Expand the brace ranges and alternatives of ``pattern``; ``[a,b]`` folder lists stay intact."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"shard pattern must be a non-empty string, got {pattern!r}")
    urls = list(braceexpand(pattern))
    if not urls or any(not u for u in urls):
        raise ValueError(f"shard pattern {pattern!r} expands to no shard")
    return urls


def expand_folders(url: str) -> dict[str, str]:
    """One URL per modality folder: ``a/[rgb,cam]/x.tar`` -> ``{"rgb": "a/rgb/x.tar", "cam": "a/cam/x.tar"}``.

    A URL without a folder list is one tar, returned under the key ``""`` (its folder is not guessed).
    """
    matches = _BRACKETS.findall(url)
    if not matches:
        return {"": url}
    if len(matches) > 1:
        raise ValueError(f"shard URL {url!r} has {len(matches)} [folder,...] lists; at most one is allowed")
    folders = [f.strip() for f in matches[0].split(",") if f.strip()]
    if not folders:
        raise ValueError(f"empty folder list [] in shard URL {url!r}")
    for folder in folders:
        try:
            check_name(folder, "folder", inside=None)
        except ValueError as err:
            raise ValueError(f"shard URL {url!r}: {err}") from None
    if len(set(folders)) != len(folders):
        raise ValueError(f"shard URL {url!r} lists a folder twice")
    return {f: _BRACKETS.sub(f, url, count=1) for f in folders}


def folder_list(folders: Iterable[str]) -> str:
    """``[a,b]``: the folder list of a shard URL, after checking each name can stand in one."""
    return "[" + ",".join(check_name(f, "folder", inside=None) for f in folders) + "]"


def folder_modalities(modalities: Iterable[str], specs: Mapping[str, Any],
                      name_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """Folder -> modality name for the ``modalities`` of a dataset: each spec's folder (``specs``: name ->
    :class:`~egom2p.core.modalities.ModalitySpec`, which checks its names here), then ``name_map`` (a data
    config's ``modality_name_map``, folder -> modality). The one rule for which folder feeds which modality."""
    mapping = {specs[m].folder: m for m in modalities}
    mapping.update(name_map or {})
    return mapping


def _tar_files_below(directory: str) -> list[str]:
    """Paths (relative, ``/``-separated) of the ``.tar`` files at any depth below a local folder or an
    ``s3://`` prefix, sorted; ``[]`` when there is none."""
    if directory.startswith("s3://"):
        prefix = directory.rstrip("/") + "/"
        return sorted(u[len(prefix):] for u in s3.list_s3(prefix) if u.endswith(".tar"))
    found = []
    for here, _, files in os.walk(directory):
        found += [os.path.relpath(os.path.join(here, f), directory).replace(os.sep, "/") for f in files if f.endswith(".tar")]
    return sorted(found)


def _dataset_folders(root: str, dataset: str) -> list[str]:
    """The folders of a local ``root`` that hold ``<dataset>/``, sorted."""
    if root.startswith("s3://"):
        raise ValueError(f"{root}: name the modality folders of an s3:// data root")
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, dataset)))


def _few(names: list[str], limit: int = 5) -> str:
    """``names`` for a message: the first ``limit``, then how many more."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{names[:limit]}{more}"


def _check_same_names(base: str, dataset: str, per_folder: dict[str, list[str]]) -> None:
    """Raise :class:`ShardError` naming two folders and the shards only each holds, when the folders differ."""
    (first, names), *rest = per_folder.items()
    for folder, other in rest:
        if other != names:
            only_first, only_other = sorted(set(names) - set(other)), sorted(set(other) - set(names))
            raise ShardError(f"{base}/{first}/{dataset} and {base}/{folder}/{dataset} hold different shards: only "
                             f"{first} holds {_few(only_first)}, only {folder} holds {_few(only_other)}")


def find_root_shards(root: str | os.PathLike, dataset: str, folders: Iterable[str] | None = None,
                     policy: ShardPolicy = "union") -> list[str]:
    """The tar shards of a dataset under a data root, local or ``s3://``: ``<root>/<folder>/<dataset>/**.tar``.

    Tars count at any depth below ``<folder>/<dataset>/`` (the released data nests them in ``token/``),
    named by their path below it. Returns one shard URL per name, sorted, with a ``[folder,...]`` list of
    the folders that hold tars, in the order given (read one with :func:`egom2p.core.pairing.read_shard`,
    split it with :func:`expand_folders`); ``[]`` when no folder holds a tar (e.g. the per-file layout of
    :func:`egom2p.core.pairing.iter_folder_samples`). A folder without tars is left out: a dataset may lack a
    modality. Data sources resolve through :func:`egom2p.core.sources.resolve_source`, which calls this.

    ``folders`` defaults to every folder of a local ``root`` that holds ``<dataset>/``, sorted (an ``s3://``
    root must name them). ``policy`` decides when the folders hold different shard names: ``"union"``
    lists every name, so a tar one folder lacks reads as missing; ``"strict"`` raises :class:`ShardError`
    naming two differing folders and the shards only each holds.
    """
    if policy not in ("union", "strict"):
        raise ValueError(f"shard policy must be 'union' or 'strict', got {policy!r}")
    base = os.fspath(root).rstrip("/")
    folders = _dataset_folders(base, dataset) if folders is None else folders
    per_folder = {f: names for f in folders if (names := _tar_files_below(f"{base}/{f}/{dataset}"))}
    if not per_folder:
        return []
    if policy == "strict":
        _check_same_names(base, dataset, per_folder)
    group = folder_list(per_folder)
    return [f"{base}/{group}/{dataset}/{name}" for name in sorted(set().union(*per_folder.values()))]
