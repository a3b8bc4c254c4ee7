"""The packed-batch contract (data -> model): key names and the check that recognises one.

``egom2p.data.packing.pack_batch`` builds it and ``egom2p.model`` consumes it; the layout of each
entry is documented in :mod:`egom2p.data.packing` and docs/contracts.md. No torch needed.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PACKED_KEYS", "PACKED_SIDE_KEYS", "is_packed_batch"]

PACKED_KEYS = ("encoder", "decoder", "targets")
PACKED_SIDE_KEYS = ("ids", "modality", "positions", "samples", "lengths")


def is_packed_batch(batch: Mapping[str, object]) -> bool:
    """True for a packed batch: exactly the keys ``encoder``, ``decoder`` and ``targets``."""
    return set(batch) == set(PACKED_KEYS)
