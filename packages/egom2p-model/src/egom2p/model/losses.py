"""Output heads and the loss reductions of the original (docs/original-behaviour.md#losses)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from egom2p.core.enums import LossType


def cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, fused: bool = False, chunk_size: int | None = None
) -> torch.Tensor:
    """Sum of CE of ``hidden @ weight.T`` ([T, D] x [V, D]) against ``targets`` [T], in float32.

    With no targets the result is an exact 0 that still depends on ``weight`` (as in the
    original), so every head gets a (zero) gradient and DDP sees no unused parameter.
    """
    if hidden.shape[0] == 0:
        return F.linear(hidden, weight).float().sum()
    if fused:
        from egom2p.model.kernels.fused_linear_ce import fused_linear_cross_entropy

        return fused_linear_cross_entropy(hidden, weight, targets, chunk_size=chunk_size).float()
    return F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="sum")


# The original's weighted_mod writes this constant out: ln(256), its reference codebook size.
LN_256 = math.log(256)


def scale_mod_losses(
    mod_loss: Mapping[str, torch.Tensor], vocab_sizes: Mapping[str, int], loss_type: str | LossType
) -> dict[str, torch.Tensor]:
    """Per-modality losses as the original reports them for ``loss_type``.

    ``weighted_mod`` rescales each modality's mean loss to a 256-token codebook,
    ``L_m / ln(V_m) * ln(256)`` (the same operations in the same order as the original), so a
    uniform guess scores ln(256) in every modality; every other loss type reports ``L_m`` as is.
    """
    if LossType.parse(loss_type, "loss_type") is not LossType.WEIGHTED_MOD:
        return dict(mod_loss)
    small = sorted(m for m in mod_loss if vocab_sizes[m] < 2)
    if small:
        raise ValueError(f"loss_type 'weighted_mod' divides by ln(vocab_size): modalities {small} have vocab_size 1")
    return {m: loss / math.log(vocab_sizes[m]) * LN_256 for m, loss in mod_loss.items()}


def reduce_losses(
    mod_loss: Mapping[str, torch.Tensor],
    num_targets: Mapping[str, int],
    vocab_sizes: Mapping[str, int],
    loss_type: str | LossType,
) -> torch.Tensor:
    """Combine per-modality mean losses into the training loss.

    - ``mod`` (released): mean over every modality in the batch dict, including ones without
      targets (they add an exact 0 but count in the denominator, quirk 1 in docs/original-behaviour.md#quirks).
    - ``token``: weighted by targets x vocabulary size, as the original's ``logits.numel()`` (quirk 2 there).
    - ``mod_present``: mean over the modalities that have at least one target (ours; what the
      original's validation effectively reports). 0 when no modality has targets.
    - ``weighted_mod``: like ``mod`` over the losses rescaled by ``scale_mod_losses``.
    """
    loss_type = LossType.parse(loss_type, "loss_type")
    names = list(mod_loss)
    if loss_type in (LossType.MOD, LossType.WEIGHTED_MOD):
        reported = scale_mod_losses(mod_loss, vocab_sizes, loss_type)
        return sum(reported[m] for m in names) / len(names)
    if loss_type is LossType.TOKEN:
        weights = {m: num_targets[m] * vocab_sizes[m] for m in names}
        total = sum(weights.values())
        weighted = sum(mod_loss[m] * weights[m] for m in names)
        # counts may be 0-dim tensors (the sync-free step): clamp instead of branching on their value
        return weighted / (total.clamp(min=1) if torch.is_tensor(total) else max(total, 1))
    # a modality without targets has an exact, graph-connected 0 loss: summing all equals summing the present
    present = sum(num_targets[m] > 0 for m in names)
    total = sum(mod_loss[m] for m in names)
    return total / (present.clamp(min=1) if torch.is_tensor(present) else max(present, 1))
