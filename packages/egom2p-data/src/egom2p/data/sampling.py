"""Seedable random primitives of the masking, vectorised over a batch.

* :func:`sample_log_gamma`: Gamma draws in log space (Marsaglia-Tsang with the ``alpha < 1`` boost),
  driven by a ``torch.Generator``. ``torch.distributions`` cannot take a generator, and log space keeps
  concentrations as small as ``1e-9`` finite (a Dirichlet draw is a softmax of these).
* :func:`random_disjoint_masks`: two disjoint uniformly random position subsets per row, the law of the
  original's ``argsort(rand(L))`` ranks, at a cost that grows with the subset sizes instead of a sort of L.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["sample_log_gamma", "random_disjoint_masks"]


def sample_log_gamma(alpha: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Return ``log X`` with ``X ~ Gamma(alpha, 1)`` elementwise (float64, same shape as ``alpha > 0``)."""
    alpha = alpha.to(torch.float64)
    flat_alpha = alpha.reshape(-1)
    boost = flat_alpha < 1.0
    a = torch.where(boost, flat_alpha + 1.0, flat_alpha)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    todo = torch.arange(a.numel())
    while todo.numel():  # acceptance >= 95% per try: one or two rounds in practice
        dt, ct = d[todo], c[todo]
        x = torch.randn(todo.numel(), generator=generator, dtype=torch.float64)
        u = torch.rand(todo.numel(), generator=generator, dtype=torch.float64)
        v = (1.0 + ct * x) ** 3
        safe_v = v.clamp_min(1e-300)
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + dt - dt * safe_v + dt * torch.log(safe_v))
        out[todo[ok]] = torch.log(dt[ok]) + torch.log(safe_v[ok])
        todo = todo[~ok]
    if bool(boost.any()):
        # Gamma(a) = Gamma(a + 1) * U^(1/a); U in (0, 1] so the log stays finite.
        u = 1.0 - torch.rand(int(boost.sum()), generator=generator, dtype=torch.float64)
        out[boost] += torch.log(u) / flat_alpha[boost]
    return out.reshape(alpha.shape)


#: Rows at most this long, or filled above ``_DENSE_FILL``, use the sort of a random key per position.
_SORT_MAX_LENGTH = 256
_DENSE_FILL = 0.9


def _sorted_key_masks(first: Tensor, wanted: Tensor, length: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """The original's method: ranks of ``argsort(rand(L))``; rank < b is first, b <= rank < b + c second."""
    rows = first.numel()
    order = torch.argsort(torch.rand(rows, length, generator=generator), dim=1)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(length).expand(rows, length))
    first_bits = ranks < first[:, None]
    second_bits = (ranks < wanted[:, None]) & ~first_bits
    return first_bits, second_bits


@lru_cache(maxsize=64)
def _draw_count_tables(length: int) -> tuple[Tensor, Tensor]:
    """Mean and variance of the number of uniform draws over ``length`` values until k distinct were seen."""
    q = torch.arange(length, dtype=torch.float64) / length
    zero = torch.zeros(1, dtype=torch.float64)
    mean = torch.cat([zero, torch.cumsum(1.0 / (1.0 - q), 0)])
    var = torch.cat([zero, torch.cumsum(q / (1.0 - q) ** 2, 0)])
    return mean, var


_scratch = threading.local()


def _scratch_int32(size: int) -> Tensor:
    """A reusable uninitialised int32 buffer of at least ``size`` entries (per thread).

    A fresh allocation of this size costs a page fault per 4 KiB on first touch, which dominated the
    batched masking; callers only read entries they wrote in the same call.
    """
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.numel() < size:
        buffer = torch.empty(size, dtype=torch.int32)
        _scratch.buffer = buffer
    return buffer


_BYTE_SUM = 0x0101010101010101  # times 8 packed 0/1 bytes: their sum lands in the top byte


def _row_counts(rows: Tensor) -> Tensor:
    """True entries per row of a contiguous bool ``[R, L]`` tensor with ``L % 8 == 0``, read as int64
    words: ~10x faster than ``rows.sum(1)``, which widens every flag to int64 first."""
    return ((rows.view(torch.int64) * _BYTE_SUM) >> 56).sum(1)


def _spread(values: Tensor, starts: Tensor, total: int) -> Tensor:
    """``repeat_interleave`` of per-row ``values`` over consecutive runs starting at ``starts`` (sorted,
    runs non-empty), as a cumulative sum of differences: several times faster on CPU."""
    delta = torch.zeros(total + 1, dtype=values.dtype)
    delta.index_add_(0, starts, torch.diff(values, prepend=values.new_zeros(1)))
    return delta[:-1].cumsum_(0)


