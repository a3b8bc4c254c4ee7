"""How the trainer packs a micro batch: ``loader.pack_rows`` rows, or (``null``) what the model's cost module
chooses for its attention backend (:func:`egom2p.model.cost.choose_packing`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from egom2p.core.packing import PackedBatch
from egom2p.data.packing import pack_batch
from egom2p.model import EgoM2P
from egom2p.model.cost import choose_packing

__all__ = ["pack_micro_batch"]


def pack_micro_batch(model: EgoM2P, raw: Mapping[str, Mapping[str, torch.Tensor]], budgets: tuple[int | None, int | None],
                     num_rows: int | None, multiple: int) -> PackedBatch:  # fmt: skip
    """Pack a masked micro batch (CPU tensors) for ``model``: ``num_rows`` rows, or the cheapest."""

    def pack(rows: int) -> PackedBatch:
        return pack_batch(raw, *budgets, num_rows=rows, multiple=multiple)

    if num_rows is not None:
        return pack(num_rows)
    batch_size = next(iter(raw.values()))["tensor"].shape[0]
    return choose_packing(model, pack, batch_size)
