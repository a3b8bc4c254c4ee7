"""Output head + cross-entropy fused over token chunks (Liger-Kernel's FusedLinearCrossEntropy idea).

``fused_linear_cross_entropy(hidden [T, D], weight [V, D], targets [T])`` returns the SUM over tokens
of ``cross_entropy(hidden @ weight.T, targets)``. The forward walks the tokens in chunks: per chunk it
computes the ``[chunk, V]`` logits, the loss, and at once the gradient of the logits
(``softmax - onehot``), which it turns into that chunk's ``grad_hidden`` rows and adds into an fp32
``grad_weight``. The full ``[T, V]`` logits never exist, and the backward only scales the stored
gradients by the incoming gradient. Pure PyTorch: runs anywhere, no Triton needed.
"""

from __future__ import annotations

import torch


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmul dtype: the autocast dtype when autocast is on (as ``F.linear`` would), else the inputs'."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _chunked_loss_and_grads(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int,
    ignore_index: int,
    need_grad_hidden: bool,
    need_grad_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Loss sum (scalar), grad_hidden ``[T, D]`` (hidden dtype) and grad_weight ``[V, D]``, the latter two
    only when asked for; the loss and grad_weight accumulate in fp32 (fp64 for fp64 inputs)."""
    num_tokens = hidden.shape[0]
    acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
    loss = torch.zeros((), dtype=acc, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if need_grad_hidden else None
    grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_grad_weight else None
    for start in range(0, num_tokens, chunk_size):
        h = hidden[start : start + chunk_size]
        t = targets[start : start + chunk_size]
        logits = (h @ weight.T).to(acc)  # [chunk, V]; fp32 from here on
        keep = t != ignore_index
        safe_t = torch.where(keep, t, 0)
        lse = torch.logsumexp(logits, dim=-1)
        target_logit = logits.gather(1, safe_t[:, None]).squeeze(1)
        loss += ((lse - target_logit) * keep).sum()
        if not (need_grad_hidden or need_grad_weight):
            continue
        # d loss / d logits = softmax - onehot (ignored rows: 0), computed in place on the logits.
        grad_logits = logits.sub_(lse[:, None]).exp_()
        grad_logits[torch.arange(t.shape[0], device=t.device), safe_t] -= 1.0
        grad_logits.mul_(keep[:, None])
        grad_logits = grad_logits.to(hidden.dtype)
        if need_grad_hidden:
            grad_hidden[start : start + chunk_size] = grad_logits @ weight
        if need_grad_weight:
            grad_weight += (grad_logits.T @ h).to(acc)
    return loss, grad_hidden, grad_weight


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size: int, ignore_index: int):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss, grad_hidden, grad_weight = _chunked_loss_and_grads(
            hidden, weight, targets, chunk_size, ignore_index, need_h, need_w
        )
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype) if need_w else None)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight * grad_loss.to(grad_weight.dtype)
        return grad_hidden, grad_weight, None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = 1024,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Sum over tokens of ``cross_entropy(hidden @ weight.T, targets)`` without ``[T, V]`` logits.

    Args:
        hidden: ``[T, D]`` float (fp32/bf16/fp16); T may be 0 (returns a graph-connected 0).
        weight: ``[V, D]`` output-head weight (no bias).
        targets: int ``[T]`` class ids in ``[0, V)``; tokens equal to ``ignore_index`` add nothing.
        chunk_size: tokens per chunk; peak extra memory is about ``chunk_size * V`` fp32 values.

    Returns an fp32 scalar (fp64 for fp64 inputs). Logits and softmax are fp32; under autocast the matmuls run in the
    autocast dtype, like ``F.linear``. Gradients for hidden and weight are computed in the forward.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"fused_linear_cross_entropy: hidden [T, D] and weight [V, D] expected, got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")  # fmt: skip
    if targets.shape != hidden.shape[:1] or targets.dtype.is_floating_point:
        raise ValueError(f"fused_linear_cross_entropy: targets must be int [{hidden.shape[0]}], got "
                         f"{targets.dtype} {tuple(targets.shape)}")  # fmt: skip
    if chunk_size < 1:
        raise ValueError(f"fused_linear_cross_entropy: chunk_size must be >= 1, got {chunk_size}")
    vocab = weight.shape[0]
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= vocab))
    if bad.any():  # checked here: an out-of-range id would be a device-side assert in gather
        raise ValueError(f"fused_linear_cross_entropy: target id {targets[bad][0].item()} outside [0, {vocab})")
    dtype = _compute_dtype(hidden, weight)
    with torch.autocast(hidden.device.type, enabled=False):
        return _FusedLinearCrossEntropy.apply(hidden.to(dtype), weight.to(dtype), targets, chunk_size, ignore_index)
