"""The one per-sample check: what the training loader skips is exactly what ``egom2p-data validate`` reports.

A sample is ``{modality: (member name, bytes)}`` as read from the shards. :func:`decode_sample` returns its
int64 token arrays, or a :class:`SampleProblem` (``missing_modality``, ``decode_error`` or ``bad_tokens``).

Before a member is decompressed, its ``.npy`` header is read (:func:`read_token_header`): the shape must fit
the modality (:meth:`ModalitySpec.check_tokens`'s shapes), the dtype must be an integer type, and an
``.npz`` member may not declare more uncompressed bytes than its header describes. A crafted member (a
zlib bomb: 800 MB from 800 KB, or a header claiming a huge shape) is rejected from a few hundred bytes,
never inflated. Without a modality spec (``egom2p-data inspect``) arrays above :data:`MAX_TOKEN_BYTES` are
rejected the same way.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping
from typing import IO, NamedTuple

import numpy as np
from egom2p.core.modalities import ModalitySpec
from egom2p.core.shards import decode_tokens

__all__ = ["MAX_TOKEN_BYTES", "SampleProblem", "TokenHeader", "decode_sample", "member_problem", "read_token_header"]

#: Largest token array accepted when no modality spec bounds it (the released rgb sample is 40 KB as int64).
MAX_TOKEN_BYTES = 64 << 20


class SampleProblem(NamedTuple):
    """Why a sample is skipped: a ``reason`` (the loader's ``stats["by_reason"]`` key) and a one-line ``detail``."""

    reason: str
    detail: str


class TokenHeader(NamedTuple):
    """What a token file's header declares, read without reading its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    header_bytes: int  # length of the .npy header
    stored_bytes: int  # the .npy file's size (an .npz member: its declared uncompressed size)

    @property
    def data_bytes(self) -> int:
        """Bytes of array data the header describes."""
        return math.prod(self.shape) * self.dtype.itemsize


def _npy_header(stream: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:  # bad magic, header syntax, EOF: a corrupt or unsafe file
        raise ValueError(f"{name}: not a readable token file ({type(exc).__name__}: {exc})") from None
    return tuple(shape), dtype, stream.tell()


def read_token_header(name: str, data: bytes) -> TokenHeader:
    """The shape, dtype and sizes a ``.npy`` file or an ``.npz`` archive's ``arr_0`` declare, reading only
    the zip directory and the ``.npy`` header. Raises ``ValueError`` naming ``name`` for unreadable files."""
    if name.endswith(".npy"):
        shape, dtype, header = _npy_header(io.BytesIO(data), name)
        return TokenHeader(shape, dtype, header, len(data))
    if not name.endswith(".npz"):
        raise ValueError(f"{name}: unsupported token file type (expected .npz or .npy)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            info = archive.getinfo("arr_0.npy") if "arr_0.npy" in names else None
            if info is not None:
                with archive.open(info) as member:  # decompresses only as far as the header
                    shape, dtype, header = _npy_header(member, name)
    except ValueError:
        raise
    except Exception as exc:  # zip errors of a corrupt, encrypted or exotic archive
        raise ValueError(f"{name}: not a readable token file ({type(exc).__name__}: {exc})") from None
    if info is None:
        raise ValueError(f"{name}: .npz holds {[n.removesuffix('.npy') for n in names]}, expected 'arr_0'")
    return TokenHeader(shape, dtype, header, info.file_size)


def member_problem(name: str, data: bytes, spec: ModalitySpec | None) -> str | None:
    """Why the token file ``name`` must not be decoded (shape, dtype or size from its header), or None.

    ``spec`` bounds the shape; without one the array may hold at most :data:`MAX_TOKEN_BYTES`.
    """
    head = read_token_header(name, data)
    if spec is not None and head.shape not in (spec.shape, (spec.num_tokens,)):
        flat = f" or [{spec.num_tokens}]" if spec.is_video else ""
        return f"{spec.name} has shape {head.shape}, expected {list(spec.shape)}{flat}"
    if not np.issubdtype(head.dtype, np.integer):
        return f"{name}: token array has dtype {head.dtype}, expected integers"
    if head.data_bytes > MAX_TOKEN_BYTES:
        return f"{name}: token array of shape {head.shape} holds {head.data_bytes} bytes, more than {MAX_TOKEN_BYTES}"
    if head.stored_bytes > head.header_bytes + head.data_bytes:
        return (f"{name}: declares {head.stored_bytes} bytes uncompressed but its header describes "
                f"{head.header_bytes + head.data_bytes} (a corrupt or crafted file)")
    return None


def decode_sample(
    raw: Mapping[str, tuple[str, bytes]], modalities: tuple[str, ...] | list[str], specs: Mapping[str, ModalitySpec],
) -> dict[str, np.ndarray] | SampleProblem:
    """The sample's flat int64 token arrays for ``modalities``, or the first :class:`SampleProblem` found."""
    out: dict[str, np.ndarray] = {}
    for name in modalities:
        if name not in raw:
            return SampleProblem("missing_modality", f"no file for modality '{name}'")
        member, data = raw[name]
        spec = specs[name]
        try:
            problem = member_problem(member, data, spec)
            if problem is not None:
                return SampleProblem("bad_tokens", problem)
            array = decode_tokens(member, data)
        except Exception as exc:  # any undecodable member is bad data, never a crash
            return SampleProblem("decode_error", f"{name}: {exc}")
        problem = spec.check_tokens(array)
        if problem is not None:
            return SampleProblem("bad_tokens", problem)
        out[name] = array.reshape(-1)
    return out
