"""The batch contract between data, model and generate (docs/contracts.md), and its one validator.

A masked batch is ``{modality: {"tensor", "input_mask", "target_mask"}}``: int64 token ids
``[B, N_m]`` (or ``[B, *grid]``), and bool masks ``[B, N_m]`` where True means the token is **not**
an encoder input / **not** a decoder target (4M polarity). This module needs torch; importing
``egom2p.core`` does not import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from egom2p.core.modalities import ModalitySpec

__all__ = ["BATCH_KEYS", "MASK_KEYS", "MaskedBatch", "ModalityBatch", "validate_batch"]

BATCH_KEYS = ("tensor", "input_mask", "target_mask")
#: The masked batch as a type: ``{modality: {"tensor", "input_mask", "target_mask"}}`` (the one alias every package uses).
MaskedBatch = Mapping[str, Mapping[str, torch.Tensor]]
MASK_KEYS = ("input_mask", "target_mask")


@dataclass
class ModalityBatch:
    """One modality of a validated batch, flattened to ``[B, N_m]``."""

    ids: torch.Tensor  # int64
    input_mask: torch.Tensor  # bool, True = not an encoder input
    target_mask: torch.Tensor  # bool, True = not a decoder target


def _as_tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except Exception:
        raise ValueError(f"{where} must be a tensor, got {type(value).__name__}") from None


def _mask(value: Any, where: str, batch_size: int, spec: ModalitySpec) -> torch.Tensor:
    mask = _as_tensor(value, where)
    if mask.dtype != torch.bool:
        raise ValueError(f"{where} must be a bool tensor (True = not used), got {mask.dtype}")
    if mask.dim() < 1 or mask.shape[0] != batch_size or mask[0].numel() != spec.num_tokens:
        raise ValueError(f"{where} has shape {tuple(mask.shape)}; expected [{batch_size}, {spec.num_tokens}]")
    return mask.reshape(batch_size, spec.num_tokens)


def validate_batch(
    batch: Mapping[str, Mapping[str, Any]],
    specs: Mapping[str, ModalitySpec],
    *,
    require_masks: bool = True,
    check_vocab: bool = True,
) -> dict[str, ModalityBatch]:
    """Check ``batch`` against the contract and return its modalities flattened, in sorted name order.

    ``require_masks=False`` lets a modality come without masks: it is then fully given conditioning
    (every token an input, none a target), as the original's ``init_full_input_modality``.
    ``check_vocab`` checks token ids against each vocabulary (one host sync per modality).
    Raises ``ValueError`` naming the modality and key: unknown modality, missing key, wrong dtype or
    shape, differing batch sizes, token ids outside the vocabulary.
    """
    if not isinstance(batch, Mapping) or not batch:
        raise ValueError("batch must be a non-empty dict modality -> {'tensor', 'input_mask', 'target_mask'}")
    out: dict[str, ModalityBatch] = {}
    batch_size: int | None = None
    for name in sorted(batch):
        if name not in specs:
            raise ValueError(f"unknown modality {name!r} in batch; known: {sorted(specs)}")
        spec, entry = specs[name], batch[name]
        if not isinstance(entry, Mapping) or "tensor" not in entry:
            raise ValueError(f"batch[{name!r}] must be a dict with a 'tensor' entry")
        ids = _as_tensor(entry["tensor"], f"batch[{name!r}]['tensor']")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"batch[{name!r}]['tensor'] must hold integer token ids, got {ids.dtype}")
        if ids.dim() < 2 or tuple(ids.shape[1:]) not in (spec.shape, (spec.num_tokens,)):
            raise ValueError(f"batch[{name!r}]['tensor'] has shape {tuple(ids.shape)}; "
                             f"expected [B, {spec.num_tokens}] or [B, *{list(spec.shape)}]")
        if batch_size is None:
            batch_size = ids.shape[0]
        elif ids.shape[0] != batch_size:
            raise ValueError(f"batch[{name!r}] has batch size {ids.shape[0]}, other modalities have {batch_size}")
        ids = ids.reshape(batch_size, spec.num_tokens).long()
        if check_vocab and ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= spec.vocab_size:
                raise ValueError(f"batch[{name!r}]['tensor'] has token ids in [{lo}, {hi}], "
                                 f"outside the vocabulary [0, {spec.vocab_size})")
        given = [k for k in MASK_KEYS if k in entry]
        if not given and not require_masks:
            input_mask = torch.zeros(batch_size, spec.num_tokens, dtype=torch.bool, device=ids.device)
            target_mask = torch.ones(batch_size, spec.num_tokens, dtype=torch.bool, device=ids.device)
        elif len(given) != 2:
            missing = [k for k in MASK_KEYS if k not in entry]
            if given and not require_masks:
                raise ValueError(f"batch[{name!r}] has only {given}; give both input_mask and target_mask")
            raise ValueError(f"batch[{name!r}] is missing {missing[0]!r}")
        else:
            input_mask = _mask(entry["input_mask"], f"batch[{name!r}]['input_mask']", batch_size, spec)
            target_mask = _mask(entry["target_mask"], f"batch[{name!r}]['target_mask']", batch_size, spec)
        out[name] = ModalityBatch(ids=ids, input_mask=input_mask, target_mask=target_mask)
    return out
