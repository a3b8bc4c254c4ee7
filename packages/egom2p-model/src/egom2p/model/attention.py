"""One attention interface with interchangeable backends (docs/contracts.md, "Attention").

Visibility rule shared by every backend: query i of sample b may see key j iff
``j < key_lengths[b]`` (None: all keys) and, when segments are given,
``q_segments[b, i] == k_segments[b, j]``; with ``causal`` additionally ``j <= i``.
A query row that sees no key returns zeros (never NaN) and gets zero gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BACKENDS = ("reference", "sdpa", "triton", "auto")


def visibility_mask(
    batch: int,
    num_queries: int,
    num_keys: int,
    device: torch.device,
    key_lengths: torch.Tensor | None = None,
    q_segments: torch.Tensor | None = None,
    k_segments: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """Boolean ``[B, 1, Nq, Nk]`` mask, True where the query may see the key.

    Used by the ``reference`` and ``sdpa`` backends only; the Triton kernel reads the
    per-token metadata directly and never builds this tensor.
    """
    mask = torch.ones(batch, 1, num_queries, num_keys, dtype=torch.bool, device=device)
    if key_lengths is not None:
        keys = torch.arange(num_keys, device=device)
        mask = mask & (keys[None, :] < key_lengths.to(device)[:, None])[:, None, None, :]
    if q_segments is not None or k_segments is not None:
        if q_segments is None or k_segments is None:
            raise ValueError("q_segments and k_segments must be given together")
        mask = mask & (q_segments[:, None, :, None] == k_segments[:, None, None, :])
    if causal:
        rows = torch.arange(num_queries, device=device)[:, None]
        cols = torch.arange(num_keys, device=device)[None, :]
        mask = mask & (cols <= rows)
    return mask


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_lengths, q_segments, k_segments) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention expects 4-D q/k/v [B, H, N, Dh], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"incompatible q/k/v shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q/k/v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    batch = q.shape[0]
    if key_lengths is not None and tuple(key_lengths.shape) != (batch,):
        raise ValueError(f"key_lengths must have shape [{batch}], got {tuple(key_lengths.shape)}")
    if q_segments is not None and tuple(q_segments.shape) != (batch, q.shape[2]):
        raise ValueError(f"q_segments must have shape [{batch}, {q.shape[2]}], got {tuple(q_segments.shape)}")
    if k_segments is not None and tuple(k_segments.shape) != (batch, k.shape[2]):
        raise ValueError(f"k_segments must have shape [{batch}, {k.shape[2]}], got {tuple(k_segments.shape)}")


def _reference(q, k, v, mask: torch.Tensor) -> torch.Tensor:
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    sees_any = mask.any(dim=-1, keepdim=True)
    # Rows without a visible key: softmax of all -inf is NaN; feed zeros instead and zero the row.
    probs = torch.softmax(scores.masked_fill(~sees_any, 0.0), dim=-1)
    return (probs @ v).masked_fill(~sees_any, 0.0)


def _sdpa(q, k, v, mask: torch.Tensor) -> torch.Tensor:
    sees_any = mask.any(dim=-1, keepdim=True)
    # SDPA returns NaN for a fully masked row; open every key there, then zero the row.
    # masked_fill also stops gradients from flowing back through those rows.
    safe_mask = mask | ~sees_any
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask)
    return out.masked_fill(~sees_any, 0.0)


def _triton(q, k, v, key_lengths, q_segments, k_segments) -> torch.Tensor:
    try:
        from egom2p.model.kernels.flash_attention import flash_attention
    except ImportError as err:  # triton missing, or the kernel module not installed
        raise RuntimeError(
            "attention backend 'triton' needs triton and egom2p.model.kernels.flash_attention; "
            f"import failed ({err}). Use attn_backend='sdpa' or 'reference'."
        ) from err
    return flash_attention(q, k, v, key_lengths, q_segments, k_segments)


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn ``auto`` into a concrete backend: triton on CUDA when it imports, else sdpa."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        try:
            import egom2p.model.kernels.flash_attention  # noqa: F401
        except ImportError:
            return "sdpa"
        return "triton"
    return "sdpa"


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_lengths: torch.Tensor | None = None,
    q_segments: torch.Tensor | None = None,
    k_segments: torch.Tensor | None = None,
    backend: str = "auto",
    causal: bool = False,
) -> torch.Tensor:
    """Masked multi-head attention ``softmax(q k^T / sqrt(Dh)) v`` -> ``[B, H, Nq, Dh]``.

    Args:
        q: ``[B, H, Nq, Dh]``; k, v: ``[B, H, Nk, Dh]``, all the same dtype.
        key_lengths: int ``[B]``; valid keys are the prefix ``j < key_lengths[b]``.
        q_segments, k_segments: int ``[B, Nq]`` / ``[B, Nk]``; a query sees only keys of its segment.
        backend: ``reference`` | ``sdpa`` | ``triton`` | ``auto``.
        causal: also require ``j <= i`` (only the original's causal-decoder variant uses it;
            not supported by the Triton kernel).
    """
    _check_inputs(q, k, v, key_lengths, q_segments, k_segments)
    backend = resolve_backend(backend, q.device)
    batch, heads, num_queries, head_dim = q.shape
    num_keys = k.shape[2]
    if num_keys == 0:  # empty context: nothing to attend to
        return q.new_zeros(batch, heads, num_queries, head_dim)
    if backend == "sdpa" and key_lengths is None and q_segments is None and not causal:
        return F.scaled_dot_product_attention(q, k, v)  # nothing masked: let SDPA pick its fastest kernel
    if backend == "triton":
        if causal:
            raise ValueError("the triton attention backend has no causal mode; use 'sdpa' or 'reference'")
        return _triton(q, k, v, key_lengths, q_segments, k_segments)
    mask = visibility_mask(batch, num_queries, num_keys, q.device, key_lengths, q_segments, k_segments, causal)
    if backend == "reference":
        return _reference(q, k, v, mask)
    return _sdpa(q, k, v, mask)
