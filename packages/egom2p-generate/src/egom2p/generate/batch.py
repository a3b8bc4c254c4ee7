"""The working copy of the batch that generation fills in, and its way back to the caller's layout.

Generation validates the caller's batch with the one batch contract (``egom2p.core.batch``), keeps a
flat working copy ``{name: {tensor [B, N] int64, input_mask [B, N], target_mask [B, N]}}`` on the
model's device, and writes it back into a deep copy of the caller's dict in the caller's layout
(grid-shaped tensors stay grid-shaped).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from egom2p.core.batch import MaskedBatch, validate_batch
from egom2p.core.modalities import ModalitySpec


def empty_target(batch_size: int, num_tokens: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A modality still to be generated: zeros, not an input, every position a target.

    As the original's (docs/original-behaviour.md#inputs).
    """
    return {
        "tensor": torch.zeros(batch_size, num_tokens, dtype=torch.long, device=device),
        "input_mask": torch.ones(batch_size, num_tokens, dtype=torch.bool, device=device),
        "target_mask": torch.zeros(batch_size, num_tokens, dtype=torch.bool, device=device),
    }


def flatten_batch(
    batch: Mapping[str, Mapping[str, Any]],
    modalities: Mapping[str, ModalitySpec],
    device: torch.device,
) -> tuple[MaskedBatch, int]:
    """Validate ``batch`` against the model's modalities and return (flat working copy, batch size).

    A modality given without masks counts as fully given conditioning (as the original's
    ``init_full_input_modality``). Raises ``ValueError`` naming the modality and key.
    """
    validated = validate_batch(batch, modalities, require_masks=False)
    # copy=True: the working copy is updated in place and must never alias the caller's tensors
    flat = {
        name: {
            "tensor": item.ids.to(device=device, copy=True),
            "input_mask": item.input_mask.to(device=device, copy=True),
            "target_mask": item.target_mask.to(device=device, copy=True),
        }
        for name, item in validated.items()
    }
    return flat, next(iter(validated.values())).ids.shape[0]


def unflatten_into(original: Mapping[str, Mapping[str, Any]], flat: MaskedBatch) -> MaskedBatch:
    """Deep copy of ``original`` with the flat working tensors written back in the caller's shapes.

    Modalities that exist only in ``flat`` (targets the sampler created) are returned flat, [B, N].
    """
    out: dict[str, dict[str, Any]] = {name: dict(entry) for name, entry in copy.deepcopy(dict(original)).items()}
    for name, item in flat.items():
        entry = out.setdefault(name, {})
        for key, value in item.items():
            old = entry.get(key)
            shape = tuple(old.shape) if isinstance(old, torch.Tensor) else tuple(value.shape)
            entry[key] = value.clone().reshape(shape)
    return out
