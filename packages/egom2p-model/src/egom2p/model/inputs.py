"""Token layouts: which tokens the encoder and the decoder compute, laid out in rows of static width.

Selection is :func:`egom2p.core.packing.kept_tokens`, the rule the packer and the trainer's counting
share: a sample keeps its first ``budget`` selected tokens in concatenation order, the modalities
concatenated in sorted name order (the original used dict order for the encoder and a random order
for the decoder; neither changes what a token sees under the non-causal masks).

A :class:`TokenLayout` comes from one of three places:
- :func:`select_tokens` (a masked batch, the batch contract): one row per sample. With a budget the
  row width is the budget, a static shape, and nothing reads the device (the training path); with
  ``budget=None`` rows are trimmed to the fullest sample (one host sync; inference).
- :func:`read_packed_batch` (a :class:`~egom2p.core.packing.PackedBatch`): rows holding several
  samples each, built on the CPU by the loader; ``samples`` says which token belongs to which sample.
- :func:`pack_layout` (inference): the valid tokens of a one-row-per-sample layout re-packed on the
  device, so that guided generation computes each pass's own tokens only.
In every layout the valid slots of a row are its prefix ``j < lengths[r]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from egom2p.core.batch import ModalityBatch
from egom2p.core.modalities import ModalitySpec
from egom2p.core.packing import PackedBatch, PackedSide, kept_tokens

# Target ids at padded head slots: ``F.cross_entropy``'s and the fused loss's default ignore_index.
IGNORE_INDEX = -100


@dataclass
class TokenLayout:
    """The tokens one side of the model computes, in ``R`` rows of ``L`` slots."""

    ids: torch.Tensor  # int64 [R, L], 0 at padding
    modality: torch.Tensor  # int64 [R, L], index into the model's modality list, -1 at padding
    positions: torch.Tensor  # int64 [R, L], position inside the modality, 0 at padding
    lengths: torch.Tensor  # int32 [R]; valid slots are the prefix j < lengths[r]
    samples: torch.Tensor | None = None  # int32 [R, L], the token's sample, -1 at padding; None: row r is sample r

    @property
    def valid(self) -> torch.Tensor:
        """Bool ``[R, L]``: True at selected (non-padding) slots."""
        slots = torch.arange(self.ids.shape[1], device=self.ids.device)
        return slots[None, :] < self.lengths[:, None]


def select_tokens(
    inputs: Mapping[str, ModalityBatch],
    modality_index: Mapping[str, int],
    side: str,
    budget: int | None,
) -> TokenLayout:
    """Pick the encoder inputs (``side='input'``) or decoder targets (``side='target'``), one row per sample.

    ``budget`` is the original's ``num_encoder_tokens``/``num_decoder_tokens``: at most that many
    tokens per sample, in concatenation order, in rows exactly ``budget`` wide (no host sync).
    ``None`` = every selected token, rows as wide as the fullest sample (reads the lengths: one sync).
    """
    first = next(iter(inputs.values()))
    device, batch = first.ids.device, first.ids.shape[0]
    total = sum(m.ids.shape[1] for m in inputs.values())
    if budget is not None and (budget < 0 or budget > total):
        raise ValueError(f"num_{'encoder' if side == 'input' else 'decoder'}_tokens={budget} must be in [0, {total}] "
                         f"(the number of tokens of the modalities in the batch)")
    ids = torch.cat([m.ids for m in inputs.values()], dim=1)  # ``inputs`` is in sorted name order, as kept_tokens
    kept = kept_tokens({name: (m.input_mask if side == "input" else m.target_mask) for name, m in inputs.items()}, budget)
    modality = torch.cat(
        [torch.full((m.ids.shape[1],), modality_index[name], dtype=torch.int64, device=device) for name, m in inputs.items()]
    )
    positions = torch.cat([torch.arange(m.ids.shape[1], device=device) for m in inputs.values()])
    lengths = kept.sum(dim=1)
    if budget is None:
        width = int(lengths.max()) if batch else 0  # host sync: inference only
    else:
        width = budget
    # Kept tokens first, each sample's in concatenation order; slots past its length are padding.
    order = torch.sort((~kept).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=device)[None, :] < lengths[:, None]
    return TokenLayout(
        ids=torch.where(valid, ids.gather(1, order), 0),
        modality=torch.where(valid, modality[order], -1),
        positions=torch.where(valid, positions[order], 0),
        lengths=lengths.to(torch.int32),
    )


def target_slots(layout: TokenLayout, modality_index: Mapping[str, int], num_tokens: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Per modality, the flat slot (``r * L + j``) of each of its targets in ``layout``, in slot order.

    A static shape without a host sync: modality ``m`` gets ``R * min(L, num_tokens[m])`` entries (the
    most it can have), the unused ones -1. Only for one-row-per-sample layouts; a packed batch brings
    its own (tighter) index.
    """
    flat = layout.modality.reshape(-1)
    rows, width = layout.ids.shape
    out = {}
    for name, index in modality_index.items():
        capacity = rows * min(width, num_tokens[name])
        here = flat == index
        rank = torch.cumsum(here, 0) - 1  # k-th target of the modality -> entry k
        dest = torch.where(here, rank, capacity)  # everything else lands in one dump entry, cut off below
        slots = torch.full((capacity + 1,), -1, dtype=torch.int64, device=flat.device)
        out[name] = slots.scatter(0, dest, torch.arange(flat.numel(), device=flat.device))[:capacity]
    return out


