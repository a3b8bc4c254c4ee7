"""Gradient accumulation: the micro-batches of one optimizer step, forward and backward.

:func:`accumulate` runs ``accum`` micro-batches through the recipe, each loss scaled by ``1 / accum`` before its
backward, with DDP's gradient all-reduce on the last one only. The micro-batches run without reading the device;
one transfer of the losses follows them. The update (clipping, the non-finite guard, the optimizer step) is the
trainer's (:meth:`egom2p.train.trainer.Trainer.train_step`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from egom2p.core.packing import PackedBatch
from egom2p.train.recipe import Recipe, autocast_context
from torch import nn


@dataclass
class Accumulated:
    """What the micro-batches of one step leave besides their gradients."""

    micro_losses: list[float]  # each micro-batch's loss, on the host
    scalars: dict[str, float]  # the recipe's named values, averaged over the micro-batches (sorted by name)
    bad_batches: list[Any]  # the micro-batches whose loss is not finite, on the CPU (for debug_batch.pt)
    flops_computed: float  # this rank's training FLOPs, padding included
    flops_valid: float  # ... of the valid tokens only
    valid_tokens: int

    @property
    def loss(self) -> float:
        """The step's loss: the mean of its micro-batches' losses."""
        return sum(self.micro_losses) / len(self.micro_losses)

    @property
    def finite(self) -> bool:
        """Whether every micro-batch's loss is finite."""
        return all(math.isfinite(v) for v in self.micro_losses)


def accumulate(model: nn.Module, bare_model: nn.Module, recipe: Recipe, batches: Iterator[Any], accum: int,
               device: torch.device, dtype: str) -> Accumulated:
    """Forward and backward ``accum`` micro-batches from ``batches`` (``model`` may be the DDP/FSDP wrapper of
    ``bare_model``, which the recipe prepares batches for) under ``dtype`` autocast; gradients add up in place."""
    losses, sums, batches_seen = [], {}, []
    flops_computed = flops_valid = 0.0
    valid_tokens = 0
    for micro in range(accum):
        batch, work = recipe.prepare_batch(bare_model, next(batches), device)
        flops_computed, flops_valid = flops_computed + work.flops_computed, flops_valid + work.flops_valid
        valid_tokens += work.valid_tokens
        last = micro == accum - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast_context(device, dtype):
                loss, named = recipe.forward(model, batch, True)
            (loss / accum).backward()
        losses.append(loss.detach().float())
        for name, value in named.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float() / accum
        batches_seen.append(batch)
    names = sorted(sums)
    host = torch.stack(losses + [sums[n] for n in names]).cpu().tolist()
    micro_losses = host[:accum]
    bad = [_to_cpu(b) for b, loss in zip(batches_seen, micro_losses) if not math.isfinite(loss)]
    return Accumulated(micro_losses, dict(zip(names, host[accum:])), bad, flops_computed, flops_valid, valid_tokens)


def _to_cpu(batch: Any) -> Any:
    """A batch (tensors in nested dicts, a packed batch, or a tensor) on the CPU as plain dicts and tensors, for
    ``debug_batch.pt`` (``torch.load(..., weights_only=True)`` reads it; ``PackedBatch.from_dict`` rebuilds a packed one)."""
    if isinstance(batch, PackedBatch):
        return batch.to("cpu").as_dict()
    if isinstance(batch, torch.Tensor):
        return batch.cpu()
    if isinstance(batch, Mapping):
        return {k: _to_cpu(v) for k, v in batch.items()}
    return batch
