"""Fused kernels of egom2p-model, and the reference they are checked against.

- ``reference``: the one visibility rule of attention (key lengths, segment ids, causal) and the
  plain PyTorch attention that applies it; the bottom of the stack (it imports no other module here).
- ``flash_attention``: masked FlashAttention-2 (forward + backward) in Triton, reading per-sample
  key lengths and per-token segment ids instead of an N x N mask (``flash_attention.py``).
- ``fused_linear_cross_entropy``: output head + cross-entropy in token chunks, never holding the
  ``[T, V]`` logits (``fused_linear_ce.py``; pure PyTorch, no Triton needed).

This package imports without Triton; only ``flash_attention`` needs it, and it is imported on first
use so that ``from egom2p.model.kernels import fused_linear_cross_entropy`` works everywhere.
"""

from __future__ import annotations

from typing import Any

__all__ = ["flash_attention", "fused_linear_cross_entropy"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the attention module imports triton.
    if name == "flash_attention":
        from egom2p.model.kernels.flash_attention import flash_attention

        return flash_attention
    if name == "fused_linear_cross_entropy":
        from egom2p.model.kernels.fused_linear_ce import fused_linear_cross_entropy

        return fused_linear_cross_entropy
    raise AttributeError(f"module 'egom2p.model.kernels' has no attribute {name!r}")
