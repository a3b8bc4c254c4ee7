"""Masked FlashAttention-2 for egom2p: the public function, its launch configs, torch custom ops and launchers.

``flash_attention(q, k, v, mask)`` computes ``softmax(q k^T * scale) v`` under the visibility rule of
an :class:`~egom2p.model.kernels.reference.AttentionMask` (its non-causal part: the kernels have no causal
mode, see ``egom2p.model.attention.CAUSAL_BACKENDS``): query i of sample b sees key j iff
``i < query_lengths[b]``, ``j < key_lengths[b]`` and, when segments are given,
``q_segments[b, i] == k_segments[b, j] >= 0``. No N x N tensor is built: the
kernels (``_attention_kernels.py``) read the per-token metadata, and with segments the per-block
loop bounds that :func:`block_loop_bounds` computes on the device once per call (forward and both
backward kernels). A query that sees no key returns zeros, with zero gradients.

Dtypes: fp16 and bf16 run on tensor cores with fp32 accumulation. **fp32 on CUDA runs with TF32
dots** (10-bit mantissa products, fp32 accumulation, like torch matmuls with TF32 allowed): IEEE
fp32 dots in Triton are FMA loops without tensor cores, and they spilled registers at these tiles.
Callers that need exact fp32 on CUDA use SDPA (the ``auto`` dispatch's job). The interpreter (CPU)
computes fp32 exactly. Under autocast, q/k/v are cast to the autocast dtype first, as SDPA does.

The forward and backward are torch custom ops (``egom2p::flash_attention_fwd`` / ``_bwd``) with
fake implementations and a registered autograd formula, so the function traces under
``torch.compile`` as one opaque node per direction. The output is a ``[B, H, N, D]`` view of a
``[B, N, H, D]`` buffer, so merging the heads afterwards (``b h n d -> b n (h d)``) is free.
On CPU the kernels run in Triton's interpreter (set ``TRITON_INTERPRET=1`` before the first
call; fp32/fp16 only: it corrupts bf16).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import triton
from egom2p.model.kernels._attention_kernels import jit_kernels
from egom2p.model.kernels.reference import AttentionMask

MAX_HEAD_DIM = 128
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_INT32_MAX = torch.iinfo(torch.int32).max
_INT32_MIN = torch.iinfo(torch.int32).min


@dataclass(frozen=True)
class BlockConfig:
    """Tile sizes of one kernel launch (query rows x key rows) and its warp/stage counts."""

    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2


# (forward, dK/dV, dQ) per (head-dim tile, fp32 or not). Keyed on what changes register pressure and
# shared memory, never on N. Checked for sm_90 by `ci/kernel_compile_check.py` (no spills,
# async copies, shared memory within 227 KB) with and without segments, which need no other tiles.
# With the loads pipelined, 128-row tiles need 8 warps except the D=64 forward. fp32 (TF32 dots)
# holds twice the bytes per tile, hence narrower key tiles; its D=128 dK/dV takes 16-row query tiles
# (32 rows spilled 24 bytes with segments under Triton 3.6, the lent GPU image's version; 3.9 did not).
# Where dQ has the forward's tiles it reuses the forward's loop bounds.
_GPU_CONFIGS: dict[tuple[int, bool], tuple[BlockConfig, BlockConfig, BlockConfig]] = {
    (64, False): (BlockConfig(128, 64, 4, 3), BlockConfig(32, 128, 8, 3), BlockConfig(128, 64, 8, 3)),
    (128, False): (BlockConfig(128, 64, 8, 3), BlockConfig(32, 128, 8, 3), BlockConfig(128, 64, 8, 2)),
    (64, True): (BlockConfig(128, 32, 8, 3), BlockConfig(32, 128, 8, 3), BlockConfig(128, 32, 8, 3)),
    (128, True): (BlockConfig(128, 32, 8, 2), BlockConfig(16, 128, 8, 2), BlockConfig(128, 32, 8, 2)),
}
_INTERPRETER_CONFIG = BlockConfig(16, 16, 1, 1)  # small tiles so the CPU tests cross several blocks


def head_dim_block(head_dim: int) -> int:
    """The power-of-two column tile (>= 16, the smallest dot) that holds ``head_dim`` columns."""
    return max(16, triton.next_power_of_2(head_dim))


def kernel_configs(head_dim: int, dtype: torch.dtype, cuda: bool = True) -> dict[str, BlockConfig]:
    """Launch configs of the ``fwd``, ``dkdv``, ``dq`` and ``delta`` kernels for one head dim and dtype."""
    if not cuda:
        c = _INTERPRETER_CONFIG
        return {"fwd": c, "dkdv": c, "dq": c, "delta": c}
    fwd, dkdv, dq = _GPU_CONFIGS[(max(head_dim_block(head_dim), 64), dtype == torch.float32)]
    return {"fwd": fwd, "dkdv": dkdv, "dq": dq, "delta": BlockConfig(dq.block_m, 0, 4, 1)}


def interpreting() -> bool:
    """True when Triton runs in its CPU interpreter (``TRITON_INTERPRET``; read as Triton reads it)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def dot_precision(dtype: torch.dtype, cuda: bool) -> str | None:
    """``input_precision`` of the kernels' dots: TF32 for fp32 on CUDA, exact fp32 in the interpreter."""
    if dtype != torch.float32:
        return None  # fp16/bf16 dots ignore it
    return "tf32" if cuda else "ieee"


