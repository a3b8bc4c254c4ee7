"""Batch validation and token selection (the batch contract of DESIGN.md section 2).

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

from .modalities import ModalitySpec


@dataclass
class ModalityInput:
    """One modality of a validated batch: flat ids and masks, all ``[B, N_m]``."""

    ids: torch.Tensor  # int64
    input_mask: torch.Tensor  # bool, True = not an encoder input
    target_mask: torch.Tensor  # bool, True = not a decoder target


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


def _flat_mask(name: str, key: str, mask, batch: int, spec: ModalitySpec) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"batch[{name!r}][{key!r}] must be a tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"batch[{name!r}][{key!r}] must be a bool tensor (True = not used), got {mask.dtype}")
    if mask.shape[0] != batch or mask[0].numel() != spec.num_tokens:
        raise ValueError(f"batch[{name!r}][{key!r}] has shape {tuple(mask.shape)}; expected [{batch}, {spec.num_tokens}]")
    return mask.reshape(batch, spec.num_tokens)


def parse_batch(batch: Mapping[str, Mapping[str, torch.Tensor]], specs: Mapping[str, ModalitySpec]) -> dict[str, ModalityInput]:
    """Validate a batch dict and return its modalities in sorted name order, flattened.

    Raises ValueError naming the modality and key for unknown modalities, wrong shapes or
    dtypes, inconsistent batch sizes and token ids outside the vocabulary.
    """
    if not isinstance(batch, Mapping) or not batch:
        raise ValueError("batch must be a non-empty dict modality -> {'tensor', 'input_mask', 'target_mask'}")
    parsed: dict[str, ModalityInput] = {}
    batch_size = None
    for name in sorted(batch):
        if name not in specs:
            raise ValueError(f"unknown modality {name!r} in batch; the model has {sorted(specs)}")
        spec, entry = specs[name], batch[name]
        for key in ("tensor", "input_mask", "target_mask"):
            if key not in entry:
                raise ValueError(f"batch[{name!r}] is missing {key!r}")
        ids = entry["tensor"]
        if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"batch[{name!r}]['tensor'] must be an integer tensor, got {getattr(ids, 'dtype', type(ids))}")
        if ids.dim() < 2 or tuple(ids.shape[1:]) not in (spec.shape, (spec.num_tokens,)):
            raise ValueError(
                f"batch[{name!r}]['tensor'] has shape {tuple(ids.shape)}; expected [B, {spec.num_tokens}] or [B, *{list(spec.shape)}]"
            )
        if batch_size is None:
            batch_size = ids.shape[0]
        elif ids.shape[0] != batch_size:
            raise ValueError(f"batch[{name!r}] has batch size {ids.shape[0]}, other modalities have {batch_size}")
        ids = ids.reshape(batch_size, spec.num_tokens).long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= spec.vocab_size):
            raise ValueError(
                f"batch[{name!r}]['tensor'] has token ids in [{int(ids.min())}, {int(ids.max())}], "
                f"outside the vocabulary [0, {spec.vocab_size})"
            )
        parsed[name] = ModalityInput(
            ids=ids,
            input_mask=_flat_mask(name, "input_mask", entry["input_mask"], batch_size, spec),
            target_mask=_flat_mask(name, "target_mask", entry["target_mask"], batch_size, spec),
        )
    return parsed


def select_tokens(
    inputs: Mapping[str, ModalityInput],
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
