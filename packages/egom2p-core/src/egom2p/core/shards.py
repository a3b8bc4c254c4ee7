"""The token-shard format (SPEC 1.6): patterns, folder lists, the npz/npy codec, tar reading and writing,
and finding a dataset's shards under a data root (:func:`find_root_shards`, the one finder).

Layout: ``root/<folder>/<dataset>/shard-000000.tar``, one tar per modality folder, members
``<key>.npz`` (one array ``arr_0``, ``np.savez_compressed``) or ``<key>.npy``, the same keys in the
same order in every folder's tar. A sample's key is its member's base name up to the first dot.

Pattern grammar (one grammar for every reader): brace expansion as in bash, by ``braceexpand``
(``{000000..000003}`` zero-padded ranges, descending ranges count down, ``{a,b}`` alternatives),
then at most one bracketed folder list ``[rgb,depth,cam]`` that names the modality folders:
``root/[rgb,depth,cam]/egogen/shard-{000000..000003}.tar``.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Literal

import numpy as np
from braceexpand import braceexpand
from egom2p.core.atomic import write_atomic

__all__ = [
    "ShardError",
    "ShardPolicy",
    "check_name",
    "decode_tokens",
    "encode_tokens",
    "expand_folders",
    "expand_shard_pattern",
    "find_root_shards",
    "iter_folder_samples",
    "iter_tar_members",
    "load_token_array",
    "open_local",
    "open_url",
    "read_shard",
    "read_tar_members",
    "sample_key",
    "write_tar",
]

_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
TOKEN_SUFFIXES = (".npz", ".npy")
ShardPolicy = Literal["union", "strict"]  # what find_root_shards does when folders hold different shard names


class ShardError(RuntimeError):
    """A shard cannot be read: missing, truncated, corrupt or inconsistent across modalities."""


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
    bad = [f for f in folders if "/" in f or f in (".", "..")]
    if bad:
        raise ValueError(f"shard URL {url!r}: folder names may not contain '/' or be '.'/'..', got {bad}")
    if len(set(folders)) != len(folders):
        raise ValueError(f"shard URL {url!r} lists a folder twice")
    return {f: _BRACKETS.sub(f, url, count=1) for f in folders}


_PATTERN_CHARS = "[]{}"  # the pattern grammar's brackets and braces: never part of a written name


def check_name(value: str, what: str, allow_nested: bool = False) -> str:
    """``value`` as a path component of a written shard path: not empty, ``.`` or ``..``, no path separator,
    no pattern bracket or brace (and no comma in a folder or shard name: they sit in ``[a,b]`` / ``{a,b}``
    lists). ``allow_nested`` accepts ``a/b`` made of such components. Raises ``ValueError`` naming ``what``."""
    listed = what in ("folder", "shard file")
    for part in value.split("/") if allow_nested else [value]:
        if part in ("", ".", "..") or any(c in part for c in "/\\" + _PATTERN_CHARS + ("," if listed else "")):
            raise ValueError(f"{what} {value!r} must be a plain name inside the output folder "
                             f"(no '..', no path separators, no []{{}}{' or commas' if listed else ''})")
    return value


def sample_key(member_name: str) -> tuple[str, str]:
    """``(key, extension)`` of a tar member or file: ``dir/clip-1.npz`` -> ``("clip-1", "npz")``."""
    base = member_name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext


def load_token_array(name: str, data: bytes) -> np.ndarray:
    """The array stored in one token file, in its stored dtype: ``.npz`` -> ``arr_0``, ``.npy`` -> the array.

    Never unpickles. Raises ``ValueError`` naming ``name`` for other suffixes, archives without
    ``arr_0`` and corrupt files.
    """
    if not name.endswith(TOKEN_SUFFIXES):
        raise ValueError(f"{name}: unsupported token file type (expected .npz or .npy)")
    try:
        if name.endswith(".npy"):
            return np.load(io.BytesIO(data), allow_pickle=False)
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            files = archive.files
            array = archive["arr_0"] if "arr_0" in files else None
    except Exception as exc:  # zip, header, pickle and EOF errors of a corrupt or unsafe file
        raise ValueError(f"{name}: not a readable token file ({type(exc).__name__}: {exc})") from None
    if array is None:
        raise ValueError(f"{name}: .npz holds {files}, expected 'arr_0'")
    return array


def decode_tokens(name: str, data: bytes) -> np.ndarray:
    """Decode one token file (see :func:`load_token_array`) as int64 token ids.

    A non-integer array is an error naming ``name``, never truncated to ints.
    """
    array = load_token_array(name, data)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: token array has dtype {array.dtype}, expected integers")
    return array.astype(np.int64, copy=False)


def encode_tokens(array: np.ndarray) -> bytes:
    """The ``.npz`` bytes of one token array (``arr_0``, compressed), as the original writes them."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"token arrays must hold integers, got dtype {array.dtype}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, array)
    return buffer.getvalue()


