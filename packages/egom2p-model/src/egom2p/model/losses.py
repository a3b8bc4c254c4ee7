"""Output heads and the loss reductions of the original (SPEC 3)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from egom2p.core.enums import LossType


def cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, fused: bool = False, chunk_size: int = 4096
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


def reduce_losses(
    mod_loss: Mapping[str, torch.Tensor],
    num_targets: Mapping[str, int],
    vocab_sizes: Mapping[str, int],
    loss_type: str | LossType,
) -> torch.Tensor:
    """Combine per-modality mean losses into the training loss.

    - ``mod`` (released): mean over every modality in the batch dict, including ones without
      targets (they add an exact 0 but count in the denominator, quirk 1).
    - ``token``: weighted by targets x vocabulary size, as the original's ``logits.numel()`` (quirk 2).
    - ``mod_present``: mean over the modalities that have at least one target (ours; what the
      original's validation effectively reports). 0 when no modality has targets.
    """
    loss_type = LossType.parse(loss_type, "loss_type")
    names = list(mod_loss)
    if loss_type is LossType.MOD:
        return sum(mod_loss[m] for m in names) / len(names)
    if loss_type is LossType.TOKEN:
        weights = {m: num_targets[m] * vocab_sizes[m] for m in names}
        total = sum(weights.values())
        weighted = sum(mod_loss[m] * weights[m] for m in names)
        return weighted / total if total else weighted
    present = [m for m in names if num_targets[m] > 0]
    if not present:
        return sum(mod_loss[m] for m in names)  # an exact, graph-connected 0
    return sum(mod_loss[m] for m in present) / len(present)
