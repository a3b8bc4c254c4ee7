"""Fused kernels of egom2p-model, and the reference they are checked against.

- ``reference``: the one visibility rule of attention (key and query lengths, segment ids, causal),
  its owner ``AttentionMask`` that every backend takes, and the plain PyTorch attention that applies
  it; the bottom of the stack (it imports no other module here).
- ``flash_attention``: masked FlashAttention-2 (forward + backward) in Triton, reading per-sample
  lengths and per-token segment ids instead of an N x N mask (``flash_attention.py``, kernels in
  ``_attention_kernels.py``).
- ``fused_linear_cross_entropy``: output head + cross-entropy in token chunks, never holding the
  ``[T, V]`` logits (``fused_linear_ce.py``; on CUDA a Triton row kernel, ``_ce_kernel.py``, works
  in place on each chunk's logits; elsewhere PyTorch).

The offline sm_90 compile check of these kernels (spills, shared memory, load pipelining; no GPU) is a
development tool outside the wheel: ``python ci/kernel_compile_check.py``.

This package imports without Triton; only the Triton kernels need it, and they are imported on
first use so that ``from egom2p.model.kernels import fused_linear_cross_entropy`` works everywhere.
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