def _fill_to(bits_ext: Tensor, length: int, have: Tensor, goal: Tensor, generator: torch.Generator | None) -> None:
    """Set random False entries of each row of a flat bool ``[R * L + 1]`` buffer (rows of ``length``,
    then one spare slot) to True until the row holds ``goal`` Trues (``have``: Trues it holds now).

    When rows are whole int64 words long, a first round draws exactly the missing count per row and keeps
    every draw. Then each row reads a stream of i.i.d. uniform positions, sized so that it holds enough
    new positions with high probability, and keeps the new positions in order of first appearance until
    the row is full; a row whose stream falls short gets another round. The procedure treats all False positions
    alike (it is invariant under relabelling them), hence the new positions form a uniformly random
    subset of them: the law of ``argsort(rand(L))`` ranks, at a cost proportional to the draws.
    """
    have = have.clone()
    mean, var = _draw_count_tables(length)
    first_draw = _scratch_int32(bits_ext.numel())  # earliest draw per position in this round
    dump = bits_ext.numel() - 1  # the spare slot receives the draws that are not kept
    active = torch.nonzero(have < goal).flatten()
    any_set = bool(have.any())  # an empty buffer needs no check against positions set before
    if length % 8 == 0 and active.numel():
        # First round: exactly as many draws as each row lacks, all written (a row cannot overshoot);
        # repeats and draws on set positions are simply lost, and a popcount tells what each row holds.
        need = goal[active] - have[active]
        key = _spread(active * length, torch.cumsum(need, 0) - need, int(need.sum()))
        bits_ext.index_fill_(0, key.add_(torch.randint(0, length, (key.numel(),), generator=generator)), True)
        rows = bits_ext[:-1].view(-1, length)
        have[active] = _row_counts(rows if active.numel() == rows.shape[0] else rows.index_select(0, active))
        active = active[have[active] < goal[active]]
        any_set = True
    while active.numel():
        h, g = have[active], goal[active]
        draws = torch.ceil(mean[g] - mean[h] + 3.0 * torch.sqrt(var[g] - var[h]) + 2.0).to(torch.int64)
        total = int(draws.sum())
        starts = torch.cumsum(draws, 0) - draws
        key = _spread(active * length, starts, total).add_(torch.randint(0, length, (total,), generator=generator))
        order = torch.arange(total, dtype=torch.int32)
        first_draw.index_fill_(0, key, total)
        first_draw.scatter_reduce_(0, key, order, reduce="amin")
        is_new = first_draw.index_select(0, key) == order
        if any_set:
            is_new &= ~bits_ext.index_select(0, key)
        any_set = True
        new_so_far = torch.cumsum(is_new, 0, dtype=torch.int32)
        at_row_end = new_so_far[starts + draws - 1]
        before_row = torch.cat([new_so_far.new_zeros(1), at_row_end[:-1]])
        keep = is_new & (new_so_far <= _spread(before_row + (g - h).to(torch.int32), starts, total))
        bits_ext.index_fill_(0, torch.where(keep, key, dump), True)
        have[active] = h + torch.minimum((at_row_end - before_row).to(torch.int64), g - h)
        active = active[have[active] < goal[active]]


def random_disjoint_masks(
    length: int, first_counts: Tensor, second_counts: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Two disjoint uniformly random subsets per row of ``[0, length)``, as bool masks ``[R, length]``.

    Row r gets ``first_counts[r]`` positions in the first mask and ``second_counts[r]`` other positions in
    the second: the law of the original's ``ranks = argsort(rand(L))`` with ``rank < b`` first and
    ``b <= rank < b + c`` second. Short rows (and nearly full ones) use exactly that sort; long rows use
    rejection filling (:func:`_fill_to`), whose cost grows with ``b + c`` instead of sorting L keys.
    """
    first_counts = first_counts.to(torch.int64).reshape(-1)
    wanted = first_counts + second_counts.to(torch.int64).reshape(-1)
    if bool((first_counts < 0).any()) or bool((wanted < first_counts).any()) or bool((wanted > length).any()):
        raise ValueError(f"random_disjoint_masks: need 0 <= counts and first + second <= {length} per row")
    rows = first_counts.numel()
    if length <= _SORT_MAX_LENGTH:
        return _sorted_key_masks(first_counts, wanted, length, generator)
    dense = wanted > _DENSE_FILL * length
    sparse = torch.nonzero(~dense).flatten()
    if sparse.numel() == 0:
        return _sorted_key_masks(first_counts, wanted, length, generator)
    n = sparse.numel()
    sub_first = torch.zeros(n * length + 1, dtype=torch.bool)
    _fill_to(sub_first, length, torch.zeros_like(sparse), first_counts[sparse], generator)
    sub_taken = sub_first.clone()
    # Draws on first-subset positions are rejected, so the second subset avoids the first.
    _fill_to(sub_taken, length, first_counts[sparse], wanted[sparse], generator)
    sub_first, sub_taken = sub_first[:-1].view(n, length), sub_taken[:-1].view(n, length)
    sub_second = sub_taken.logical_xor_(sub_first)  # taken and not first: first is a subset of taken
    if n == rows:
        return sub_first, sub_second
    first_bits = torch.zeros(rows, length, dtype=torch.bool)
    second_bits = torch.zeros(rows, length, dtype=torch.bool)
    first_bits[sparse], second_bits[sparse] = sub_first, sub_second
    idx = torch.nonzero(dense).flatten()
    first_bits[idx], second_bits[idx] = _sorted_key_masks(first_counts[idx], wanted[idx], length, generator)
    return first_bits, second_bits
