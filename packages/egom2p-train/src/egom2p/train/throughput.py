"""Valid tokens and FLOPs of a step's batches: what ``mfu_computed``, ``mfu_valid`` and ``valid_tok_s`` count.

The FLOP formula is the model's, :meth:`EgoM2P.flops_per_sample` (forward + backward = 3 x forward;
projections, MLPs, attention and heads; multiply-add = 2 FLOPs):

* **valid FLOPs**: the formula per sample over its valid tokens, ``flops_per_sample(N_i, M_i, M_i by
  modality)`` with ``N_i`` the encoder inputs and ``M_i`` the decoder targets the model keeps (budgets
  applied), summed over the samples;
* **computed FLOPs**: the valid FLOPs plus, for every padding slot the step computes, one token's linear
  work (every layer's projections and MLP; a padded decoder slot has no head). Slots are rows x row width
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
from egom2p.core.packing import is_packed_batch

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


def _packed_counts(packed: Mapping[str, Mapping[str, torch.Tensor]]) -> BatchTokens:
    names = sorted(packed["targets"])
    enc, dec = packed["encoder"], packed["decoder"]
    enc_samples = enc["samples"].reshape(-1).long()
    dec_samples, dec_mod = dec["samples"].reshape(-1).long(), dec["modality"].reshape(-1).long()
    size = int(torch.cat([enc_samples, dec_samples, enc_samples.new_full((1,), -1)]).max()) + 1
    per_enc = torch.bincount(enc_samples[enc_samples >= 0], minlength=size)
    keep = dec_samples >= 0
    per_dec = torch.bincount(dec_samples[keep] * len(names) + dec_mod[keep], minlength=size * len(names))
    per_dec = per_dec.view(size, len(names)).tolist()
    return BatchTokens(tuple(per_enc.tolist()), tuple({n: c for n, c in zip(names, row) if c} for row in per_dec),
                       enc["ids"].numel(), dec["ids"].numel())


def _masked_counts(batch: Mapping[str, Mapping[str, torch.Tensor]], budgets: tuple[int | None, int | None]) -> BatchTokens:
    names = sorted(batch)
    size = batch[names[0]]["tensor"].shape[0]
    given = torch.cat([~batch[n]["input_mask"].reshape(size, -1) for n in names], 1)
    wanted = torch.cat([~batch[n]["target_mask"].reshape(size, -1) for n in names], 1)
    widths = [batch[n]["target_mask"].reshape(size, -1).shape[1] for n in names]
    enc = given.sum(1)
    if budgets[0] is not None:
        enc = enc.clamp(max=budgets[0])
    if budgets[1] is not None:  # the model keeps the first targets in concatenation order
        wanted = wanted & (wanted.cumsum(1) <= budgets[1])
    per_mod = torch.stack([part.sum(1) for part in wanted.split(widths, 1)], 1).tolist()
    enc_slots = size * (budgets[0] if budgets[0] is not None else int(enc.max()) if size else 0)
    dec_total = wanted.sum(1)
    dec_slots = size * (budgets[1] if budgets[1] is not None else int(dec_total.max()) if size else 0)
    return BatchTokens(tuple(enc.tolist()), tuple({n: c for n, c in zip(names, row) if c} for row in per_mod),
                       enc_slots, dec_slots)


def count_tokens(batch: Mapping[str, Mapping[str, torch.Tensor]],
                 budgets: tuple[int | None, int | None] = (None, None)) -> BatchTokens:
    """Valid tokens and computed slots of a packed batch or a masked batch (CPU tensors, before the step).

    ``budgets`` (input, target) apply to a masked batch (the model's per-sample budgets); a packed batch
    has them applied already.
    """
    if is_packed_batch(batch):
        return _packed_counts(batch)
    return _masked_counts({k: v for k, v in batch.items() if "input_mask" in v}, budgets)


def _pad_flops(model: Any) -> tuple[float, float]:
    """One padding slot's linear work (forward + backward) in the encoder and in the decoder."""
    smallest = min(model.modalities, key=lambda k: model.modalities[k].vocab_size)
    head = 3 * 2 * model.config.dim * model.modalities[smallest].vocab_size
    return model.flops_per_sample(1, 0, {}), model.flops_per_sample(0, 1, {smallest: 1}) - head


def batch_flops(model: Any, tokens: BatchTokens) -> tuple[float, float]:
    """``(computed, valid)`` training FLOPs of one batch for ``model`` (an ``EgoM2P``; see the module docstring)."""
    valid = sum(model.flops_per_sample(n, sum(d.values()), d) for n, d in zip(tokens.encoder, tokens.decoder))
    pad_enc, pad_dec = _pad_flops(model)
    enc_pad = tokens.encoder_slots - sum(tokens.encoder)
    dec_pad = tokens.decoder_slots - sum(sum(d.values()) for d in tokens.decoder)
    return valid + enc_pad * pad_enc + dec_pad * pad_dec, float(valid)
