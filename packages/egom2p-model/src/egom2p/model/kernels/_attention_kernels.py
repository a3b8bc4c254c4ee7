"""Triton kernels of the masked FlashAttention-2 (forward, backward preprocess, dK/dV, dQ).

Visibility of key j to query i of sample b: ``j < key_len[b]`` and, with segments,
``q_seg[b, i] == k_seg[b, j]``. Each kernel walks key (or query) blocks and skips a block when the
metadata proves it fully masked: beyond the key length, or its segment range ``[lo, hi]`` disjoint
from the other block's (ranges come from ``segment_block_ranges``, computed once per call).

Softmax runs in base 2 (``exp2``) with ``scale_log2 = softmax_scale * log2(e)``; the saved
log-sum-exp ``LSE`` is in the same base (``-inf`` for a query row that sees no key). The backward
selects recomputed probabilities with the visibility mask (``where``, never a product), so such a row
gets output and gradients of exactly 0, never NaN.

The mask and block-skip logic lives once, in the ``@triton.jit`` helpers at the top (tile loads and
stores, the key end, the segment-range test, the tile's visibility mask); the kernels call them.

The functions below are plain Python; ``jit_kernels`` decorates them with ``triton.jit`` on first
use, so that ``TRITON_INTERPRET=1`` (the CPU interpreter) only has to be set before the first call,
not before this module is imported.
"""

from __future__ import annotations

import functools

import triton
import triton.language as tl

# --- shared device helpers (decorated by jit_kernels; the kernels call them by their global names) ---


def _load_tile(base, offs, stride, offs_d, ok):
    """Rows ``offs`` (stride ``stride``) x columns ``offs_d`` of a head; 0 where ``ok`` is False."""
    return tl.load(base + offs[:, None] * stride + offs_d[None, :], mask=ok[:, None], other=0.0)


def _store_tile(base, offs, stride, offs_d, ok, value):
    """Store ``value`` (cast to the pointer's dtype) at rows ``offs`` where ``ok``."""
    tl.store(base + offs[:, None] * stride + offs_d[None, :], value.to(base.dtype.element_ty), mask=ok[:, None])


def _key_end(KEY_LEN, b, NK, HAS_LEN: tl.constexpr):
    """Keys ``j < key_end`` of sample ``b`` may be visible: its key length, capped at NK."""
    n_end = NK
    if HAS_LEN:
        n_end = tl.minimum(tl.load(KEY_LEN + b), NK)
    return n_end


def _blocks_meet(QRANGE, KRANGE, b, NQB, NKB, q_block, k_block, HAS_SEG: tl.constexpr):
    """False when query block ``q_block`` and key block ``k_block`` share no segment (the pair is skipped).

    Without segments every pair meets. The ranges ``[lo, hi]`` come from ``segment_block_ranges``;
    an empty range (a block of padding) meets nothing.
    """
    meet = k_block >= 0
    if HAS_SEG:
        q_lo = tl.load(QRANGE + (b * NQB + q_block) * 2)
        q_hi = tl.load(QRANGE + (b * NQB + q_block) * 2 + 1)
        k_lo = tl.load(KRANGE + (b * NKB + k_block) * 2)
        k_hi = tl.load(KRANGE + (b * NKB + k_block) * 2 + 1)
        meet = (k_lo <= q_hi) & (k_hi >= q_lo)
    return meet


def _load_segments(SEG, offs, ok, HAS_SEG: tl.constexpr):
    """Segment ids of the tokens ``offs`` of one sample; without segments, a placeholder nothing reads."""
    seg = offs
    if HAS_SEG:
        seg = tl.load(SEG + offs, mask=ok, other=-1)  # out-of-range tokens are masked by `ok` anyway
    return seg


def _tile_visible(row_seg, col_seg, row_ok, col_ok, HAS_SEG: tl.constexpr):
    """``[rows, cols]`` visibility of a tile: both tokens in range and, with segments, the same segment.

    Rows are queries and columns keys in the forward and dQ kernels, the reverse in dK/dV (the
    rule is symmetric).
    """
    keep = row_ok[:, None] & col_ok[None, :]
    if HAS_SEG:
        keep = keep & (row_seg[:, None] == col_seg[None, :])
    return keep


