"""Token sampling primitives: top-k / top-p filtering and temperature sampling (docs/original-behaviour.md#sampling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

ARGMAX_TEMPERATURE = 1e-10


def top_k_top_p_filtering(logits: torch.Tensor, top_k: float = 0.0, top_p: float = 0.0) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (top-p) set to -inf, in place; returns `logits`.

    `logits` is [..., V]. `top_k`: an int keeps the k largest; a float in (0, 1] keeps that fraction
    of the vocabulary (k = int(top_k * V), at least 1); 0 disables. `top_p` in (0, 1]: keep the
    smallest set of most likely tokens whose cumulative probability reaches top_p (the token that
    crosses the threshold and the top-1 token are always kept); 0 disables.
    """
    vocab = logits.shape[-1]
    if top_k and top_k > 0:
        if isinstance(top_k, float):
            if top_k > 1.0:
                raise ValueError(f"top_k={top_k}: a float top_k is a fraction of the vocabulary and must be <= 1")
            k = max(1, int(top_k * vocab))
        else:
            k = int(top_k)
        k = min(k, vocab)
        kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits.masked_fill_(logits < kth_largest, float("-inf"))
    if top_p and top_p > 0:
        if top_p > 1.0:
            raise ValueError(f"top_p={top_p} must be in (0, 1]")
        sorted_logits, sorted_indices = torch.sort(logits, dim=-1, descending=True)
        cum_probs = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove_sorted = cum_probs > top_p
        # Shift right: the token that first crosses the threshold stays, and so does the top-1.
        remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
        remove_sorted[..., 0] = False
        remove = torch.zeros_like(remove_sorted).scatter_(-1, sorted_indices, remove_sorted)
        logits.masked_fill_(remove, float("-inf"))
    return logits


def sample_tokens(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: float = 0.0,
    top_p: float = 0.0,
    generator: torch.Generator | None = None,
    filter_after_temperature: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of `logits` [T, V]; returns (tokens int64 [T], their probabilities [T]).

    |temperature| <= 1e-10 means argmax, with probability 1 reported for every token (as the
    original). Otherwise the logits are filtered (top-k/top-p) and sampled from
    softmax(logits / temperature) with `torch.multinomial` drawing from `generator`. The original
    filters *before* dividing by the temperature (quirk 31 in docs/original-behaviour.md#quirks); that stays the
    default for parity, and `filter_after_temperature=True` gives the usual order. `logits` is not modified.
    """
    if logits.dim() != 2:
        raise ValueError(f"sample_tokens expects logits [T, V], got shape {tuple(logits.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if abs(temperature) <= ARGMAX_TEMPERATURE:
        tokens = logits.argmax(dim=-1)
        return tokens, torch.ones(tokens.shape, dtype=torch.float32, device=logits.device)
    logits = logits.float()
    if filter_after_temperature:
        scaled = top_k_top_p_filtering(logits / temperature, top_k, top_p)
    else:
        scaled = top_k_top_p_filtering(logits.clone(), top_k, top_p) / temperature
    probs = F.softmax(scaled, dim=-1)
    tokens = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return tokens, probs.gather(-1, tokens[:, None])[:, 0]