def open_local(url: str) -> IO[bytes]:
    """Open a local path (or ``file://`` URL) for binary reads."""
    return open(url[len("file://"):] if url.startswith("file://") else url, "rb")


def open_url(url: str, retry_seconds: float | None = None) -> IO[bytes]:
    """Open a shard for binary reads: a local path, a ``file://`` URL or ``s3://bucket/key``.

    The one opener of every reader (pass it as ``opener`` to :func:`read_shard` / :func:`read_tar_members`).
    An S3 object is downloaded whole, the request and the download retried together on transient
    errors for ``retry_seconds`` (default ``$EGOM2P_S3_RETRY_SECONDS``, else 300 s; see
    :func:`egom2p.core.s3.read_s3`), so a dropped connection or a short outage costs a retry, not the
    shard. A missing file is a ``FileNotFoundError`` naming it.
    """
    if url.startswith("s3://"):
        from egom2p.core.s3 import read_s3  # boto3 is the optional [s3] extra

        return io.BytesIO(read_s3(url, retry_seconds))
    try:
        return open_local(url)
    except FileNotFoundError:
        raise FileNotFoundError(f"data file not found: {url}") from None


def iter_tar_members(stream: IO[bytes], where: str) -> Iterator[tuple[str, str, bytes]]:
    """Stream the regular members of a tar as ``(key, extension, bytes)``, in tar order.

    Raises :class:`ShardError` naming ``where`` for a truncated member, a corrupt tar, or two members with
    one key (``a/clip.npy`` and ``b/clip.npy``, or ``clip.npy`` twice): a tar holds one member per sample,
    and keeping either would silently drop the other.
    """
    first_member: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = sample_key(info.name)
                if key in first_member:
                    raise ShardError(f"{where}: members {first_member[key]} and {info.name} have the same sample key "
                                     f"{key!r} (the file name without folders and extension); rewrite the shard with "
                                     "one member per key")
                first_member[key] = info.name
                handle = tar.extractfile(info)
                data = handle.read() if handle is not None else b""
                if len(data) != info.size:
                    raise ShardError(f"{where}: member {info.name} is truncated")
                yield key, ext, data
    except ShardError:
        raise
    except Exception as exc:  # tar and stream errors alike (e.g. an S3 stream dropped mid-read)
        raise _unreadable(where, exc) from exc


def _unreadable(url: str, exc: Exception) -> ShardError:
    """The :class:`ShardError` of a shard that cannot be read, naming ``url`` once (openers often name it too)."""
    where = "" if url in str(exc) else f" {url}"
    return ShardError(f"cannot read shard{where}: {type(exc).__name__}: {exc}")


def read_tar_members(url: str, opener: Callable[[str], IO[bytes]] = open_url) -> list[tuple[str, str, bytes]]:
    """All regular members of the tar at ``url`` as ``(key, extension, bytes)``; ``opener`` opens the URL.

    Raises :class:`ShardError` naming the URL when it is missing, truncated or corrupt.
    """
    try:
        stream = opener(url)
    except Exception as exc:
        raise _unreadable(url, exc) from exc
    with stream:
        return list(iter_tar_members(stream, url))