# --- block loop bounds (device-side, no host synchronisation) ---


def _segment_block_ranges(segments: torch.Tensor, lengths: torch.Tensor | None, block: int):
    """Per block of ``block`` tokens, the min and max segment id of its valid tokens: int32 ``[B, nblocks]`` each.

    Valid: ``segment >= 0`` and, with lengths, ``index < lengths[b]``. A block without one gets
    ``lo = INT32_MAX > hi = INT32_MIN``, a range that meets nothing.
    """
    batch, num = segments.shape
    num_blocks = triton.cdiv(num, block)
    seg = segments.to(torch.int32)
    valid = seg >= 0
    if lengths is not None:
        valid = valid & (torch.arange(num, device=seg.device)[None, :] < lengths[:, None])
    pad = (0, num_blocks * block - num)
    lo = torch.nn.functional.pad(seg.masked_fill(~valid, _INT32_MAX), pad, value=_INT32_MAX)
    hi = torch.nn.functional.pad(seg.masked_fill(~valid, _INT32_MIN), pad, value=_INT32_MIN)
    return lo.view(batch, num_blocks, block).amin(-1), hi.view(batch, num_blocks, block).amax(-1)


def block_loop_bounds(
    row_segments: torch.Tensor,
    row_lengths: torch.Tensor | None,
    row_block: int,
    col_segments: torch.Tensor,
    col_lengths: torch.Tensor | None,
    col_block: int,
) -> torch.Tensor:
    """For each row block, the ``[first, last)`` column blocks whose segments it may meet: int32 ``[B, R, 2]``.

    Row and column blocks meet when their segment ranges (valid tokens only: non-negative segment,
    index below the length) overlap; ``first``/``last`` span every meeting column block, ``[0, 0)``
    when there is none. Pure tensor ops on the device: no host synchronisation.
    """
    row_lo, row_hi = _segment_block_ranges(row_segments, row_lengths, row_block)
    col_lo, col_hi = _segment_block_ranges(col_segments, col_lengths, col_block)
    meets = (col_lo[:, None, :] <= row_hi[:, :, None]) & (col_hi[:, None, :] >= row_lo[:, :, None])  # [B, R, C]
    num_cols = meets.shape[-1]
    hits = meets.to(torch.uint8)
    first = hits.argmax(-1)  # the first maximum: the first meeting column block
    last = num_cols - hits.flip(-1).argmax(-1)
    any_meet = meets.any(-1)
    bounds = torch.stack([torch.where(any_meet, first, 0), torch.where(any_meet, last, 0)], dim=-1)
    return bounds.to(torch.int32).contiguous()


# The launchers take a call's mask as the kernels read it: int32, contiguous (``flash_attention`` converts it).


