"""EgoM2P's token-budget masking (docs/original-behaviour.md#masking), per sample and batched.

Per sample: pick a mixture component k (``sampling_weights`` or uniform), budgets ``N_in`` / ``N_tg``
uniform in ``[min, num]``, split each budget over the modalities with a Dirichlet(max(alpha_k, 1e-9)) draw
(floor, then each leftover token goes to the argmax of one more Dirichlet draw), clamp the input budget to
the modality's token count and the target budget to what the input left; then choose disjoint uniformly
random input and target positions. Output follows the batch contract: ``tensor`` int64 ``[B, N_m]``,
``input_mask`` / ``target_mask`` bool ``[B, N_m]`` with True = NOT an input / NOT a target.

The Dirichlet shares follow the original's ``torch.distributions.Dirichlet`` in float32 on CPU, not the
exact law: each Gamma draw is clamped below at the smallest normal double, the share is rounded to float32
and clamped to ``[FLT_MIN, 1 - 2^-24]``, and ``floor(share * N)`` is taken in float32. So one modality
never takes a whole budget by itself (at least one token goes through a leftover draw), and a component
whose alphas are all 0 splits evenly (every Gamma draw underflows to the same value; leftovers go to the
first modality, torch's argmax of a tie). :func:`float32_dirichlet_shares` is that step.

Everything is driven by one ``torch.Generator`` (or an int seed), so a seed gives the same masks in any
process. This module needs only torch at import (no numpy, PyYAML or egom2p.core).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from egom2p.data.alphas import AlphasConfig, load_alphas_config, per_modality_alphas
from egom2p.data.sampling import random_disjoint_masks, sample_log_gamma
from torch import Tensor

if TYPE_CHECKING:  # egom2p.core imports PyYAML; masking stays importable with torch alone
    from egom2p.core.modalities import ModalitySpec

__all__ = ["UnifiedMasking", "as_generator", "float32_dirichlet_shares"]

MIN_ALPHA = 1e-9  # the original clamps concentrations to this before sampling
# torch's CPU Dirichlet sampler: Gamma draws (in double) clamped below at DBL_MIN, shares cast to float32
# and clamped to [FLT_MIN, nexttoward(1, 0)] (ATen/native/Distributions.cpp, _s_dirichlet_cpu).
LOG_MIN_GAMMA = math.log(sys.float_info.min)
MIN_SHARE = torch.finfo(torch.float32).tiny
MAX_SHARE = 1.0 - 2.0**-24
Seed = int | torch.Generator | None


def as_generator(seed: Seed) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed, an existing generator (returned as is) or None (random)."""
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def float32_dirichlet_shares(log_gamma: Tensor) -> Tensor:
    """Dirichlet shares over the last dim from log Gamma draws, as torch's float32 CPU sampler returns them.

    ``log_gamma`` (float64) holds ``log X_i`` with ``X_i ~ Gamma(alpha_i)``; the result is float32
    ``X_i / sum X`` after the sampler's clamps (module docstring): never exactly 0 or 1.
    """
    clamped = log_gamma.clamp_min(LOG_MIN_GAMMA)
    shares = torch.exp(clamped - torch.logsumexp(clamped, dim=-1, keepdim=True))
    return shares.to(torch.float32).clamp_(MIN_SHARE, MAX_SHARE)


def _token_counts(modalities: Mapping[str, int | ModalitySpec]) -> dict[str, int]:
    out = {}
    for name in sorted(modalities):
        value = modalities[name]
        n = value.num_tokens if hasattr(value, "num_tokens") else int(value)  # a ModalitySpec or a count
        if n <= 0:
            raise ValueError(f"modality '{name}' must have a positive token count, got {n}")
        out[name] = n
    return out


def _range(value: Sequence[int], key: str) -> tuple[int, int]:
    lo, hi = (int(v) for v in value)
    if not 0 <= lo <= hi:
        raise ValueError(f"{key} must satisfy 0 <= min <= max, got ({lo}, {hi})")
    return lo, hi


