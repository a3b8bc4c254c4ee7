"""Triton kernels of the masked FlashAttention-2 (forward, backward preprocess, dK/dV, dQ).

Visibility of key j to query i of sample b (the rule of ``reference.py``): ``i < query_len[b]``,
``j < key_len[b]`` and, with segments, ``q_seg[b, i] == k_seg[b, j] >= 0`` (a negative segment id
is padding: it sees nothing and nobody sees it).

The inner loops have no data-dependent branch, so Triton software-pipelines their loads (async
copies; ``num_stages`` takes effect). Work is skipped through the loop bounds only:
- without segments, a query block loops over the key blocks ``[0, key_len)`` (and a dK/dV key block
  over ``[0, query_len)``); a block wholly beyond its own length loops over nothing;
- with segments, the bounds are the ``[first, last)`` block range of ``BOUNDS[b, block]``, computed
  on the device before the launch (``flash_attention.block_loop_bounds``): the blocks whose
  segment range meets this block's. Decoder runs are sorted, so that range is exactly the visible
  blocks; with unsorted segments it is a superset and the element mask does the rest.

Softmax runs in base 2 (``exp2``) with ``scale_log2 = softmax_scale * log2(e)``; the saved
log-sum-exp ``LSE`` is in the same base (``-inf`` for a query row that sees no key). The backward
selects recomputed probabilities with the visibility mask (``where``, never a product), so such a row
gets output and gradients of exactly 0, never NaN.

Layout: ``b`` and ``h`` come from grid axes 1 and 2 (each may reach 65,535, so ``B x H`` has no
cap) and are int64 before they scale a stride, so offsets past 2^31 elements do not wrap.
``HEAD_DIM`` is the true head width and ``BLOCK_D`` its power-of-two tile (>= 16); the columns in
between are masked, never padded by a copy.

The functions below are plain Python; ``jit_kernels`` decorates them with ``triton.jit`` on first
use. Triton itself reads ``TRITON_INTERPRET`` (the CPU interpreter) when it is imported, so one
process runs either interpreted or compiled kernels, never both.
"""

from __future__ import annotations

import functools

import triton
import triton.language as tl

# --- shared device helpers (decorated by jit_kernels; the kernels call them by their global names) ---