def write_tar(path: str | os.PathLike, members: Iterable[tuple[str, bytes]]) -> None:
    """Write ``(member name, bytes)`` pairs as a tar at ``path``, atomically (temp file, fsync, rename).

    Member mtimes are 0, so identical inputs give identical bytes.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))

    write_atomic(path, write)


Sample = tuple[str, dict[str, tuple[str, bytes]]]  # (key, {folder: (member name, bytes)})


def read_shard(url: str, opener: Callable[[str], IO[bytes]] = open_url) -> list[Sample]:
    """Read a shard URL (``[a,b]`` folder list or one tar) into ``[(key, {folder: (member, bytes)})]``.

    Samples follow the first folder's member order. A key that a later folder lacks leaves that
    folder out of the sample (readers count the sample as bad); keys only later folders have are
    dropped. Raises :class:`ShardError` for an unreadable tar.
    """
    order: list[str] = []
    samples: dict[str, dict[str, tuple[str, bytes]]] = {}
    for i, (folder, folder_url) in enumerate(expand_folders(url).items()):
        for key, ext, data in read_tar_members(folder_url, opener):
            if key not in samples:
                if i > 0:
                    continue
                samples[key] = {}
                order.append(key)
            samples[key][folder] = (f"{key}.{ext}", data)
    return [(key, samples[key]) for key in order]


def iter_folder_samples(root: str | os.PathLike, dataset: str, folders: Iterable[str]) -> Iterator[Sample]:
    """The original's per-file layout ``root/<folder>/<dataset>/<key>.npz|.npy``, paired by key.

    Folders that do not exist are left out (a dataset may lack a modality); samples follow the
    sorted keys of the first existing folder. Raises ``FileNotFoundError`` when no folder exists.
    """
    folders = list(folders)
    per_folder: dict[str, dict[str, str]] = {}
    for folder in folders:
        directory = os.path.join(os.fspath(root), folder, dataset)
        if os.path.isdir(directory):
            names = sorted(n for n in os.listdir(directory) if n.endswith(TOKEN_SUFFIXES))
            per_folder[folder] = {sample_key(n)[0]: os.path.join(directory, n) for n in names}
    if not per_folder:
        raise FileNotFoundError(f"no token folders {os.fspath(root)}/<{'|'.join(folders)}>/{dataset}/")
    first = next(iter(per_folder.values()))
    for key in first:
        sample = {}
        for folder, files in per_folder.items():
            if key in files:
                with open(files[key], "rb") as f:
                    sample[folder] = (os.path.basename(files[key]), f.read())
        yield key, sample


def _tar_files_below(directory: str) -> list[str]:
    """Paths (relative, ``/``-separated) of the ``.tar`` files at any depth below a local folder or an
    ``s3://`` prefix, sorted; ``[]`` when there is none."""
    if directory.startswith("s3://"):
        from egom2p.core.s3 import list_s3  # boto3 is the optional [s3] extra

        prefix = directory.rstrip("/") + "/"
        return sorted(u[len(prefix):] for u in list_s3(prefix) if u.endswith(".tar"))
    found = []
    for here, _, files in os.walk(directory):
        found += [os.path.relpath(os.path.join(here, f), directory).replace(os.sep, "/") for f in files if f.endswith(".tar")]
    return sorted(found)


def _folder_list(folders: Iterable[str]) -> str:
    """``[a,b]``: the folder list of a shard URL, after checking each name can stand in one."""
    folders = list(folders)
    bad = [f for f in folders if f in ("", ".", "..") or any(c in f for c in "/,[]")]
    if bad:
        raise ValueError(f"folder names {bad} cannot go in a [folder,...] list (no '/', ',', '[' or ']', not '.'/'..')")
    return "[" + ",".join(folders) + "]"


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
    the folders that hold tars, in the order given (read one with :func:`read_shard`, split it with
    :func:`expand_folders`); ``[]`` when no folder holds a tar (e.g. the per-file layout of
    :func:`iter_folder_samples`). A folder without tars is left out: a dataset may lack a modality.

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
    group = _folder_list(per_folder)
    return [f"{base}/{group}/{dataset}/{name}" for name in sorted(set().union(*per_folder.values()))]
