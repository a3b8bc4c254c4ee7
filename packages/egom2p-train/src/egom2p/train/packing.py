"""How the trainer packs a micro batch: ``loader.pack_rows`` rows, or (``null``) the cheapest row count.

The cheapest is judged by the model's :meth:`~egom2p.model.EgoM2P.packed_work` among 1, 2, 4, ... rows up to
the batch size: with the Triton kernel that is one row (fewest slots; other samples' blocks are skipped);
``sdpa`` on the CPU skips them too when rows are long enough for per-run attention to pay, and otherwise
computes every pair of a row, so short rows (the demo's) go into a few rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from egom2p.core.enums import AttnBackend
from egom2p.data.packing import pack_batch

__all__ = ["pack_micro_batch", "row_samples"]

Batch = dict[str, dict[str, torch.Tensor]]


def _row_counts(batch_size: int) -> list[int]:
    counts, rows = [], 1
    while rows <= max(batch_size, 1):
        counts.append(rows)
        rows *= 2
    return counts


def row_samples(packed: Mapping[str, Mapping[str, torch.Tensor]]) -> list[list[tuple[int, int]]]:
    """Per row of a packed batch, the ``(encoder tokens, decoder tokens)`` of each sample in it (``packed_work``'s rows)."""
    rows = []
    for enc, dec in zip(packed["encoder"]["samples"].long(), packed["decoder"]["samples"].long()):
        size = int(torch.cat([enc, dec, enc.new_full((1,), -1)]).max()) + 1
        enc_counts = torch.bincount(enc[enc >= 0], minlength=size).tolist()
        dec_counts = torch.bincount(dec[dec >= 0], minlength=size).tolist()
        rows.append([(e, d) for e, d in zip(enc_counts, dec_counts) if e or d])
    return rows


def pack_micro_batch(model: Any, raw: Mapping[str, Mapping[str, torch.Tensor]], budgets: tuple[int | None, int | None],
                     num_rows: int | None, multiple: int) -> Batch:  # fmt: skip
    """Pack a masked micro batch (CPU tensors) for ``model`` (an ``EgoM2P``): ``num_rows`` rows, or the cheapest."""
    if num_rows is None and model.attn_backend is AttnBackend.TRITON:
        num_rows = 1  # work is linear in the slots there, and one row has the fewest
    if num_rows is not None:
        return pack_batch(raw, *budgets, num_rows=num_rows, multiple=multiple)
    batch_size = next(iter(raw.values()))["tensor"].shape[0]
    best, best_work = None, None
    for rows in _row_counts(batch_size):
        packed = pack_batch(raw, *budgets, num_rows=rows, multiple=multiple)
        work = model.packed_work(row_samples(packed), (packed["encoder"]["ids"].shape[1], packed["decoder"]["ids"].shape[1]))
        if best_work is None or work < best_work:
            best, best_work = packed, work
    return best
