"""The one visibility rule of attention, its owner :class:`AttentionMask`, and the plain PyTorch attention
that applies it.

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

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["AttentionMask", "masked_attention_reference"]


@dataclass(frozen=True)
class AttentionMask:
    """Which keys each query may see: the metadata of the rule above; None (False) constrains nothing.

    ``key_lengths``, ``query_lengths``: int ``[B]``; ``q_segments``, ``k_segments``: int ``[B, Nq]`` /
    ``[B, Nk]``, given together; ``causal``: also ``j <= i``. Every attention backend takes one.
    """

    key_lengths: torch.Tensor | None = None
    query_lengths: torch.Tensor | None = None
    q_segments: torch.Tensor | None = None
    k_segments: torch.Tensor | None = None
    causal: bool = False

    def __post_init__(self) -> None:
        if (self.q_segments is None) != (self.k_segments is None):
            raise ValueError("q_segments and k_segments must be given together")

    @classmethod
    def self_attention(
        cls, lengths: torch.Tensor | None = None, segments: torch.Tensor | None = None, causal: bool = False
    ) -> AttentionMask:
        """The mask of self-attention, where the queries are the keys: tokens past ``lengths`` are padding on
        both sides (the Triton kernel does not compute their rows)."""
        return cls(lengths, lengths, segments, segments, causal)

    @property
    def unmasked(self) -> bool:
        """True when every query sees every key."""
        return self.key_lengths is None and self.query_lengths is None and self.q_segments is None and not self.causal

    def tensors(self) -> tuple[torch.Tensor | None, ...]:
        """``(key_lengths, query_lengths, q_segments, k_segments)``: the field order, in which ``AttentionMask(*t)``
        takes them back (the kernels' custom ops take plain tensors)."""
        return self.key_lengths, self.query_lengths, self.q_segments, self.k_segments

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> AttentionMask:
        """This mask with ``fn`` applied to each tensor it holds (a device or dtype move)."""
        return AttentionMask(*(None if t is None else fn(t) for t in self.tensors()), causal=self.causal)

    def check(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """ValueError unless q ``[B, H, Nq, Dh]``, k/v ``[B, H, Nk, Dh]`` (one dtype) and this mask fit together."""
        if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
            raise ValueError(f"attention expects 4-D q/k/v [B, H, N, Dh], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
            raise ValueError(f"incompatible q/k/v shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if not (q.dtype == k.dtype == v.dtype):
            raise ValueError(f"q/k/v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
        batch = q.shape[0]
        for name, lengths in (("key_lengths", self.key_lengths), ("query_lengths", self.query_lengths)):
            if lengths is not None and tuple(lengths.shape) != (batch,):
                raise ValueError(f"{name} must have shape [{batch}], got {tuple(lengths.shape)}")
        for name, segments, num in (("q_segments", self.q_segments, q.shape[2]), ("k_segments", self.k_segments, k.shape[2])):
            if segments is not None and tuple(segments.shape) != (batch, num):
                raise ValueError(f"{name} must have shape [{batch}, {num}], got {tuple(segments.shape)}")

    def visibility(self, batch: int, num_queries: int, num_keys: int, device: torch.device) -> torch.Tensor:
        """Boolean ``[B, 1, Nq, Nk]`` mask, True where the query may see the key (the rule above)."""
        mask = torch.ones(batch, 1, num_queries, num_keys, dtype=torch.bool, device=device)
        if self.key_lengths is not None:
            keys = torch.arange(num_keys, device=device)
            mask = mask & (keys[None, :] < self.key_lengths.to(device)[:, None])[:, None, None, :]
        if self.query_lengths is not None:
            queries = torch.arange(num_queries, device=device)
            mask = mask & (queries[None, :] < self.query_lengths.to(device)[:, None])[:, None, :, None]
        if self.q_segments is not None:
            same = self.q_segments[:, None, :, None] == self.k_segments[:, None, None, :]
            mask = mask & same & (self.q_segments >= 0)[:, None, :, None]
        if self.causal:
            rows = torch.arange(num_queries, device=device)[:, None]
            cols = torch.arange(num_keys, device=device)[None, :]
            mask = mask & (cols <= rows)
        return mask


def masked_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask | None = None,
) -> torch.Tensor:
    """Masked softmax attention ``softmax(q k^T / sqrt(Dh)) v`` -> ``[B, H, Nq, Dh]`` in the inputs' dtype
    (float64 for ground truth). Another scale ``s`` is ``q * s * sqrt(Dh)`` in place of ``q``.

    The ``reference`` attention backend and the ground truth of the kernel tests and benchmarks.
    """
    mask = AttentionMask() if mask is None else mask
    mask.check(q, k, v)
    batch, _, num_q, head_dim = q.shape
    visible = mask.visibility(batch, num_q, k.shape[2], q.device)
    scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
    sees_any = visible.any(dim=-1, keepdim=True)
    # A row with no visible key would be softmax(all -inf) = NaN: open it, then zero it (which also
    # stops its gradient).
    scores = scores.masked_fill(~(visible | ~sees_any), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.masked_fill(~sees_any, 0.0)
