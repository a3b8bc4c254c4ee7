"""The one per-sample check: what the training loader skips is exactly what ``egom2p-data validate`` reports.

A sample is ``{modality: (member name, bytes)}`` as read from the shards. :func:`decode_sample` returns its
int64 token arrays, or a :class:`SampleProblem` (``missing_modality``, ``decode_error`` or ``bad_tokens``).

Before a member is decompressed, its ``.npy`` header is read (core's :func:`~egom2p.core.shards.read_token_header`;
:func:`decode_sample` checks it inside the one decoding pass): the shape must fit
the modality (:meth:`ModalitySpec.check_tokens`'s shapes), the dtype must be an integer type, and an
``.npz`` member may not declare more uncompressed bytes than its header describes. A crafted member (a
zlib bomb: 800 MB from 800 KB, or a header claiming a huge shape) is rejected from a few hundred bytes,
never inflated. Without a modality spec (``egom2p-data inspect``) arrays above :data:`MAX_TOKEN_BYTES` are
rejected the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

import numpy as np
from egom2p.core.modalities import ModalitySpec
from egom2p.core.shards import TokenHeader, decode_tokens, read_token_header

__all__ = ["MAX_TOKEN_BYTES", "SampleProblem", "decode_sample", "header_problem", "member_problem"]

#: Largest token array accepted when no modality spec bounds it (the released rgb sample is 40 KB as int64).
MAX_TOKEN_BYTES = 64 << 20


class SampleProblem(NamedTuple):
    """Why a sample is skipped: a ``reason`` (the loader's ``stats["by_reason"]`` key) and a one-line ``detail``."""

    reason: str
    detail: str


def member_problem(name: str, data: bytes, spec: ModalitySpec | None) -> str | None:
    """Why the token file ``name`` must not be decoded (shape, dtype or size from its header), or None.

    ``spec`` bounds the shape; without one the array may hold at most :data:`MAX_TOKEN_BYTES`.
    """
    return header_problem(name, read_token_header(name, data), spec)


def header_problem(name: str, head: TokenHeader, spec: ModalitySpec | None) -> str | None:
    """:func:`member_problem` from an already read header."""
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


class _BadHeader(Exception):
    """A header :func:`header_problem` refuses: the member is never inflated."""


def _refuse_bad_header(name: str, spec: ModalitySpec, head: TokenHeader) -> None:
    problem = header_problem(name, head, spec)
    if problem is not None:
        raise _BadHeader(problem)


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
            array = decode_tokens(member, data, partial(_refuse_bad_header, member, spec))
        except _BadHeader as refused:
            return SampleProblem("bad_tokens", str(refused))
        except Exception as exc:  # any undecodable member is bad data, never a crash
            return SampleProblem("decode_error", f"{name}: {exc}")
        problem = spec.check_tokens(array)
        if problem is not None:
            return SampleProblem("bad_tokens", problem)
        out[name] = array.reshape(-1)
    return out