def _bounds(mask: AttentionMask, kernel: str, cfg: BlockConfig) -> torch.Tensor | None:
    """The loop bounds of ``kernel`` (``fwd``/``dq``: per query block; ``dkdv``: per key block)."""
    if mask.q_segments is None:
        return None
    q_side = (mask.q_segments, mask.query_lengths)
    k_side = (mask.k_segments, mask.key_lengths)
    if kernel == "dkdv":
        return block_loop_bounds(*k_side, cfg.block_n, *q_side, cfg.block_m)
    return block_loop_bounds(*q_side, cfg.block_m, *k_side, cfg.block_n)


def _kernel_args(mask: AttentionMask, dummy: torch.Tensor) -> list[torch.Tensor]:
    """KEY_LEN, QUERY_LEN, QSEG, KSEG (the mask's field order; a 1-element dummy for what is absent)."""
    return [dummy if t is None else t for t in mask.tensors()]


def _flags(mask: AttentionMask) -> dict[str, bool]:
    return {
        "HAS_LEN": mask.key_lengths is not None,
        "HAS_QLEN": mask.query_lengths is not None,
        "HAS_SEG": mask.q_segments is not None,
    }


def _check_runnable(device: torch.device) -> None:
    if device.type != "cuda" and not interpreting():
        raise RuntimeError(
            f"flash_attention got {device.type} tensors: the Triton kernels run on CUDA, or on CPU in "
            "Triton's interpreter (set TRITON_INTERPRET=1 before the first call)"
        )


def _device_guard(device: torch.device) -> contextlib.AbstractContextManager:
    # Triton launches on the current CUDA device; make it the tensors' one.
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def bhnd_empty(like: torch.Tensor, num: int) -> torch.Tensor:
    """An uninitialised ``[B, H, num, D]`` tensor stored as ``[B, num, H, D]`` (heads merge without a copy)."""
    batch, heads, _, head_dim = like.shape
    return like.new_empty((batch, num, heads, head_dim)).permute(0, 2, 1, 3)


def _launch_forward(q, k, v, mask: AttentionMask, fwd_bounds, softmax_scale: float):
    batch, heads, num_q, head_dim = q.shape
    num_k = k.shape[2]
    out = bhnd_empty(q, num_q)
    lse = q.new_empty((batch, heads, num_q), dtype=torch.float32)
    if num_q == 0:
        return out, lse
    if num_k == 0:  # nothing to attend to: zero output, log-sum-exp of no key
        return out.zero_(), lse.fill_(float("-inf"))
    _check_runnable(q.device)
    cuda = q.device.type == "cuda"
    cfg = kernel_configs(head_dim, q.dtype, cuda)["fwd"]
    bounds = fwd_bounds if fwd_bounds is not None else _bounds(mask, "fwd", cfg)
    dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
    num_blocks = triton.cdiv(num_q, cfg.block_m)
    with _device_guard(q.device):
        jit_kernels(interpreting())["fwd"][(num_blocks, batch, heads)](
            q, k, v, out, lse, *_kernel_args(mask, dummy), dummy if bounds is None else bounds,
            *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            heads, num_q, num_k, num_blocks, softmax_scale * math.log2(math.e),
            **_flags(mask), HEAD_DIM=head_dim, BLOCK_D=head_dim_block(head_dim),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, PRECISION=dot_precision(q.dtype, cuda),
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )  # fmt: skip
    return out, lse


