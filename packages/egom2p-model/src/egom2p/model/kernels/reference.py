"""Plain PyTorch references for the fused kernels: the ground truth of their tests and benchmarks."""

from __future__ import annotations

import torch

from ..attention import visibility_mask as attention_visibility  # one mask rule for every path


def masked_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_lengths: torch.Tensor | None = None,
    q_segments: torch.Tensor | None = None,
    k_segments: torch.Tensor | None = None,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Masked softmax attention in the inputs' dtype (use float64 for ground truth).

    Same contract as ``flash_attention``: rows that see no key are zero and get zero gradients.
    """
    batch, _, num_q, head_dim = q.shape
    mask = attention_visibility(batch, num_q, k.shape[2], q.device, key_lengths, q_segments, k_segments)
    scale = head_dim**-0.5 if softmax_scale is None else softmax_scale
    scores = (q @ k.transpose(-2, -1)) * scale
    sees_any = mask.any(dim=-1, keepdim=True)
    # A row with no visible key would be softmax(all -inf) = NaN: open it, then zero it.
    scores = scores.masked_fill(~(mask | ~sees_any), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.masked_fill(~sees_any, 0.0)