class UnifiedMasking:
    """Mixture-of-Dirichlet token-budget masking over one dataset's modalities.

    Args:
        modalities: name -> token count (or :class:`~egom2p.core.modalities.ModalitySpec`) of the dataset's modalities.
        input_alphas / target_alphas: name -> K concentrations (one per mixture component); a modality
            missing here gets 0 (it never receives budget unless all others are 0 too, as in the original).
        sampling_weights: K component weights, or None for a uniform choice.
        input_tokens_range / target_tokens_range: inclusive (min, max) of the per-sample budgets.
    """

    def __init__(
        self,
        modalities: Mapping[str, int | ModalitySpec],
        input_alphas: Mapping[str, Sequence[float]],
        target_alphas: Mapping[str, Sequence[float]],
        sampling_weights: Sequence[float] | None = None,
        input_tokens_range: Sequence[int] = (2048, 2048),
        target_tokens_range: Sequence[int] = (2048, 2048),
    ) -> None:
        self.num_tokens = _token_counts(modalities)
        if not self.num_tokens:
            raise ValueError("UnifiedMasking needs at least one modality")
        self.names = list(self.num_tokens)
        unknown = (set(input_alphas) | set(target_alphas)) - set(self.names)
        if unknown:
            raise ValueError(f"alphas given for modalities {sorted(unknown)} that are not in {self.names}")
        ks = {len(v) for v in (*input_alphas.values(), *target_alphas.values())}
        if len(ks) != 1:
            raise ValueError(f"all alphas lists must have the same length, got lengths {sorted(ks)}")
        k = ks.pop()

        def table(alphas: Mapping[str, Sequence[float]]) -> Tensor:
            # float32 like the original's torch.tensor(alphas); the Gamma sampler reads them as doubles.
            cols = [torch.tensor(alphas.get(n, [0.0] * k), dtype=torch.float32) for n in self.names]
            return torch.stack(cols, dim=1).clamp_min(MIN_ALPHA).to(torch.float64)  # [K, M]

        self.input_alphas = table(input_alphas)
        self.target_alphas = table(target_alphas)
        if sampling_weights is not None:
            w = torch.tensor([float(x) for x in sampling_weights], dtype=torch.float64)
            if w.numel() != k or bool((w < 0).any()) or float(w.sum()) <= 0:
                raise ValueError(f"sampling_weights needs {k} non-negative entries with a positive sum, got {w.tolist()}")
            self.sampling_weights: Tensor | None = w
        else:
            self.sampling_weights = None
        self.input_tokens_range = _range(input_tokens_range, "input_tokens_range")
        self.target_tokens_range = _range(target_tokens_range, "target_tokens_range")
        self._max_tokens = torch.tensor([self.num_tokens[n] for n in self.names], dtype=torch.int64)
        self._length_groups: dict[int, list[int]] = {}
        for i, name in enumerate(self.names):
            self._length_groups.setdefault(self.num_tokens[name], []).append(i)

    @classmethod
    def from_config(
        cls,
        modalities: Mapping[str, int | ModalitySpec],
        in_domains: Iterable[str],
        out_domains: Iterable[str],
        num_input_tokens: int,
        num_target_tokens: int,
        alphas_config: AlphasConfig | str | os.PathLike | Mapping[str, Any] | None = None,
        input_alphas: str | float | None = None,
        target_alphas: str | float | None = None,
        min_input_tokens: int | None = None,
        min_target_tokens: int | None = None,
        enforce_domains: bool = False,
    ) -> UnifiedMasking:
        """Build the masking of one dataset the way the original's ``setup_sampling_mod_info`` does.

        With ``alphas_config`` every modality of ``in_domains | out_domains`` gets both its input and its
        target alphas from the file (quirk 11 in docs/original-behaviour.md#quirks: the released behaviour);
        ``enforce_domains=True`` zeroes the input alphas of modalities not in ``in_domains`` and the target alphas of those not in
        ``out_domains``. Without it, ``input_alphas`` / ``target_alphas`` (``"a"`` or ``"a1-a2-..."``) give
        one concentration per sorted in / out domain (:func:`~egom2p.data.alphas.per_modality_alphas`), the
        other modalities get 0, and there is a single component.
        """
        in_set, out_set = set(in_domains), set(out_domains)
        names = sorted(in_set | out_set)
        missing = [n for n in names if n not in modalities]
        if missing:
            raise ValueError(f"domains {missing} are not in the modality set {sorted(modalities)}")
        mods = {n: modalities[n] for n in names}
        if alphas_config is not None:
            if input_alphas is not None or target_alphas is not None:
                raise ValueError("input_alphas / target_alphas have no effect with an alphas_config (the original "
                                 "ignores them): give one or the other")
            cfg = alphas_config if isinstance(alphas_config, AlphasConfig) else load_alphas_config(alphas_config)
            absent = [n for n in names if n not in cfg.input_alphas]
            if absent:
                raise ValueError(f"alphas config has no entry for modalities {absent}")
            inp = {n: cfg.input_alphas[n] for n in names}
            tgt = {n: cfg.target_alphas[n] for n in names}
            weights = cfg.sampling_weights
            if enforce_domains:
                inp = {n: v for n, v in inp.items() if n in in_set}
                tgt = {n: v for n, v in tgt.items() if n in out_set}
        else:
            if input_alphas is None or target_alphas is None:
                raise ValueError("give either alphas_config or both input_alphas and target_alphas")
            inp = {n: (a,) for n, a in per_modality_alphas(input_alphas, in_set, "input_alphas").items()}
            tgt = {n: (a,) for n, a in per_modality_alphas(target_alphas, out_set, "target_alphas").items()}
            weights = None
        k = len(next(iter({**inp, **tgt}.values())))
        inp = {n: inp.get(n, (0.0,) * k) for n in names}
        tgt = {n: tgt.get(n, (0.0,) * k) for n in names}
        return cls(
            mods,
            inp,
            tgt,
            sampling_weights=weights,
            input_tokens_range=(num_input_tokens if min_input_tokens is None else min_input_tokens, num_input_tokens),
            target_tokens_range=(num_target_tokens if min_target_tokens is None else min_target_tokens, num_target_tokens),
        )

    # -- budgets -----------------------------------------------------------------------------------

    @staticmethod
    def _split_budget(shares: Tensor, extra_log_gamma: Tensor, totals: Tensor, caps: Tensor) -> Tensor:
        """Dirichlet split of ``totals`` [B] over M modalities, leftover tokens by argmax, capped at ``caps``.

        ``shares`` [B, M] is the float32 Dirichlet draw; ``extra_log_gamma`` [B, M, M] holds M extra draws
        per sample (log Gamma variates clamped like the shares: their argmax, first index on ties, is the
        argmax of the normalised draw); the first ``N - sum(floor(p * N))`` of them each give one token to
        their argmax modality. With float32 shares below 1 that count is between 1 and M.
        """
        m = shares.shape[1]
        budget = torch.floor(shares * totals[:, None].to(torch.float32)).to(torch.int64)
        leftover = (totals - budget.sum(1)).clamp(0, m)
        used = torch.arange(m)[None, :] < leftover[:, None]
        winners = extra_log_gamma.clamp_min(LOG_MIN_GAMMA).argmax(-1)
        budget += torch.nn.functional.one_hot(winners, m).mul_(used[..., None]).sum(1)
        return torch.minimum(budget, caps)

    def sample_budgets(self, batch_size: int, generator: Seed = None) -> tuple[Tensor, Tensor]:
        """Per-sample input and target token budgets, each int64 ``[batch_size, M]`` in sorted-name order."""
        gen = as_generator(generator)
        k, m = self.input_alphas.shape
        if self.sampling_weights is not None:
            comp = torch.multinomial(self.sampling_weights, batch_size, replacement=True, generator=gen)
        else:
            comp = torch.randint(0, k, (batch_size,), generator=gen)
        lo, hi = self.input_tokens_range
        n_in = torch.randint(lo, hi + 1, (batch_size,), generator=gen)
        lo, hi = self.target_tokens_range
        n_tg = torch.randint(lo, hi + 1, (batch_size,), generator=gen)
        # All Gamma variates of a batch in one call: per side, 1 share draw + M leftover draws of M each.
        alphas = torch.stack([self.input_alphas[comp], self.target_alphas[comp]], 1)  # [B, 2, M]
        log_g = sample_log_gamma(alphas[:, :, None, :].expand(batch_size, 2, m + 1, m), gen)
        shares = float32_dirichlet_shares(log_g[:, :, 0])
        caps = self._max_tokens[None, :].expand(batch_size, -1)
        b_in = self._split_budget(shares[:, 0], log_g[:, 0, 1:], n_in, caps)
        b_tg = self._split_budget(shares[:, 1], log_g[:, 1, 1:], n_tg, caps - b_in)
        return b_in, b_tg

    # -- masks -------------------------------------------------------------------------------------

    def _flatten(self, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``[B, *shape]`` token tensors of every modality as int64 ``[B, N_m]`` (checked against N_m)."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise ValueError(f"sample lacks modalities {missing} (masking expects {self.names})")
        out = {}
        for name in self.names:
            t = torch.as_tensor(tensors[name])
            t = t.reshape(t.shape[0], -1)
            if t.shape[1] != self.num_tokens[name]:
                raise ValueError(f"modality '{name}' has {t.shape[1]} tokens per sample, expected {self.num_tokens[name]}")
            out[name] = t.to(torch.int64)
        return out

    def mask_batch(self, tensors: Mapping[str, Tensor], generator: Seed = None) -> dict[str, dict[str, Tensor]]:
        """Mask a whole batch at once: ``tensors[name]`` is ``[B, *shape]``; returns the batch contract dict."""
        flat = self._flatten(tensors)
        batch = next(iter(flat.values())).shape[0]
        gen = as_generator(generator)
        b_in, b_tg = self.sample_budgets(batch, gen)
        masks: dict[str, dict[str, Tensor]] = {}
        # Modalities of equal length share one call (rows stacked), which keeps the per-call overhead low.
        for length, group in self._length_groups.items():
            cols = torch.tensor(group)
            first = b_in[:, cols].T.reshape(-1)
            second = b_tg[:, cols].T.reshape(-1)
            in_bits, tg_bits = random_disjoint_masks(length, first, second, gen)
            for j, i in enumerate(group):
                name = self.names[i]
                masks[name] = {
                    "tensor": flat[name],
                    "input_mask": ~in_bits[j * batch : (j + 1) * batch],
                    "target_mask": ~tg_bits[j * batch : (j + 1) * batch],
                }
        return {name: masks[name] for name in self.names}

    def __call__(self, sample: Mapping[str, Tensor], generator: Seed = None) -> dict[str, dict[str, Tensor]]:
        """Mask one sample (``sample[name]`` of the modality's shape); returns unbatched ``[N_m]`` tensors."""
        out = self.mask_batch({n: torch.as_tensor(sample[n]).reshape(1, -1) for n in self.names if n in sample}, generator)
        return {n: {k: v[0] for k, v in d.items()} for n, d in out.items()}