def _layout(side: PackedSide, to_model: list[int]) -> TokenLayout:
    """One side of a packed batch as a layout, its modality indices (into the batch's sorted modalities)
    mapped to the model's."""
    modality = side.modality.long()
    if to_model != list(range(len(to_model))):  # batch index -> model index (Python scalars: no host-to-device copy)
        remapped = torch.full_like(modality, -1)
        for index, model_index in enumerate(to_model):
            remapped = torch.where(modality == index, model_index, remapped)
        modality = remapped
    return TokenLayout(ids=side.ids.long(), modality=modality, positions=side.positions.long(),
                       lengths=side.lengths.to(torch.int32), samples=side.samples.to(torch.int32))


def read_packed_batch(
    batch: PackedBatch, specs: Mapping[str, ModalitySpec], check_values: bool = True
) -> tuple[TokenLayout, TokenLayout, dict[str, torch.Tensor]]:
    """The encoder and decoder layouts and the per-modality target slots of a packed batch.

    The batch's modality indices refer to its sorted modalities; they are mapped to positions in the
    model's sorted modality list (``specs``). The structure was checked when the batch was built; with
    ``check_values`` (a debug check that reads the device) also every index and token id
    (:meth:`PackedBatch.check_values`).
    """
    to_model = batch.modality_indices(list(specs))
    if check_values:
        batch.check_values(specs)
    slots = {name: batch.targets[name].long() for name in batch.modality_names}
    return _layout(batch.encoder, to_model), _layout(batch.decoder, to_model), slots


def pack_layout(layout: TokenLayout, rows: Sequence[Sequence[int]]) -> tuple[TokenLayout, list[int]]:
    """Re-pack a one-row-per-sample layout into ``rows`` (lists of samples, e.g. from
    :func:`egom2p.model.cost.inference_rows`).

    Inference only (reads the lengths). Each sample's tokens stay contiguous and in order; rows are as
    wide as the fullest. Returns the packed layout (``samples`` set) and the row of each sample.
    """
    lengths = layout.lengths.tolist()
    row_of, start, fill = [0] * len(lengths), [0] * len(lengths), []
    for r, members in enumerate(rows):
        offset = 0
        for s in members:
            row_of[s], start[s] = r, offset
            offset += lengths[s]
        fill.append(offset)
    width = max(fill, default=0)
    device = layout.ids.device
    src_row, src_slot = layout.valid.nonzero(as_tuple=True)
    dest = torch.tensor(row_of, device=device)[src_row] * width + torch.tensor(start, device=device)[src_row] + src_slot

    def place(values: torch.Tensor, empty: int) -> torch.Tensor:
        out = torch.full((len(rows) * width,), empty, dtype=values.dtype, device=device)
        return out.index_copy(0, dest, values[src_row, src_slot]).view(len(rows), width)

    samples = torch.arange(layout.ids.shape[0], dtype=torch.int32, device=device)[:, None].expand_as(layout.ids)
    packed = TokenLayout(
        ids=place(layout.ids, 0),
        modality=place(layout.modality, -1),
        positions=place(layout.positions, 0),
        lengths=torch.tensor(fill, dtype=torch.int32, device=device),
        samples=place(samples, -1),
    )
    return packed, row_of
