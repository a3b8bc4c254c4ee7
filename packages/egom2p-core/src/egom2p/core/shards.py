"""The token-shard format (docs/original-behaviour.md#shard-layout): the npz/npy codec, tar reading and writing.

Members are ``<key>.npz`` (one array ``arr_0``, ``np.savez_compressed``) or ``<key>.npy``; a member's key is
:func:`egom2p.core.layout.sample_key`'s. The layout rules (names, keys, the pattern grammar, finding a dataset
under a root) are :mod:`egom2p.core.layout`; reading a shard's folders paired by key, :mod:`egom2p.core.pairing`.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, NamedTuple

import numpy as np
from egom2p.core.atomic import write_atomic
from egom2p.core.errors import ShardError
from egom2p.core.layout import sample_key
from egom2p.core.s3 import read_s3

__all__ = [
    "TokenHeader",
    "decode_tokens",
    "encode_tokens",
    "iter_tar_members",
    "load_token_array",
    "open_url",
    "read_tar_members",
    "read_token_header",
    "write_tar",
]

TOKEN_SUFFIXES = (".npz", ".npy")


class TokenHeader(NamedTuple):
    """What a token file's ``.npy`` header declares, read before any of its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    header_bytes: int  # length of the .npy header
    stored_bytes: int  # the .npy file's size (an .npz member: its declared uncompressed size)
    fortran_order: bool = False

    @property
    def data_bytes(self) -> int:
        """Bytes of array data the header describes."""
        return math.prod(self.shape) * self.dtype.itemsize


def _unreadable_file(name: str, exc: Exception) -> ValueError:
    return ValueError(f"{name}: not a readable token file ({type(exc).__name__}: {exc})")


def _npy_header(stream: IO[bytes], name: str, stored_bytes: int) -> TokenHeader:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:  # bad magic, header syntax, EOF: a corrupt or unsafe file
        raise _unreadable_file(name, exc) from None
    return TokenHeader(tuple(shape), dtype, stream.tell(), stored_bytes, bool(fortran))


