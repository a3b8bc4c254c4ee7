"""Checking and normalising the modality dict that generation works on.

Generation keeps a flat working copy `{name: {tensor [B, N] int64, input_mask [B, N], target_mask
[B, N]}}` on the model's device, and writes it back into a deep copy of the caller's dict in the
caller's layout (grid-shaped tensors stay grid-shaped).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch

Batch = dict[str, dict[str, torch.Tensor]]


def modality_num_tokens(spec: Any) -> int:
    """Token count of a model modality spec (`ModalitySpec.num_tokens`, or grid/length)."""
    n = getattr(spec, "num_tokens", None)
    if n is not None:
        return int(n)
    grid = getattr(spec, "grid", None)
    return int(math.prod(grid)) if grid is not None else int(spec.length)


def empty_target(batch_size: int, num_tokens: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A modality still to be generated: zeros, not an input, every position a target (SPEC 7.1)."""
    return {
        "tensor": torch.zeros(batch_size, num_tokens, dtype=torch.long, device=device),
        "input_mask": torch.ones(batch_size, num_tokens, dtype=torch.bool, device=device),
        "target_mask": torch.zeros(batch_size, num_tokens, dtype=torch.bool, device=device),
    }


def full_condition(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """A fully given conditioning modality from tokens [B, N] or [B, *grid] (SPEC 7.1)."""
    batch_size = tokens.shape[0]
    n = tokens[0].numel()
    return {
        "tensor": tokens.long(),
        "input_mask": torch.zeros(batch_size, n, dtype=torch.bool, device=tokens.device),
        "target_mask": torch.ones(batch_size, n, dtype=torch.bool, device=tokens.device),
    }


def flatten_batch(
    batch: Mapping[str, Mapping[str, torch.Tensor]],
    modalities: Mapping[str, Any],
    device: torch.device,
) -> tuple[Batch, int]:
    """Validate `batch` against the model's modalities and return (flat working copy, batch size).

    A modality given without masks counts as fully given conditioning (as the original's
    `init_full_input_modality`).
    """
    if not isinstance(batch, Mapping):
        raise ValueError(f"batch must be a dict modality -> dict of tensors, got {type(batch).__name__}")
    flat: Batch = {}
    batch_size = None
    for name, entry in batch.items():
        if name not in modalities:
            raise ValueError(f"batch modality {name!r} is unknown to this checkpoint; known: {sorted(modalities)}")
        if not isinstance(entry, Mapping) or "tensor" not in entry:
            raise ValueError(f"batch[{name!r}] must be a dict with a 'tensor' entry")
        n = modality_num_tokens(modalities[name])
        tokens = torch.as_tensor(entry["tensor"])
        if tokens.dim() < 2 or tokens[0].numel() != n:
            raise ValueError(
                f"batch[{name!r}]['tensor'] has shape {tuple(tokens.shape)}; expected [B, {n}] or [B, *grid] "
                f"with {n} tokens per sample"
            )
        if tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise ValueError(f"batch[{name!r}]['tensor'] must hold integer token ids, got {tokens.dtype}")
        if batch_size is None:
            batch_size = tokens.shape[0]
        elif tokens.shape[0] != batch_size:
            raise ValueError(f"batch[{name!r}] has batch size {tokens.shape[0]}, other modalities {batch_size}")
        given = {"input_mask", "target_mask"} & set(entry)
        if not given:
            entry = full_condition(tokens)
        elif len(given) == 1:
            raise ValueError(f"batch[{name!r}] has only {sorted(given)}; give both input_mask and target_mask")
        # clone: the working copy is updated in place and must never alias the caller's tensors
        item = {"tensor": tokens.reshape(batch_size, n).to(device=device, dtype=torch.long, copy=True)}
        for key in ("input_mask", "target_mask"):
            mask = torch.as_tensor(entry[key])
            if mask.shape[0] != batch_size or mask[0].numel() != n:
                raise ValueError(f"batch[{name!r}][{key!r}] has shape {tuple(mask.shape)}; expected [{batch_size}, {n}]")
            item[key] = mask.reshape(batch_size, n).to(device=device, dtype=torch.bool, copy=True)
        flat[name] = item
    if batch_size is None:
        raise ValueError("batch is empty: give at least one modality (conditioning or target)")
    return flat, batch_size


def unflatten_into(original: Mapping[str, Mapping[str, Any]], flat: Batch) -> Batch:
    """Deep copy of `original` with the flat working tensors written back in the caller's shapes.

    Modalities that exist only in `flat` (targets the sampler created) are returned flat, [B, N].
    """
    out: Batch = {name: dict(entry) for name, entry in copy.deepcopy(dict(original)).items()}
    for name, item in flat.items():
        entry = out.setdefault(name, {})
        for key, value in item.items():
            old = entry.get(key)
            shape = tuple(old.shape) if isinstance(old, torch.Tensor) else tuple(value.shape)
            entry[key] = value.clone().reshape(shape)
    return out
