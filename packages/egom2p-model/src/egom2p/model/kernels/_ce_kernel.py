"""Triton kernel of the fused head + CE: per-row cross-entropy on a logits chunk, gradient in place.

One program per row of a ``[C, V]`` logits chunk (fp16/bf16/fp32, read as fp32): pass 1 computes the
log-sum-exp online over vocabulary blocks and the row's loss ``lse - logit[target]`` (0 for
``ignore_index``, NaN for a target outside ``[0, V)``: no host-side check, no device assert); pass 2
(``WRITE_GRAD``) overwrites the logits with ``softmax - onehot`` (0 rows for ignored targets) in
their own dtype. The chunk's only ``[C, V]`` buffer is the matmul output itself: 2 bytes per logit
in bf16 (Liger-Kernel's cross-entropy kernel does the same).

``jit_ce_kernel`` decorates the kernel with ``triton.jit`` on first use, so that ``TRITON_INTERPRET``
only has to be set before the first call.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl

CE_BLOCK_V = 4096
CE_NUM_WARPS = 8


def _ce_rows_kernel(
    LOGITS, TARGETS, LOSS, stride_row, V, ignore_index,
    WRITE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride_row
    target = tl.load(TARGETS + row)
    keep = target != ignore_index
    in_range = (target >= 0) & (target < V)

    # Per-lane running max and sum; a lane that has seen only -inf keeps m = -inf and s = 0.
    m = tl.full([BLOCK_V], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK_V], tl.float32)
    for start in range(0, V, BLOCK_V):
        offs = start + tl.arange(0, BLOCK_V)
        x = tl.load(base + offs, mask=offs < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, x)
        m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - m_sub) + tl.exp(x - m_sub)
        m = m_new
    m_row = tl.max(m, 0)
    lse = m_row + tl.log(tl.sum(s * tl.exp(m - m_row), 0))
    target_logit = tl.load(base + tl.where(in_range, target, 0)).to(tl.float32)
    loss = tl.where(in_range, lse - target_logit, float("nan"))
    tl.store(LOSS + row, tl.where(keep, loss, 0.0))

    if WRITE_GRAD:
        bad = keep & ~in_range  # a NaN gradient row, so a bad target cannot train silently
        for start in range(0, V, BLOCK_V):
            offs = start + tl.arange(0, BLOCK_V)
            ok = offs < V
            x = tl.load(base + offs, mask=ok, other=0.0).to(tl.float32)
            grad = tl.exp(x - lse) - tl.where(offs == target, 1.0, 0.0)
            grad = tl.where(keep, grad, 0.0)
            grad = tl.where(bad, float("nan"), grad)
            tl.store(base + offs, grad.to(LOGITS.dtype.element_ty), mask=ok)


@functools.cache
def jit_ce_kernel(interpret: bool) -> triton.runtime.JITFunction:
    """The kernel decorated with ``triton.jit``, built once per interpreter mode."""
    del interpret  # part of the cache key only: triton.jit reads TRITON_INTERPRET itself
    return triton.jit(_ce_rows_kernel, do_not_specialize=["stride_row", "V", "ignore_index"])


def ce_rows_triton(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, write_grad: bool,
                   interpret: bool) -> torch.Tensor:  # fmt: skip
    """Per-row CE losses (fp32 ``[C]``) of a ``[C, V]`` chunk; with ``write_grad`` the chunk becomes its gradient."""
    rows, vocab = logits.shape
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if rows == 0:
        return loss
    guard = torch.cuda.device(logits.device) if logits.is_cuda else contextlib.nullcontext()
    with guard:
        jit_ce_kernel(interpret)[(rows,)](
            logits, targets, loss, logits.stride(0), vocab, ignore_index,
            WRITE_GRAD=write_grad, BLOCK_V=min(CE_BLOCK_V, triton.next_power_of_2(vocab)), num_warps=CE_NUM_WARPS,
        )  # fmt: skip
    return loss
