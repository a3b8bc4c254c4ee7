"""A literal restatement of the original's per-sample masking (SPEC 4.2): the baseline for the
benchmark and the reference law for the statistical tests. Not part of the package."""

from __future__ import annotations

import random

import torch


def reference_budget(alphas: torch.Tensor, total: int, caps: torch.Tensor) -> torch.Tensor:
    """Dirichlet split with torch.distributions, floor, leftovers by argmax of extra draws, cap."""
    dist = torch.distributions.Dirichlet(alphas.clamp_min(1e-9))
    budget = (dist.sample() * total).floor().long()
    diff = total - int(budget.sum())
    if diff > 0:
        budget += torch.bincount(dist.sample((diff,)).argmax(-1), minlength=alphas.numel())
    return torch.minimum(budget, caps)


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