def _launch_backward(grad_out, q, k, v, out, lse, mask: AttentionMask, dkdv_bounds, dq_bounds, softmax_scale: float):
    batch, heads, num_q, head_dim = q.shape
    num_k = k.shape[2]
    dq, dk, dv = bhnd_empty(q, num_q), bhnd_empty(k, num_k), bhnd_empty(v, num_k)
    if num_q == 0 or num_k == 0:  # no query or no key: every gradient is zero
        return dq.zero_(), dk.zero_(), dv.zero_()
    _check_runnable(q.device)
    cuda = q.device.type == "cuda"
    cfgs = kernel_configs(head_dim, q.dtype, cuda)
    kernels = jit_kernels(interpreting())
    dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
    meta = _kernel_args(mask, dummy)
    shape = {"HEAD_DIM": head_dim, "BLOCK_D": head_dim_block(head_dim)}
    common = {**_flags(mask), **shape, "PRECISION": dot_precision(q.dtype, cuda)}
    scale_log2 = softmax_scale * math.log2(math.e)
    delta = torch.empty_like(lse)
    c_delta, c_kv, c_q = cfgs["delta"], cfgs["dkdv"], cfgs["dq"]
    kv_bounds = dkdv_bounds if dkdv_bounds is not None else _bounds(mask, "dkdv", c_kv)
    q_bounds = dq_bounds if dq_bounds is not None else _bounds(mask, "dq", c_q)
    with _device_guard(q.device):
        kernels["delta"][(triton.cdiv(num_q, c_delta.block_m), batch, heads)](
            out, grad_out, delta, *_strides(out), *_strides(grad_out), heads, num_q,
            **shape, BLOCK_M=c_delta.block_m, num_warps=c_delta.num_warps,
        )  # fmt: skip
        num_kb = triton.cdiv(num_k, c_kv.block_n)
        kernels["dkdv"][(num_kb, batch, heads)](
            q, k, v, grad_out, dk, dv, lse, delta, *meta, dummy if kv_bounds is None else kv_bounds,
            *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dk), *_strides(dv),
            heads, num_q, num_k, num_kb, softmax_scale, scale_log2,
            **common, BLOCK_M=c_kv.block_m, BLOCK_N=c_kv.block_n,
            num_warps=c_kv.num_warps, num_stages=c_kv.num_stages,
        )  # fmt: skip
        num_qb = triton.cdiv(num_q, c_q.block_m)
        kernels["dq"][(num_qb, batch, heads)](
            q, k, v, grad_out, dq, lse, delta, *meta, dummy if q_bounds is None else q_bounds,
            *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dq),
            heads, num_q, num_k, num_qb, softmax_scale, scale_log2,
            **common, BLOCK_M=c_q.block_m, BLOCK_N=c_q.block_n,
            num_warps=c_q.num_warps, num_stages=c_q.num_stages,
        )  # fmt: skip
    return dq, dk, dv


# --- torch custom ops: opaque to torch.compile, with shapes from the fake implementations ---
# A custom op takes no dataclass: the mask travels as ``mask.tensors()`` (AttentionMask's field order, rebuilt with
# ``AttentionMask(*mask_tensors)``), and the block-loop bounds as (fwd, dkdv, dq), each None when the mask has no
# segments. The forward op takes the backward's bounds too, so that they are computed once per call, with its own,
# and saved for the backward.
MaybeTensors = Sequence[torch.Tensor | None]


@torch.library.custom_op("egom2p::flash_attention_fwd", mutates_args=())
def _flash_attention_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_tensors: MaybeTensors, bounds: MaybeTensors,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _launch_forward(q, k, v, AttentionMask(*mask_tensors), bounds[0], softmax_scale)


@_flash_attention_fwd.register_fake
def _(q, k, v, mask_tensors, bounds, softmax_scale):
    batch, heads, num_q, _ = q.shape
    return bhnd_empty(q, num_q), q.new_empty((batch, heads, num_q), dtype=torch.float32)


@torch.library.custom_op("egom2p::flash_attention_bwd", mutates_args=())
def _flash_attention_bwd(
    grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
    mask_tensors: MaybeTensors, bounds: MaybeTensors, softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mask = AttentionMask(*mask_tensors)
    return _launch_backward(grad_out, q, k, v, out, lse, mask, bounds[1], bounds[2], softmax_scale)


@_flash_attention_bwd.register_fake
def _(grad_out, q, k, v, out, lse, mask_tensors, bounds, softmax_scale):
    return bhnd_empty(q, q.shape[2]), bhnd_empty(k, k.shape[2]), bhnd_empty(v, v.shape[2])


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, mask_tensors, bounds, softmax_scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, *mask_tensors, *bounds)
    ctx.num_mask_tensors, ctx.softmax_scale = len(mask_tensors), softmax_scale