# --- kernels ---


def _fwd_kernel(
    Q, K, V, Out, LSE, KEY_LEN, QSEG, KSEG, QRANGE, KRANGE,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_on,
    H, NQ, NK, NQB, NKB, scale_log2,
    HAS_LEN: tl.constexpr, HAS_SEG: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < NQ
    q = _load_tile(Q + b * stride_qb + h * stride_qh, offs_m, stride_qn, offs_d, row_ok)
    q_seg = _load_segments(QSEG + b * NQ, offs_m, row_ok, HAS_SEG)
    n_end = _key_end(KEY_LEN, b, NK, HAS_LEN)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for start_n in range(0, n_end, BLOCK_N):
        if _blocks_meet(QRANGE, KRANGE, b, NQB, NKB, pid_m, start_n // BLOCK_N, HAS_SEG):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            col_ok = offs_n < n_end
            k = _load_tile(k_base, offs_n, stride_kn, offs_d, col_ok)
            v = _load_tile(v_base, offs_n, stride_vn, offs_d, col_ok)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
            k_seg = _load_segments(KSEG + b * NK, offs_n, col_ok, HAS_SEG)
            s = tl.where(_tile_visible(q_seg, k_seg, row_ok, col_ok, HAS_SEG), s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row with no visible key so far keeps m = -inf; subtract 0 there to avoid inf - inf.
            m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp2(s - m_sub[:, None])
            alpha = tl.exp2(m_i - m_sub)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)  # no visible key: acc is 0, the output stays 0
    _store_tile(Out + b * stride_ob + h * stride_oh, offs_m, stride_on, offs_d, row_ok, acc / l_safe[:, None])
    tl.store(LSE + pid_bh * NQ + offs_m, m_i + tl.log2(l_safe), mask=row_ok)


def _bwd_delta_kernel(
    Out, DO, DELTA,
    stride_ob, stride_oh, stride_on,
    stride_dob, stride_doh, stride_don,
    H, NQ,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """DELTA[b, h, i] = sum_d O * dO (fp32), the row term of the softmax backward."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < NQ
    o = _load_tile(Out + b * stride_ob + h * stride_oh, offs_m, stride_on, offs_d, row_ok).to(tl.float32)
    do = _load_tile(DO + b * stride_dob + h * stride_doh, offs_m, stride_don, offs_d, row_ok).to(tl.float32)
    tl.store(DELTA + pid_bh * NQ + offs_m, tl.sum(o * do, 1), mask=row_ok)


def _bwd_dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, DELTA, KEY_LEN, QSEG, KSEG, QRANGE, KRANGE,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_don,
    stride_dkb, stride_dkh, stride_dkn,
    stride_dvb, stride_dvh, stride_dvn,
    H, NQ, NK, NQB, NKB, softmax_scale, scale_log2,
    HAS_LEN: tl.constexpr, HAS_SEG: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One program per key block: loops over the query blocks, so dK/dV need no atomics."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    n_end = _key_end(KEY_LEN, b, NK, HAS_LEN)
    col_ok = offs_n < n_end
    k = _load_tile(K + b * stride_kb + h * stride_kh, offs_n, stride_kn, offs_d, col_ok)
    v = _load_tile(V + b * stride_vb + h * stride_vh, offs_n, stride_vn, offs_d, col_ok)
    k_seg = _load_segments(KSEG + b * NK, offs_n, col_ok, HAS_SEG)
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh

    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    # A key block wholly beyond the key length sees no query: skip the loop, store zeros.
    m_stop = tl.where(pid_n * BLOCK_N < n_end, NQ, 0)
    for start_m in range(0, m_stop, BLOCK_M):
        if _blocks_meet(QRANGE, KRANGE, b, NQB, NKB, start_m // BLOCK_M, pid_n, HAS_SEG):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            row_ok = offs_m < NQ
            q = _load_tile(q_base, offs_m, stride_qn, offs_d, row_ok)
            do = _load_tile(do_base, offs_m, stride_don, offs_d, row_ok)
            lse = tl.load(LSE + pid_bh * NQ + offs_m, mask=row_ok, other=0.0)
            delta = tl.load(DELTA + pid_bh * NQ + offs_m, mask=row_ok, other=0.0)
            # Transposed tile: rows are this program's keys, columns the queries.
            q_seg = _load_segments(QSEG + b * NQ, offs_m, row_ok, HAS_SEG)
            keep = _tile_visible(k_seg, q_seg, col_ok, row_ok, HAS_SEG)
            s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scale_log2
            p_t = tl.where(keep, tl.exp2(s_t - lse[None, :]), 0.0)
            dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
            dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            ds_t = p_t * (dp_t - delta[None, :])
            dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)

    store_ok = offs_n < NK
    _store_tile(DK + b * stride_dkb + h * stride_dkh, offs_n, stride_dkn, offs_d, store_ok, dk * softmax_scale)
    _store_tile(DV + b * stride_dvb + h * stride_dvh, offs_n, stride_dvn, offs_d, store_ok, dv)


def _bwd_dq_kernel(
    Q, K, V, DO, DQ, LSE, DELTA, KEY_LEN, QSEG, KSEG, QRANGE, KRANGE,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_don,
    stride_dqb, stride_dqh, stride_dqn,
    H, NQ, NK, NQB, NKB, softmax_scale, scale_log2,
    HAS_LEN: tl.constexpr, HAS_SEG: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One program per query block: recomputes P over the visible key blocks and accumulates dQ."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < NQ
    q = _load_tile(Q + b * stride_qb + h * stride_qh, offs_m, stride_qn, offs_d, row_ok)
    do = _load_tile(DO + b * stride_dob + h * stride_doh, offs_m, stride_don, offs_d, row_ok)
    lse = tl.load(LSE + pid_bh * NQ + offs_m, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + pid_bh * NQ + offs_m, mask=row_ok, other=0.0)
    q_seg = _load_segments(QSEG + b * NQ, offs_m, row_ok, HAS_SEG)
    n_end = _key_end(KEY_LEN, b, NK, HAS_LEN)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for start_n in range(0, n_end, BLOCK_N):
        if _blocks_meet(QRANGE, KRANGE, b, NQB, NKB, pid_m, start_n // BLOCK_N, HAS_SEG):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            col_ok = offs_n < n_end
            k = _load_tile(k_base, offs_n, stride_kn, offs_d, col_ok)
            v = _load_tile(v_base, offs_n, stride_vn, offs_d, col_ok)
            k_seg = _load_segments(KSEG + b * NK, offs_n, col_ok, HAS_SEG)
            keep = _tile_visible(q_seg, k_seg, row_ok, col_ok, HAS_SEG)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
            p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)

    _store_tile(DQ + b * stride_dqb + h * stride_dqh, offs_m, stride_dqn, offs_d, row_ok, dq * softmax_scale)


_HELPERS = (_load_tile, _store_tile, _key_end, _blocks_meet, _load_segments, _tile_visible)
_KERNELS = {
    "fwd": _fwd_kernel,
    "delta": _bwd_delta_kernel,
    "dkdv": _bwd_dkdv_kernel,
    "dq": _bwd_dq_kernel,
}


@functools.cache
def jit_kernels(interpret: bool) -> dict[str, triton.runtime.JITFunction]:
    """The kernels decorated with ``triton.jit``, built once per interpreter mode."""
    del interpret  # part of the cache key only: triton.jit reads TRITON_INTERPRET itself
    # The kernels call the helpers through this module's globals, so those names must hold the
    # decorated helpers (compiled or interpreted, as the kernels) before any kernel runs.
    for helper in _HELPERS:
        globals()[helper.__name__] = triton.jit(helper)
    return {name: triton.jit(fn) for name, fn in _KERNELS.items()}
