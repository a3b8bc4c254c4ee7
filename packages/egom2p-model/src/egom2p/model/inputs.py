"""Token selection: which tokens of a validated batch the encoder and the decoder compute.

Batches are checked against the contract (DESIGN.md section 2) by
:func:`egom2p.core.batch.validate_batch`, which also flattens them to ``ModalityBatch`` entries.

Selection follows the original (SPEC 2.4): concatenate the modalities, stable-sort each sample so
the selected tokens come first in concatenation order, keep the first ``budget``. We concatenate
in sorted modality order (the original used dict order for the encoder and a random order for
the decoder, quirk 8; neither changes what a token sees under the non-causal masks).
Selected tokens form a prefix of each row; the rest is padding. Rows are trimmed to the longest
prefix in the batch: padding is never attended to, so computing it would only cost time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from egom2p.core.batch import ModalityBatch


@dataclass
class TokenSelection:
    """Selected tokens of a batch; valid slots are the prefix ``j < lengths[b]``."""

    ids: torch.Tensor  # int64 [B, N], 0 at padding
    segments: torch.Tensor  # int32 [B, N], index into the model's modality list, -1 at padding
    positions: torch.Tensor  # int64 [B, N], position inside the modality, 0 at padding
    lengths: torch.Tensor  # int32 [B]

    @property
    def valid(self) -> torch.Tensor:
        """Bool ``[B, N]``: True at selected (non-padding) slots."""
        slots = torch.arange(self.ids.shape[1], device=self.ids.device)
        return slots[None, :] < self.lengths[:, None]


def select_tokens(
    inputs: Mapping[str, ModalityBatch],
    modality_index: Mapping[str, int],
    side: str,
    budget: int | None,
) -> TokenSelection:
    """Pick the encoder inputs (``side='input'``) or decoder targets (``side='target'``).

    ``budget`` is the original's ``num_encoder_tokens``/``num_decoder_tokens``: at most that many
    tokens per sample, in concatenation order; None = as many as the fullest sample has.
    """
    first = next(iter(inputs.values()))
    device, batch = first.ids.device, first.ids.shape[0]
    total = sum(m.ids.shape[1] for m in inputs.values())
    if budget is not None and (budget < 0 or budget > total):
        raise ValueError(f"num_{'encoder' if side == 'input' else 'decoder'}_tokens={budget} must be in [0, {total}] "
                         f"(the number of tokens of the modalities in the batch)")
    ids = torch.cat([m.ids for m in inputs.values()], dim=1)
    excluded = torch.cat([(m.input_mask if side == "input" else m.target_mask) for m in inputs.values()], dim=1)
    segments = torch.cat(
        [torch.full((m.ids.shape[1],), modality_index[name], dtype=torch.int32, device=device) for name, m in inputs.items()]
    )
    positions = torch.cat([torch.arange(m.ids.shape[1], device=device) for m in inputs.values()])
    lengths = (~excluded).sum(dim=1)
    if budget is not None:
        lengths = lengths.clamp(max=budget)
    width = int(lengths.max()) if batch else 0
    order = torch.sort(excluded.to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=device)[None, :] < lengths[:, None]
    return TokenSelection(
        ids=torch.where(valid, ids.gather(1, order), 0),
        segments=torch.where(valid, segments[order], -1),
        positions=torch.where(valid, positions[order], 0),
        lengths=lengths.to(torch.int32),
    )