def _no_grad(tensors: MaybeTensors) -> list[None] | None:
    """The gradient of a list input that needs none, in the structure torch's custom-op autograd expects: one None
    for a list that holds a None (it is one input there), a None per tensor for a list of tensors."""
    return None if any(t is None for t in tensors) else [None] * len(tensors)


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    # The kernels take any row/head/batch strides; only the head dim must be dense. No copy otherwise.
    return t if t.stride(-1) == 1 else t.contiguous()


def _backward(ctx, grad_out, grad_lse):
    del grad_lse  # the log-sum-exp is an internal output, never differentiated
    q, k, v, out, lse, *rest = ctx.saved_tensors
    mask_tensors, bounds = rest[: ctx.num_mask_tensors], rest[ctx.num_mask_tensors :]
    dq, dk, dv = _flash_attention_bwd(_last_dim_contiguous(grad_out), q, k, v, out, lse, mask_tensors, bounds,
                                      ctx.softmax_scale)
    return dq, dk, dv, _no_grad(mask_tensors), _no_grad(bounds), None


_flash_attention_fwd.register_autograd(_backward, setup_context=_setup_context)


# --- the public function ---


def _validate(q, k, v, mask: AttentionMask) -> None:
    mask.check(q, k, v)
    if mask.causal:
        raise ValueError("flash_attention has no causal mode: use the sdpa or reference attention backend")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"flash_attention: q/k/v dtype must be one of {SUPPORTED_DTYPES}, got {q.dtype}")
    if q.shape[3] > MAX_HEAD_DIM:
        raise ValueError(f"flash_attention: head dim {q.shape[3]} > {MAX_HEAD_DIM} is not supported")


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask | None = None,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Fused masked attention ``softmax(q k^T * scale) v`` -> ``[B, H, Nq, D]`` (differentiable).

    Args:
        q: ``[B, H, Nq, D]``; k, v: ``[B, H, Nk, D]``; fp16/bf16/fp32 (fp32 accumulation; TF32 dots
            for fp32 on CUDA), any strides with a dense last dim; D <= 128 (columns past a power of
            two are masked in the kernel). Under autocast they are cast to the autocast dtype.
        mask: which keys each query sees (None: all); not causal. Query rows past ``query_lengths`` are
            not computed (output 0); key blocks past ``key_lengths`` or of no shared segment are skipped.
        softmax_scale: defaults to ``D ** -0.5``.

    A query row that sees no key (including ``Nk == 0`` or a zero length) returns zeros with zero
    gradients. The result is a ``[B, H, Nq, D]`` view of ``[B, Nq, H, D]`` memory.
    """
    cast = _autocast_dtype(q.device)
    if cast is not None:  # as SDPA under autocast: one compute dtype for q, k and v
        q, k, v = q.to(cast), k.to(cast), v.to(cast)
    mask = AttentionMask() if mask is None else mask
    _validate(q, k, v, mask)
    cuda = q.device.type == "cuda"
    scale = q.shape[3] ** -0.5 if softmax_scale is None else float(softmax_scale)
    device = q.device
    mask = mask.map(lambda t: t.to(device=device, dtype=torch.int32).contiguous())  # as the kernels take it
    fwd_bounds = dkdv_bounds = dq_bounds = None
    if mask.q_segments is not None and q.shape[2] and k.shape[2]:  # once per call, on the device
        cfgs = kernel_configs(q.shape[3], q.dtype, cuda)
        fwd_bounds = _bounds(mask, "fwd", cfgs["fwd"])
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            dkdv_bounds = _bounds(mask, "dkdv", cfgs["dkdv"])
            same_tiles = (cfgs["dq"].block_m, cfgs["dq"].block_n) == (cfgs["fwd"].block_m, cfgs["fwd"].block_n)
            dq_bounds = fwd_bounds if same_tiles else _bounds(mask, "dq", cfgs["dq"])
    out, _ = _flash_attention_fwd(
        _last_dim_contiguous(q),
        _last_dim_contiguous(k),
        _last_dim_contiguous(v),
        list(mask.tensors()),
        [fwd_bounds, dkdv_bounds, dq_bounds],
        scale,
    )
    return out
