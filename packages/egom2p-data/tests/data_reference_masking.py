"""A restatement of the original's masking (``UnifiedMasking``, docs/original-behaviour.md#per-sample-budgets):
the baseline for the benchmark and the reference law for the statistical tests. Not part of the package.

The original builds ``Dirichlet(torch.clamp(torch.tensor(alphas), min=1e-9))`` from Python floats, i.e.
float32 concentrations, and samples it on CPU: :func:`original_shares` is exactly that call. Its sampler
clamps every share to ``[FLT_MIN, 1 - 2^-24]``, so ``floor(p * N) < N`` and at least one token always goes
through a leftover draw.
"""

from __future__ import annotations

import random

import torch


def original_shares(alphas: torch.Tensor) -> torch.Tensor:
    """Dirichlet draws (one per row of ``alphas``) the way the original draws them: float32, clamped at 1e-9."""
    return torch.distributions.Dirichlet(alphas.to(torch.float32).clamp(min=1e-9)).sample()


def unclamped_shares(alphas: torch.Tensor) -> torch.Tensor:
    """Exact float64 Gamma ratios, where a share can be exactly 1 (this package's law before issue 13).

    Not the original: the statistical tests use it to show that they detect this difference.
    """
    gamma = torch.distributions.Gamma(alphas.to(torch.float64).clamp(min=1e-9), 1.0).sample()
    return gamma / gamma.sum(-1, keepdim=True)


def reference_budget(alphas: torch.Tensor, total: int, caps: torch.Tensor) -> torch.Tensor:
    """One sample's budget, literally as the original: split, floor, leftovers by argmax of extra draws, cap."""
    dist = torch.distributions.Dirichlet(alphas.to(torch.float32).clamp(min=1e-9))
    budget = (dist.sample() * total).floor().long()
    diff = total - int(budget.sum())
    if diff > 0:
        budget += torch.bincount(dist.sample((diff,)).argmax(-1), minlength=alphas.numel())
    return torch.minimum(budget, caps)


def reference_budgets(alphas: torch.Tensor, totals: torch.Tensor, caps: torch.Tensor, shares=original_shares) -> torch.Tensor:
    """:func:`reference_budget` for n independent samples at once (``alphas`` [n, M], ``totals`` [n], ``caps`` [n, M]).

    The same law: rows of one Dirichlet call are independent draws of the same sampler, and the original's
    ``diff`` leftover draws are the first ``diff`` of M extra draws per sample (``diff`` is at most M).
    """
    n, m = alphas.shape
    budget = (shares(alphas) * totals[:, None]).floor().long()
    diff = totals - budget.sum(1)
    assert bool((diff >= 0).all()) and bool((diff <= m).all()), "the original's leftover count is in [0, M]"
    winners = shares(alphas[:, None, :].expand(n, m, m)).argmax(-1)  # [n, M]: argmax of each extra draw
    used = torch.arange(m)[None, :] < diff[:, None]
    budget += torch.nn.functional.one_hot(winners, m).mul(used[..., None]).sum(1)
    return torch.minimum(budget, caps)


def reference_sample_budgets(input_alphas: torch.Tensor, target_alphas: torch.Tensor, weights: torch.Tensor | None,
                             caps: torch.Tensor, n: int, n_in: int, n_tg: int, shares=original_shares) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and target budgets of n samples (``*_alphas`` [K, M] tables, ``caps`` [M]).

    Steps 1-4 of docs/original-behaviour.md#per-sample-budgets.
    """
    k = input_alphas.shape[0]
    comp = torch.multinomial(weights, n, replacement=True) if weights is not None else torch.randint(0, k, (n,))
    caps = caps.expand(n, -1)
    b_in = reference_budgets(input_alphas[comp], torch.full((n,), n_in), caps, shares)
    b_tg = reference_budgets(target_alphas[comp], torch.full((n,), n_tg), caps - b_in, shares)
    return b_in, b_tg


def reference_mask_sample(tokens: dict, input_alphas: torch.Tensor, target_alphas: torch.Tensor, weights: torch.Tensor,
                          n_in: int, n_tg: int) -> dict:
    """One sample as the original does it: component, budgets, then argsort(rand(L)) per modality."""
    names = sorted(tokens)
    caps = torch.tensor([tokens[n].numel() for n in names])
    k = int(torch.multinomial(weights, 1))
    b_in = reference_budget(input_alphas[k], n_in, caps)
    b_tg = reference_budget(target_alphas[k], n_tg, caps - b_in)
    out = {}
    for i, name in enumerate(names):
        length = int(caps[i])
        ranks = torch.argsort(torch.argsort(torch.rand(length)))
        out[name] = {"tensor": tokens[name].reshape(-1), "input_mask": ranks >= b_in[i],
                     "target_mask": (ranks < b_in[i]) | (ranks >= b_in[i] + b_tg[i])}
    return out


def seed_reference(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
