"""Packing: the kept tokens of several samples of a masked batch in shared rows, on the CPU.

The released masking fills on average about half of each sample's 2048 + 2048 slots; a one-row-per-
sample batch computes the rest as padding. :func:`pack_batch` puts the encoder inputs and decoder
targets of all samples of a batch into ``num_rows`` rows whose widths are rounded up to a multiple of
``multiple`` (a small set of static shapes), with a sample id per token, so that attention keeps
every sample to itself. The model's loss on the packed batch is the loss of the unpacked batch.

The result is an :class:`egom2p.core.packing.PackedBatch` (its docstring gives the layout). A sample
keeps the tokens of the model's selection rule (:func:`egom2p.core.packing.kept_tokens`); samples are
spread over the rows by :func:`egom2p.core.packing.balance_rows`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from egom2p.core.packing import PackedBatch, PackedSide, balance_rows, kept_tokens
from torch import Tensor

__all__ = ["pack_batch"]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _flatten(batch: Mapping[str, Mapping[str, Tensor]]) -> tuple[list[str], Tensor, dict, dict, Tensor, Tensor]:
    """Concatenated ids [B, N], input / target masks per modality [B, N_m], modality index [N] and position [N]."""
    if not isinstance(batch, Mapping) or not batch:
        raise ValueError("pack_batch needs a non-empty masked batch: modality -> {tensor, input_mask, target_mask}")
    names = sorted(batch)
    ids, modality, positions = [], [], []
    masks: dict[str, dict[str, Tensor]] = {"input_mask": {}, "target_mask": {}}
    batch_size = None
    for i, name in enumerate(names):
        entry = batch[name]
        missing = [k for k in ("tensor", "input_mask", "target_mask") if k not in entry]
        if missing:
            raise ValueError(f"batch[{name!r}] is missing {missing[0]!r}")
        t = torch.as_tensor(entry["tensor"])
        size = t.shape[0] if t.dim() else -1
        if batch_size is None:
            batch_size = size
        if t.dim() < 2 or size != batch_size:
            raise ValueError(f"batch[{name!r}]['tensor'] has shape {tuple(t.shape)}; expected [B={batch_size}, ...]")
        t = t.reshape(batch_size, -1)
        n = t.shape[1]
        for key, out in masks.items():
            mask = torch.as_tensor(entry[key])
            if mask.dtype != torch.bool or mask.numel() != batch_size * n:
                raise ValueError(f"batch[{name!r}][{key!r}] must be bool [{batch_size}, {n}], got {mask.dtype} {tuple(mask.shape)}")
            out[name] = mask.reshape(batch_size, n)
        ids.append(t.long())
        modality.append(torch.full((n,), i, dtype=torch.int32))
        positions.append(torch.arange(n))
    return (names, torch.cat(ids, 1), masks["input_mask"], masks["target_mask"], torch.cat(modality),
            torch.cat(positions))


def _place(chosen: Tensor, row_of: Tensor, num_rows: int, multiple: int) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Slots of the chosen tokens: (sample, token) pairs, their flat slot ``r * L + j``, row lengths, L."""
    counts = chosen.sum(dim=1)
    lengths = torch.zeros(num_rows, dtype=torch.int64).index_add_(0, row_of, counts)
    # A sample starts after the earlier samples of its row.
    same_row_before = (row_of[None, :] == row_of[:, None]) & (torch.arange(len(counts))[None, :] < torch.arange(len(counts))[:, None])
    start = (same_row_before * counts[None, :]).sum(dim=1)
    width = _round_up(int(lengths.max()) if num_rows else 0, multiple)
    sample, token = chosen.nonzero(as_tuple=True)  # by sample, then concatenation order
    rank = (torch.cumsum(chosen, dim=1) - 1)[sample, token]
    slot = row_of[sample] * width + start[sample] + rank
    return sample, token, slot, lengths, width


def _side(ids: Tensor, modality: Tensor, positions: Tensor, sample: Tensor, token: Tensor, slot: Tensor,
          lengths: Tensor, num_rows: int, width: int) -> PackedSide:
    def fill(values: Tensor, empty: int, dtype: torch.dtype) -> Tensor:
        out = torch.full((num_rows * width,), empty, dtype=dtype)
        return out.index_copy_(0, slot, values.to(dtype)).view(num_rows, width)

    return PackedSide(
        ids=fill(ids[sample, token], 0, torch.int64),
        modality=fill(modality[token], -1, torch.int32),
        positions=fill(positions[token], 0, torch.int64),
        samples=fill(sample, -1, torch.int32),
        lengths=lengths.to(torch.int32),
    )


def pack_batch(
    batch: Mapping[str, Mapping[str, Tensor]],
    num_input_tokens: int | None = None,
    num_target_tokens: int | None = None,
    *,
    num_rows: int = 1,
    multiple: int = 256,
) -> PackedBatch:
    """Pack a masked batch (the batch contract, CPU tensors) into a :class:`~egom2p.core.packing.PackedBatch`.

    Args:
        batch: modality -> {tensor [B, N_m] or [B, *grid], input_mask, target_mask}.
        num_input_tokens / num_target_tokens: the model's per-sample budgets (None: every selected token).
        num_rows: rows per side (static); samples are spread over them largest first, balancing the
            rows' token counts. One row suits the Triton kernel, which skips other samples' blocks;
            dense attention backends (sdpa on CPU) pay rows x width^2 and may prefer a few rows.
        multiple: row widths and the per-modality target capacities ``C_m`` are rounded up to a
            multiple of this, which keeps the set of shapes small (torch.compile, CUDA graphs).
    """
    if num_rows < 1 or multiple < 1:
        raise ValueError(f"num_rows and multiple must be >= 1, got {num_rows} and {multiple}")
    names, ids, input_mask, target_mask, modality, positions = _flatten(batch)
    inputs = kept_tokens(input_mask, num_input_tokens, "num_input_tokens")
    targets = kept_tokens(target_mask, num_target_tokens, "num_target_tokens")
    row_of = torch.zeros(inputs.shape[0], dtype=torch.int64)
    for r, members in enumerate(balance_rows((inputs.sum(1) + targets.sum(1)).tolist(), num_rows)):
        row_of[members] = r

    sample, token, slot, lengths, width = _place(inputs, row_of, num_rows, multiple)
    encoder = _side(ids, modality, positions, sample, token, slot, lengths, num_rows, width)
    sample, token, slot, lengths, width = _place(targets, row_of, num_rows, multiple)
    decoder = _side(ids, modality, positions, sample, token, slot, lengths, num_rows, width)
    target_slots = {}
    for i, name in enumerate(names):
        mine = slot[modality[token] == i]  # already by sample, then position
        padded = torch.full((_round_up(len(mine), multiple),), -1, dtype=torch.int64)
        target_slots[name] = padded.index_copy_(0, torch.arange(len(mine)), mine)
    return PackedBatch(encoder, decoder, target_slots)

