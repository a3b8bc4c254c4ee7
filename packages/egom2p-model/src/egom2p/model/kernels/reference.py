"""The one visibility rule of attention and the plain PyTorch attention that applies it.

Query i of sample b may see key j iff ``j < key_lengths[b]`` (None: all keys), ``i < query_lengths[b]``
(None: all queries) and, when segments are given, ``q_segments[b, i] == k_segments[b, j] >= 0``
(a negative segment id marks padding: such a token sees nothing and is seen by nothing); with
``causal`` additionally ``j <= i``. A query row that sees no key returns zeros (never NaN) and gets
zero gradients.

This module is the bottom of the attention stack: ``egom2p.model.attention`` (the backends) and
the Triton kernels' tests and benchmarks import it; it imports neither. The Triton kernels
implement the same rule from per-token metadata, without building the mask.
"""

from __future__ import annotations

import torch

__all__ = ["attention_visibility", "check_attention_inputs", "masked_attention_reference"]


def check_attention_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_lengths: torch.Tensor | None = None,
    q_segments: torch.Tensor | None = None,
    k_segments: torch.Tensor | None = None,
    query_lengths: torch.Tensor | None = None,
) -> None:
    """ValueError unless q ``[B, H, Nq, Dh]``, k/v ``[B, H, Nk, Dh]`` (one dtype) and the metadata fit the rule."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention expects 4-D q/k/v [B, H, N, Dh], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"incompatible q/k/v shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q/k/v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if (q_segments is None) != (k_segments is None):
        raise ValueError("q_segments and k_segments must be given together")
    batch = q.shape[0]
    for name, lengths in (("key_lengths", key_lengths), ("query_lengths", query_lengths)):
        if lengths is not None and tuple(lengths.shape) != (batch,):
            raise ValueError(f"{name} must have shape [{batch}], got {tuple(lengths.shape)}")
    if q_segments is not None and tuple(q_segments.shape) != (batch, q.shape[2]):
        raise ValueError(f"q_segments must have shape [{batch}, {q.shape[2]}], got {tuple(q_segments.shape)}")
    if k_segments is not None and tuple(k_segments.shape) != (batch, k.shape[2]):
        raise ValueError(f"k_segments must have shape [{batch}, {k.shape[2]}], got {tuple(k_segments.shape)}")


def attention_visibility(
    batch: int,
    num_queries: int,
    num_keys: int,
    device: torch.device,
    key_lengths: torch.Tensor | None = None,
    q_segments: torch.Tensor | None = None,
    k_segments: torch.Tensor | None = None,
    causal: bool = False,
    query_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean ``[B, 1, Nq, Nk]`` mask, True where the query may see the key (the rule above)."""
    mask = torch.ones(batch, 1, num_queries, num_keys, dtype=torch.bool, device=device)
    if key_lengths is not None:
        keys = torch.arange(num_keys, device=device)
        mask = mask & (keys[None, :] < key_lengths.to(device)[:, None])[:, None, None, :]
    if query_lengths is not None:
        queries = torch.arange(num_queries, device=device)
        mask = mask & (queries[None, :] < query_lengths.to(device)[:, None])[:, None, :, None]
    if q_segments is not None or k_segments is not None:
        if q_segments is None or k_segments is None:
            raise ValueError("q_segments and k_segments must be given together")
        same = q_segments[:, None, :, None] == k_segments[:, None, None, :]
        mask = mask & same & (q_segments >= 0)[:, None, :, None]
    if causal:
        rows = torch.arange(num_queries, device=device)[:, None]
        cols = torch.arange(num_keys, device=device)[None, :]
        mask = mask & (cols <= rows)
    return mask


def masked_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_lengths: torch.Tensor | None = None,
    q_segments: torch.Tensor | None = None,
    k_segments: torch.Tensor | None = None,
    causal: bool = False,
    softmax_scale: float | None = None,
    query_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked softmax attention ``[B, H, Nq, Dh]`` in the inputs' dtype (float64 for ground truth).

    The ``reference`` attention backend and the ground truth of the kernel tests and benchmarks.
    """
    check_attention_inputs(q, k, v, key_lengths, q_segments, k_segments, query_lengths)
    batch, _, num_q, head_dim = q.shape
    mask = attention_visibility(
        batch, num_q, k.shape[2], q.device, key_lengths, q_segments, k_segments, causal, query_lengths
    )
    scale = head_dim**-0.5 if softmax_scale is None else softmax_scale
    scores = (q @ k.transpose(-2, -1)) * scale
    sees_any = mask.any(dim=-1, keepdim=True)
    # A row with no visible key would be softmax(all -inf) = NaN: open it, then zero it (which also
    # stops its gradient).
    scores = scores.masked_fill(~(mask | ~sees_any), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.masked_fill(~sees_any, 0.0)