@contextlib.contextmanager
def _open_token_file(name: str, data: bytes) -> Iterator[tuple[IO[bytes], TokenHeader]]:
    """The stream of a token file's ``.npy`` (an ``.npz``'s ``arr_0`` member), positioned after its header, and
    the header: the zip directory and the header are read once, the data not yet (nothing is inflated)."""
    if name.endswith(".npy"):
        stream = io.BytesIO(data)
        yield stream, _npy_header(stream, name, len(data))
        return
    if not name.endswith(".npz"):
        raise ValueError(f"{name}: unsupported token file type (expected .npz or .npy)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        info = archive.getinfo("arr_0.npy") if "arr_0.npy" in names else None
        member = archive.open(info) if info is not None else None
    except Exception as exc:  # zip errors of a corrupt, encrypted or exotic archive
        raise _unreadable_file(name, exc) from None
    if member is None:
        raise ValueError(f"{name}: .npz holds {[n.removesuffix('.npy') for n in names]}, expected 'arr_0'")
    with archive, member:
        yield member, _npy_header(member, name, info.file_size)


def read_token_header(name: str, data: bytes) -> TokenHeader:
    """The shape, dtype and sizes a ``.npy`` file or an ``.npz`` archive's ``arr_0`` declare, reading only the zip
    directory and the ``.npy`` header. Raises ``ValueError`` naming ``name`` for unreadable files."""
    with _open_token_file(name, data) as (_, head):
        return head


def load_token_array(name: str, data: bytes, check: Callable[[TokenHeader], None] | None = None) -> np.ndarray:
    """The array stored in one token file, in its stored dtype: ``.npz`` -> ``arr_0``, ``.npy`` -> the array.

    One pass: the header is read once, ``check(header)`` (when given) may refuse the file by raising before any
    data is inflated (a zlib bomb is stopped from its header), then the data is read. Never unpickles. Raises
    ``ValueError`` naming ``name`` for other suffixes, archives without ``arr_0``, object arrays and corrupt or
    truncated files.
    """
    with _open_token_file(name, data) as (stream, head):
        if check is not None:
            check(head)
        if head.dtype.hasobject:
            raise ValueError(f"{name}: not a readable token file (an object array would need unpickling)")
        stored = head.stored_bytes - head.header_bytes  # what the file holds: never allocate more than that
        if head.data_bytes > stored:
            raise ValueError(f"{name}: not a readable token file (truncated: {max(stored, 0)} of {head.data_bytes} "
                             "data bytes)")
        buffer = np.empty(head.data_bytes, np.uint8)
        try:
            got = stream.readinto(memoryview(buffer))
        except Exception as exc:  # a corrupt deflate stream
            raise _unreadable_file(name, exc) from None
    if got != head.data_bytes:
        raise ValueError(f"{name}: not a readable token file (truncated: {got} of {head.data_bytes} data bytes)")
    array = np.frombuffer(buffer, head.dtype, count=math.prod(head.shape))
    return array.reshape(head.shape, order="F" if head.fortran_order else "C")


def decode_tokens(name: str, data: bytes, check: Callable[[TokenHeader], None] | None = None) -> np.ndarray:
    """Decode one token file (see :func:`load_token_array`, which runs ``check`` on its header) as int64 token ids.

    A non-integer array is an error naming ``name``, never truncated to ints.
    """
    array = load_token_array(name, data, check)
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


def open_url(url: str, retry_seconds: float | None = None) -> IO[bytes]:
    """Open a shard for binary reads: ``s3://bucket/key`` through :mod:`egom2p.core.s3`, anything else through
    webdataset's URL opener (``webdataset.gopen``): a local path, a ``file://`` URL, ``pipe:COMMAND`` (the
    command's stdout, e.g. ``pipe:cat shard.tar``) or ``http(s)://`` (fetched with curl).

    The one opener of every reader (pass it as ``opener`` to :func:`egom2p.core.pairing.read_shard` / :func:`read_tar_members`).
    An S3 object is downloaded whole, the request and the download retried together on transient
    errors for ``retry_seconds`` (default ``$EGOM2P_S3_RETRY_SECONDS``, else 300 s; see
    :func:`egom2p.core.s3.read_s3`), so a dropped connection or a short outage costs a retry, not the
    shard. A missing file is a ``FileNotFoundError`` naming it.
    """
    if url.startswith("s3://"):
        return io.BytesIO(read_s3(url, retry_seconds))
    from webdataset.gopen import gopen  # here, not at import: importing webdataset imports torch where installed

    try:
        return gopen(url, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"data file not found: {url}") from None


class _Named:
    """A stream that prints as its URL: webdataset's tar iterator names the stream in the errors it raises."""

    def __init__(self, stream: IO[bytes], url: str) -> None:
        self._stream, self._url = stream, url

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def __str__(self) -> str:
        return self._url


def iter_tar_members(stream: IO[bytes], where: str) -> Iterator[tuple[str, str, bytes]]:
    """Stream the regular members of a tar as ``(key, extension, bytes)``, in tar order, through webdataset's
    tar iterator (``webdataset.tariterators.tar_file_iterator``).

    Raises :class:`ShardError` naming ``where`` for a truncated member, a corrupt tar, or two members with
    one key (``a/clip.npy`` and ``b/clip.npy``, or ``clip.npy`` twice): a tar holds one member per sample,
    and keeping either would silently drop the other.
    """
    from webdataset.tariterators import tar_file_iterator  # see open_url: webdataset is imported on first use

    first_member: dict[str, str] = {}
    try:
        # skip_meta=None: every regular member is a sample's file (webdataset would drop "__x__" paths).
        for member in tar_file_iterator(_Named(stream, where), skip_meta=None):
            name, data = member["fname"], member["data"]
            key, ext = sample_key(name)
            if key in first_member:
                raise ShardError(f"{where}: members {first_member[key]} and {name} have the same sample key "
                                 f"{key!r} (the file name without folders and extension); rewrite the shard with "
                                 "one member per key")
            first_member[key] = name
            yield key, ext, data
    except ShardError:
        raise
    except Exception as exc:  # tar and stream errors alike (e.g. an S3 stream dropped mid-read)
        raise _unreadable(where, exc) from exc


def _unreadable(url: str, exc: Exception) -> ShardError:
    """The :class:`ShardError` of a shard that cannot be read, naming ``url`` once (openers often name it too)."""
    message = str(exc).removesuffix(f" @ {url}")  # the stream webdataset's tar iterator appends, see _Named
    where = "" if url in message else f" {url}"
    return ShardError(f"cannot read shard{where}: {type(exc).__name__}: {message}")


def read_tar_members(url: str, opener: Callable[[str], IO[bytes]] = open_url) -> list[tuple[str, str, bytes]]:
    """All regular members of the tar at ``url`` as ``(key, extension, bytes)``; ``opener`` opens the URL.

    Raises :class:`ShardError` naming the URL when it is missing, truncated or corrupt.
    """
    try:
        stream = opener(url)
    except Exception as exc:
        raise _unreadable(url, exc) from exc
    try:
        with stream:
            return list(iter_tar_members(stream, url))
    except ShardError:
        raise
    except Exception as exc:  # closing failed: a pipe: command that exited with an error
        raise _unreadable(url, exc) from exc


def _member_key(name: str) -> tuple[str, str]:
    """``(key, extension)`` of a member name written as ``key.extension`` (``x/clip-1.npz`` -> ``("x/clip-1", "npz")``):
    the key ends at the base name's first dot, as :func:`sample_key` reads it back."""
    folder, slash, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not ext:
        raise ValueError(f"tar member {name!r} needs an extension (<key>.<extension>, e.g. {name}.npz)")
    return folder + slash + stem, ext


def write_tar(path: str | os.PathLike, members: Iterable[tuple[str, bytes]]) -> None:
    """Write ``(member name, bytes)`` pairs as a tar at ``path`` with webdataset's ``TarWriter``, one sample per
    member, atomically (temp file, fsync, rename).

    A member name is ``<key>.<extension>`` (a ``ValueError`` otherwise). The headers are fixed (mtime 0, mode
    0644, no owner names), so identical members give identical bytes.
    """
    from webdataset.writer import TarWriter  # see open_url: webdataset is imported on first use

    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def write(tmp: str) -> None:
        # encoder=False: the bytes are stored as given; keep_meta: an extension starting with "_" is data too.
        with open(tmp, "wb") as raw, TarWriter(raw, user="", group="", mode=0o644, mtime=0, encoder=False,
                                               keep_meta=True) as tar:
            for name, data in members:
                key, ext = _member_key(name)
                tar.write({"__key__": key, ext: data})

    write_atomic(path, write)