def _load_tile(base, offs, stride, offs_d, ok, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rows ``offs`` (stride ``stride``) x columns ``offs_d`` of a head; 0 where ``ok`` is False or past HEAD_DIM."""
    mask = ok[:, None]
    if HEAD_DIM != BLOCK_D:
        mask = mask & (offs_d[None, :] < HEAD_DIM)
    return tl.load(base + offs[:, None] * stride + offs_d[None, :], mask=mask, other=0.0)


def _store_tile(base, offs, stride, offs_d, ok, value, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """Store ``value`` (cast to the pointer's dtype) at rows ``offs`` where ``ok``, columns below HEAD_DIM."""
    mask = ok[:, None]
    if HEAD_DIM != BLOCK_D:
        mask = mask & (offs_d[None, :] < HEAD_DIM)
    tl.store(base + offs[:, None] * stride + offs_d[None, :], value.to(base.dtype.element_ty), mask=mask)


def _program_block(BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
    """``(block, b, h, offs, offs_d)``: this program's block along grid axis 0, its sample and head (axes 1
    and 2, int64), the block's token offsets and the head's columns."""
    block = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    h = tl.program_id(2).to(tl.int64)
    return block, b, h, block * BLOCK + tl.arange(0, BLOCK), tl.arange(0, BLOCK_D)


def _seq_end(LENGTHS, b, N, HAS_LEN: tl.constexpr):
    """Tokens ``< end`` of sample ``b`` are valid: its length capped at N (N without lengths)."""
    end = N
    if HAS_LEN:
        end = tl.minimum(tl.load(LENGTHS + b), N)
    return end


def _loop_bounds(BOUNDS, b, num_blocks, block, own_end, end, BLOCK: tl.constexpr, STEP: tl.constexpr,
                 HAS_SEG: tl.constexpr):  # fmt: skip
    """``[lo, hi)`` token range of the inner loop of program block ``block`` (of BLOCK tokens): ``[0, end)``,
    or with segments the plan's ``[first, last)`` blocks (of STEP tokens) capped at ``end``; empty when
    the block starts at or past ``own_end`` (all padding: it computes nothing)."""
    lo = 0
    hi = end
    if HAS_SEG:
        ptr = BOUNDS + (b * num_blocks + block) * 2
        lo = tl.load(ptr) * STEP
        hi = tl.minimum(tl.load(ptr + 1) * STEP, end)
    return lo, tl.where(block * BLOCK < own_end, hi, lo)


def _load_segments(SEG, offs, ok, HAS_SEG: tl.constexpr):
    """Segment ids of the tokens ``offs`` of one sample (-1 where not ``ok``); without segments, a
    placeholder nothing reads."""
    seg = offs
    if HAS_SEG:
        seg = tl.load(SEG + offs, mask=ok, other=-1)
    return seg


def _load_rows(x_base, stride_x, y_base, stride_y, seg_base, offs, end, offs_d, HAS_SEG: tl.constexpr,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    """``(ok, x, y, seg)`` for the tokens ``offs`` of two heads sharing a token axis (k and v, or q and dO):
    ``ok = offs < end``, both tiles (0 where not ok) and the tokens' segment ids."""
    ok = offs < end
    x = _load_tile(x_base, offs, stride_x, offs_d, ok, HEAD_DIM, BLOCK_D)
    y = _load_tile(y_base, offs, stride_y, offs_d, ok, HEAD_DIM, BLOCK_D)
    return ok, x, y, _load_segments(seg_base, offs, ok, HAS_SEG)


def _tile_visible(row_seg, col_seg, row_ok, col_ok, HAS_SEG: tl.constexpr):
    """``[rows, cols]`` visibility of a tile: both tokens valid and, with segments, one non-negative segment.

    Rows are queries and columns keys in the forward and dQ kernels, the reverse in dK/dV (the
    rule is symmetric).
    """
    keep = row_ok[:, None] & col_ok[None, :]
    if HAS_SEG:
        keep = keep & (row_seg[:, None] == col_seg[None, :]) & (row_seg[:, None] >= 0)
    return keep


# --- kernels ---


def _fwd_kernel(
    Q, K, V, Out, LSE, KEY_LEN, QUERY_LEN, QSEG, KSEG, BOUNDS,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_on,
    H, NQ, NK, NQB, scale_log2,
    HAS_LEN: tl.constexpr, HAS_QLEN: tl.constexpr, HAS_SEG: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One program per query block: online softmax over the key blocks of its loop bounds."""
    pid_m, b, h, offs_m, offs_d = _program_block(BLOCK_M, BLOCK_D)
    q_end = _seq_end(QUERY_LEN, b, NQ, HAS_QLEN)
    n_end = _seq_end(KEY_LEN, b, NK, HAS_LEN)
    row_ok = offs_m < q_end
    q = _load_tile(Q + b * stride_qb + h * stride_qh, offs_m, stride_qn, offs_d, row_ok, HEAD_DIM, BLOCK_D)
    q_seg = _load_segments(QSEG + b * NQ, offs_m, row_ok, HAS_SEG)
    lo, hi = _loop_bounds(BOUNDS, b, NQB, pid_m, q_end, n_end, BLOCK_M, BLOCK_N, HAS_SEG)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    kseg_base = KSEG + b * NK

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok, k, v, k_seg = _load_rows(k_base, stride_kn, v_base, stride_vn, kseg_base, offs_n, n_end, offs_d,
                                         HAS_SEG, HEAD_DIM, BLOCK_D)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
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
    store_ok = offs_m < NQ
    o_base = Out + b * stride_ob + h * stride_oh
    _store_tile(o_base, offs_m, stride_on, offs_d, store_ok, acc / l_safe[:, None], HEAD_DIM, BLOCK_D)
    tl.store(LSE + (b * H + h) * NQ + offs_m, m_i + tl.log2(l_safe), mask=store_ok)


def _bwd_delta_kernel(
    Out, DO, DELTA,
    stride_ob, stride_oh, stride_on,
    stride_dob, stride_doh, stride_don,
    H, NQ,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """DELTA[b, h, i] = sum_d O * dO (fp32), the row term of the softmax backward."""
    _, b, h, offs_m, offs_d = _program_block(BLOCK_M, BLOCK_D)
    row_ok = offs_m < NQ
    o = _load_tile(Out + b * stride_ob + h * stride_oh, offs_m, stride_on, offs_d, row_ok, HEAD_DIM, BLOCK_D)
    do = _load_tile(DO + b * stride_dob + h * stride_doh, offs_m, stride_don, offs_d, row_ok, HEAD_DIM, BLOCK_D)
    tl.store(DELTA + (b * H + h) * NQ + offs_m, tl.sum(o.to(tl.float32) * do.to(tl.float32), 1), mask=row_ok)


def _bwd_dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, DELTA, KEY_LEN, QUERY_LEN, QSEG, KSEG, BOUNDS,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_don,
    stride_dkb, stride_dkh, stride_dkn,
    stride_dvb, stride_dvh, stride_dvn,
    H, NQ, NK, NKB, softmax_scale, scale_log2,
    HAS_LEN: tl.constexpr, HAS_QLEN: tl.constexpr, HAS_SEG: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One program per key block: loops over its query blocks, so dK/dV need no atomics."""
    pid_n, b, h, offs_n, offs_d = _program_block(BLOCK_N, BLOCK_D)
    n_end = _seq_end(KEY_LEN, b, NK, HAS_LEN)
    q_end = _seq_end(QUERY_LEN, b, NQ, HAS_QLEN)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    col_ok, k, v, k_seg = _load_rows(k_base, stride_kn, v_base, stride_vn, KSEG + b * NK, offs_n, n_end, offs_d,
                                     HAS_SEG, HEAD_DIM, BLOCK_D)
    lo, hi = _loop_bounds(BOUNDS, b, NKB, pid_n, n_end, q_end, BLOCK_N, BLOCK_M, HAS_SEG)
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh
    row_base = (b * H + h) * NQ
    qseg_base = QSEG + b * NQ

    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok, q, do, q_seg = _load_rows(q_base, stride_qn, do_base, stride_don, qseg_base, offs_m, q_end, offs_d,
                                          HAS_SEG, HEAD_DIM, BLOCK_D)
        lse = tl.load(LSE + row_base + offs_m, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + row_base + offs_m, mask=row_ok, other=0.0)
        # Transposed tile: rows are this program's keys, columns the queries.
        keep = _tile_visible(k_seg, q_seg, col_ok, row_ok, HAS_SEG)
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scale_log2
        p_t = tl.where(keep, tl.exp2(s_t - lse[None, :]), 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)

    store_ok = offs_n < NK
    dk_base = DK + b * stride_dkb + h * stride_dkh
    dv_base = DV + b * stride_dvb + h * stride_dvh
    _store_tile(dk_base, offs_n, stride_dkn, offs_d, store_ok, dk * softmax_scale, HEAD_DIM, BLOCK_D)
    _store_tile(dv_base, offs_n, stride_dvn, offs_d, store_ok, dv, HEAD_DIM, BLOCK_D)


def _bwd_dq_kernel(
    Q, K, V, DO, DQ, LSE, DELTA, KEY_LEN, QUERY_LEN, QSEG, KSEG, BOUNDS,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_don,
    stride_dqb, stride_dqh, stride_dqn,
    H, NQ, NK, NQB, softmax_scale, scale_log2,
    HAS_LEN: tl.constexpr, HAS_QLEN: tl.constexpr, HAS_SEG: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One program per query block: recomputes P over its key blocks and accumulates dQ."""
    pid_m, b, h, offs_m, offs_d = _program_block(BLOCK_M, BLOCK_D)
    q_end = _seq_end(QUERY_LEN, b, NQ, HAS_QLEN)
    n_end = _seq_end(KEY_LEN, b, NK, HAS_LEN)
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh
    row_ok, q, do, q_seg = _load_rows(q_base, stride_qn, do_base, stride_don, QSEG + b * NQ, offs_m, q_end, offs_d,
                                      HAS_SEG, HEAD_DIM, BLOCK_D)
    row_base = (b * H + h) * NQ
    lse = tl.load(LSE + row_base + offs_m, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + row_base + offs_m, mask=row_ok, other=0.0)
    lo, hi = _loop_bounds(BOUNDS, b, NQB, pid_m, q_end, n_end, BLOCK_M, BLOCK_N, HAS_SEG)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    kseg_base = KSEG + b * NK

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok, k, v, k_seg = _load_rows(k_base, stride_kn, v_base, stride_vn, kseg_base, offs_n, n_end, offs_d,
                                         HAS_SEG, HEAD_DIM, BLOCK_D)
        keep = _tile_visible(q_seg, k_seg, row_ok, col_ok, HAS_SEG)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
        p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)

    dq_base = DQ + b * stride_dqb + h * stride_dqh
    _store_tile(dq_base, offs_m, stride_dqn, offs_d, offs_m < NQ, dq * softmax_scale, HEAD_DIM, BLOCK_D)


_HELPERS = (_program_block, _load_tile, _store_tile, _seq_end, _loop_bounds, _load_segments, _load_rows, _tile_visible)
_KERNELS = {
    "fwd": _fwd_kernel,
    "delta": _bwd_delta_kernel,
    "dkdv": _bwd_dkdv_kernel,
    "dq": _bwd_dq_kernel,
}
# Sizes only bound loops and masks: specialising on them (== 1, % 16) would only multiply compiles.
_SIZE_ARGS = ("H", "NQ", "NK", "NQB", "NKB")


@functools.cache
def jit_kernels(interpret: bool) -> dict[str, triton.runtime.JITFunction]:
    """The kernels decorated with ``triton.jit``, built once per interpreter mode."""
    del interpret  # part of the cache key only: triton.jit reads TRITON_INTERPRET itself
    # The kernels call the helpers through this module's globals, so those names must hold the
    # decorated helpers (compiled or interpreted, as the kernels) before any kernel runs.
    for helper in _HELPERS:
        globals()[helper.__name__] = triton.jit(helper)
    return {
        name: triton.jit(fn, do_not_specialize=[a for a in _SIZE_ARGS if a in fn.__code__.co_varnames])
        for name, fn in _KERNELS.items()
    }
