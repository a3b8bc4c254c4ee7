"""One attention interface with interchangeable backends (docs/contracts.md, "Attention").

Every backend applies the visibility rule of an :class:`AttentionMask` (key and query lengths, segment
ids, optional causal; :mod:`egom2p.model.kernels.reference` owns it): ``reference`` is that module's PyTorch
math, ``sdpa`` hands the mask's dense boolean form to ``scaled_dot_product_attention``, ``triton`` is the
fused kernel that reads the per-token metadata instead of a dense mask. This module also owns the one parse of a backend name and which
backend may run what (:func:`check_backend`), and what ``auto`` means (:func:`resolve_backend`). The model
resolves its backend once, when it is built or moved, and hands the concrete one to its attention layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from egom2p.core.enums import AttnBackend

from .kernels.reference import AttentionMask, masked_attention_reference

# The backends with a causal mode. The fused Triton kernel has none: this set is the one place
# that says so (config validation, ``auto`` resolution and dispatch all read it).
CAUSAL_BACKENDS = frozenset({AttnBackend.REFERENCE, AttnBackend.SDPA})


def check_backend(backend: AttnBackend | str, causal: bool = False) -> AttnBackend:
    """Parse ``backend`` (the one parse of a backend name); ValueError for an unknown name or for a causal mask on
    a backend without one."""
    parsed = AttnBackend.parse(backend, "attn_backend")
    if causal and parsed not in (AttnBackend.AUTO, *CAUSAL_BACKENDS):
        raise ValueError(f"attn_backend {parsed.value!r} has no causal mode (decoder_causal_mask); "
                         f"use one of {sorted(b.value for b in CAUSAL_BACKENDS)} or 'auto'")
    return parsed


def _triton_available() -> bool:
    try:
        import egom2p.model.kernels.flash_attention  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: AttnBackend | str, device: torch.device, causal: bool = False) -> AttnBackend:
    """The concrete backend for attention on ``device``: ``auto`` is triton on CUDA when the kernel
    imports and no causal mask is needed, sdpa otherwise; other names are checked and returned."""
    parsed = check_backend(backend, causal)
    if parsed is not AttnBackend.AUTO:
        return parsed
    if device.type == "cuda" and (not causal or AttnBackend.TRITON in CAUSAL_BACKENDS) and _triton_available():
        return AttnBackend.TRITON
    return AttnBackend.SDPA


def _is_resolved(backend: AttnBackend | str, causal: bool) -> bool:
    """Whether ``backend`` is a concrete backend that may run this call as is (nothing to parse or resolve)."""
    return (isinstance(backend, AttnBackend) and backend is not AttnBackend.AUTO
            and (not causal or backend in CAUSAL_BACKENDS))


def _sdpa(q, k, v, mask: torch.Tensor) -> torch.Tensor:
    sees_any = mask.any(dim=-1, keepdim=True)
    # SDPA returns NaN for a fully masked row; open every key there, then zero the row.
    # masked_fill also stops gradients from flowing back through those rows.
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~sees_any)
    return out.masked_fill(~sees_any, 0.0)


# Per-run attention pays a Python call (and its backward) per run: worth it only when the multiply-adds it
# skips outweigh the calls, each counted as this many multiply-adds (~40 us of a CPU core's work).
_MACS_PER_CALL = 2_000_000


def _macs_per_pair(heads: int, head_dim: int) -> int:
    """Multiply-adds of one query-key pair over all heads: its score and its share of the weighted sum."""
    return 2 * heads * head_dim


def _runs_pay(all_pairs: int, run_pairs: int, calls: int, macs_per_pair: int) -> bool:
    """Whether per-run attention beats the masked full rows: the pairs it skips outweigh its calls."""
    return (all_pairs - run_pairs) * macs_per_pair >= calls * _MACS_PER_CALL


def computed_pairs(backend: AttnBackend, device: torch.device, num_queries: int, num_keys: int,
                   runs: Sequence[tuple[int, int]], heads: int, head_dim: int) -> int:  # fmt: skip
    """Query-key pairs one row of attention computes: ``num_queries x num_keys`` slots holding the sample runs
    ``runs`` (queries, keys) each, for a packing cost model.

    The Triton kernel skips other samples' blocks (each run's own pairs); ``sdpa`` on the CPU does the same
    when per-run attention pays (the rule :func:`attention` applies), plus its calls' cost counted in pairs;
    otherwise every pair of the row.
    """
    own = sum(q * k for q, k in runs)
    if backend is AttnBackend.TRITON:
        return own
    full = num_queries * num_keys
    calls = sum(1 for q, k in runs if q and k)
    macs_per_pair = _macs_per_pair(heads, head_dim)
    if backend is AttnBackend.SDPA and device.type == "cpu" and _runs_pay(full, own, calls, macs_per_pair):
        return own + calls * -(-_MACS_PER_CALL // macs_per_pair)
    return full


def _runs(segments: torch.Tensor, length: torch.Tensor | None) -> list[tuple[int, int, int]]:
    """``(segment, start, stop)`` of the runs of equal ids of one row; tokens past ``length`` count as -1."""
    if length is not None:
        segments = torch.where(torch.arange(len(segments)) < length, segments, -1)
    ids, counts = torch.unique_consecutive(segments, return_counts=True)
    stops = counts.cumsum(0).tolist()
    return [(i, stop - n, stop) for i, n, stop in zip(ids.tolist(), counts.tolist(), stops)]


def _run_plan(mask: AttentionMask, macs_per_pair: int) -> list[list[tuple[int, int, int, int]]] | None:
    """Per row, ``(q_start, q_stop, k_start, k_stop)`` of each run of queries that sees a run of keys (``mask``
    has segments and is not causal).

    None when per-run attention does not apply (a segment whose keys are not one contiguous run) or does
    not pay: the pairs it skips, at ``macs_per_pair`` multiply-adds each, are worth fewer than its calls.
    """
    plan, calls, pairs = [], 0, 0
    for b in range(mask.q_segments.shape[0]):
        keys: dict[int, tuple[int, int]] = {}
        for seg, start, stop in _runs(mask.k_segments[b], None if mask.key_lengths is None else mask.key_lengths[b]):
            if seg >= 0:
                if seg in keys:
                    return None  # unsorted segments: the masked full row is the rule
                keys[seg] = (start, stop)
        row = []
        for seg, start, stop in _runs(mask.q_segments[b], None if mask.query_lengths is None else mask.query_lengths[b]):
            if seg >= 0 and seg in keys:
                row.append((start, stop, *keys[seg]))
                pairs += (stop - start) * (keys[seg][1] - keys[seg][0])
        calls += len(row)
        plan.append(row)
    return plan if _runs_pay(mask.q_segments.numel() * mask.k_segments.shape[1], pairs, calls, macs_per_pair) else None


def _sdpa_by_runs(q, k, v, plan) -> torch.Tensor:
    """Attention of each query run over its key run (SDPA, no mask); queries in no run get zeros."""
    rows = []
    for b, runs in enumerate(plan):
        pieces, done = [], 0
        for q0, q1, k0, k1 in runs:
            if q0 > done:
                pieces.append(q.new_zeros(1, q.shape[1], q0 - done, v.shape[-1]))
            pieces.append(F.scaled_dot_product_attention(q[b : b + 1, :, q0:q1], k[b : b + 1, :, k0:k1], v[b : b + 1, :, k0:k1]))
            done = q1
        if done < q.shape[2]:
            pieces.append(q.new_zeros(1, q.shape[1], q.shape[2] - done, v.shape[-1]))
        rows.append(torch.cat(pieces, dim=2) if pieces else q.new_zeros(1, q.shape[1], 0, v.shape[-1]))  # no queries
    return torch.cat(rows, dim=0)


def _triton(q, k, v, mask: AttentionMask) -> torch.Tensor:
    try:
        from egom2p.model.kernels.flash_attention import flash_attention
    except ImportError as err:  # triton missing, or the kernel module not installed
        raise RuntimeError(
            "attention backend 'triton' needs triton and egom2p.model.kernels.flash_attention; "
            f"import failed ({err}). Use attn_backend='sdpa' or 'reference'."
        ) from err
    return flash_attention(q, k, v, mask)


_AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def _autocast_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Under autocast, q/k/v in the autocast dtype, as autocast does for SDPA: with qk-norm, q and k come
    out of a LayerNorm in fp32 while v is bf16, and every backend needs one dtype."""
    device_type = q.device.type
    if not torch.is_autocast_enabled(device_type):
        return q, k, v
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) if t.dtype in _AUTOCAST_ELIGIBLE else t for t in (q, k, v))


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask | None = None,
    backend: AttnBackend | str = "auto",
) -> torch.Tensor:
    """Masked multi-head attention ``softmax(q k^T / sqrt(Dh)) v`` -> ``[B, H, Nq, Dh]``.

    Args:
        q: ``[B, H, Nq, Dh]``; k, v: ``[B, H, Nk, Dh]``, all the same dtype.
        mask: which keys each query sees (None: all). Its ``causal`` (only the original's causal-decoder
            variant uses it) needs a backend of :data:`CAUSAL_BACKENDS`; queries past its ``query_lengths``
            are padding: zero output (the Triton kernel does not compute them).
        backend: a concrete :class:`AttnBackend` is used as is (the model's attention layers hold the one
            resolved when the model was built or moved); a name or ``auto`` is parsed and resolved here for
            ``q``'s device (:func:`resolve_backend`).

    Under autocast q/k/v are cast to the autocast dtype first (as autocast does for SDPA).
    """
    q, k, v = _autocast_inputs(q, k, v)
    mask = AttentionMask() if mask is None else mask
    mask.check(q, k, v)
    if not _is_resolved(backend, mask.causal):
        backend = resolve_backend(backend, q.device, mask.causal)
    batch, heads, num_queries, head_dim = q.shape
    num_keys = k.shape[2]
    if num_keys == 0:  # empty context: nothing to attend to
        return q.new_zeros(batch, heads, num_queries, head_dim)
    if backend is AttnBackend.REFERENCE:
        return masked_attention_reference(q, k, v, mask)
    if mask.unmasked:
        return F.scaled_dot_product_attention(q, k, v)  # nothing masked: SDPA's flash path beats ours
    # The compiled kernel's fp32 dots are TF32: on CUDA use it for fp32 only where TF32 matmuls are allowed.
    exact_fp32 = q.is_cuda and q.dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest"
    if backend is AttnBackend.TRITON and not exact_fp32:
        return _triton(q, k, v, mask)
    if mask.q_segments is not None and not mask.causal and q.device.type == "cpu" and not torch.compiler.is_compiling():
        # Sorted segments (packed rows, decoder modality runs) on the CPU: compute each run's own pairs only,
        # not the full masked rows (reading the runs is a host sync: never on CUDA or in a compiled graph).
        plan = _run_plan(mask, _macs_per_pair(heads, head_dim))
        if plan is not None:
            return _sdpa_by_runs(q, k, v, plan)
    return _sdpa(q, k, v, mask.visibility(batch, num_queries, num_keys, q.device))
