"""Valid tokens and FLOPs of a step's batches: what ``mfu_computed``, ``mfu_valid`` and ``valid_tok_s`` count.

The FLOP formulas are the model's cost module's (:mod:`egom2p.model.cost`: ``flops_per_sample``, forward +
backward = 3 x forward; projections, MLPs, attention and heads; multiply-add = 2 FLOPs):

* **valid FLOPs**: the formula per sample over its valid tokens, ``flops_per_sample(N_i, M_i, M_i by
  modality)`` with ``N_i`` the encoder inputs and ``M_i`` the decoder targets the model keeps (budgets
  applied by :func:`egom2p.core.packing.kept_tokens`, the model's rule), summed over the samples;
* **computed FLOPs**: the valid FLOPs plus, for every padding slot the step computes, one token's linear
  work (``padding_flops``: every layer's projections and MLP; a padded decoder slot has no head). Slots are rows x row width
  of a packed batch, or batch x budget of an unpacked one. Attention between different samples of a
  packed row is masked and skipped block-wise, so it is not counted.

``mfu_valid = valid FLOPs / s / peak`` is the figure to compare with other trainers; ``mfu_computed`` shows
what padding costs on top (equal when nothing is padded).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from egom2p.core.packing import PackedBatch, kept_tokens
from egom2p.model.cost import flops_per_sample, padding_flops

__all__ = ["BatchTokens", "batch_flops", "count_tokens"]


@dataclass(frozen=True)
class BatchTokens:
    """Valid tokens per sample and the slots a forward computes for one (micro) batch."""

    encoder: tuple[int, ...]  # valid encoder tokens per sample
    decoder: tuple[dict[str, int], ...]  # valid decoder targets per sample, by modality
    encoder_slots: int
    decoder_slots: int

    @property
    def valid(self) -> int:
        """Valid encoder + decoder tokens of the batch."""
        return sum(self.encoder) + sum(sum(d.values()) for d in self.decoder)


def _masked_counts(batch: Mapping[str, Mapping[str, torch.Tensor]], budgets: tuple[int | None, int | None]) -> BatchTokens:
    names = sorted(batch)
    size = batch[names[0]]["tensor"].shape[0]
    enc = kept_tokens({n: batch[n]["input_mask"] for n in names}, budgets[0]).sum(1)
    wanted = kept_tokens({n: batch[n]["target_mask"] for n in names}, budgets[1])
    widths = [batch[n]["target_mask"].reshape(size, -1).shape[1] for n in names]
    per_mod = torch.stack([part.sum(1) for part in wanted.split(widths, 1)], 1).tolist()
    enc_slots = size * (budgets[0] if budgets[0] is not None else int(enc.max()) if size else 0)
    dec_total = wanted.sum(1)
    dec_slots = size * (budgets[1] if budgets[1] is not None else int(dec_total.max()) if size else 0)
    return BatchTokens(tuple(enc.tolist()), tuple({n: c for n, c in zip(names, row) if c} for row in per_mod),
                       enc_slots, dec_slots)


def count_tokens(batch: PackedBatch | Mapping[str, Mapping[str, torch.Tensor]],
                 budgets: tuple[int | None, int | None] = (None, None)) -> BatchTokens:
    """Valid tokens and computed slots of a packed batch or a masked batch (CPU tensors, before the step).

    ``budgets`` (input, target) apply to a masked batch (the model's per-sample budgets); a packed batch
    has them applied already.
    """
    if isinstance(batch, PackedBatch):
        return BatchTokens(*batch.sample_tokens(), *batch.slots)
    return _masked_counts({k: v for k, v in batch.items() if "input_mask" in v}, budgets)


def batch_flops(model: Any, tokens: BatchTokens) -> tuple[float, float]:
    """``(computed, valid)`` training FLOPs of one batch for ``model`` (an ``EgoM2P``; see the module docstring)."""
    valid = sum(flops_per_sample(model.config, n, sum(d.values()), d) for n, d in zip(tokens.encoder, tokens.decoder))
    pad_enc, pad_dec = padding_flops(model.config)
    enc_pad = tokens.encoder_slots - sum(tokens.encoder)
    dec_pad = tokens.decoder_slots - sum(sum(d.values()) for d in tokens.decoder)
    return valid + enc_pad * pad_enc + dec_pad * pad_dec, float(valid)
