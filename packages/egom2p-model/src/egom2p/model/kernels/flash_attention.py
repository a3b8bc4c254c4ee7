"""Masked FlashAttention-2 for egom2p: the public function, its torch custom ops and launchers.

``flash_attention(q, k, v, key_lengths, q_segments, k_segments)`` computes
``softmax(q k^T * scale) v`` under the visibility rule of :mod:`egom2p.model.kernels.reference`
(its non-causal part: the kernels have no causal mode, see ``egom2p.model.attention.CAUSAL_BACKENDS``):
query i of sample b sees key j iff ``j < key_lengths[b]`` and, when segments are given,
``q_segments[b, i] == k_segments[b, j]``. No N x N tensor is built:
the kernels (``_attention_kernels.py``) read the per-token metadata and skip fully masked blocks.
A query that sees no key returns zeros, with zero gradients.

The forward and backward are torch custom ops (``egom2p::flash_attention_fwd`` / ``_bwd``) with
fake implementations and a registered autograd formula, so the function traces under
``torch.compile`` as one opaque node per direction. On CPU the kernels run in Triton's
interpreter (set ``TRITON_INTERPRET=1`` before the first call; fp32/fp16 only).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import triton
from egom2p.model.kernels._attention_kernels import jit_kernels
from egom2p.model.kernels.reference import check_attention_inputs
from triton import knobs

SUPPORTED_HEAD_DIMS = (32, 64, 128)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_INT32_MAX = torch.iinfo(torch.int32).max
_INT32_MIN = torch.iinfo(torch.int32).min


@dataclass(frozen=True)
class BlockConfig:
    """Tile sizes of one kernel launch (queries x keys) and its warp/stage counts."""

    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2


def _configs(device: torch.device, head_dim: int) -> tuple[BlockConfig, BlockConfig, BlockConfig]:
    """(forward, dK/dV, dQ) tile configs. CPU (interpreter): small tiles so tests cross blocks."""
    if device.type != "cuda":
        tiny = BlockConfig(16, 16, 1, 1)
        return tiny, tiny, tiny
    if head_dim <= 64:  # the FA2 Triton tutorial's choices for an sm80/sm90 part
        return BlockConfig(128, 64, 4, 3), BlockConfig(32, 128, 4, 3), BlockConfig(128, 32, 4, 3)
    return BlockConfig(128, 32, 8, 2), BlockConfig(32, 64, 4, 2), BlockConfig(64, 32, 4, 2)


def segment_block_ranges(segments: torch.Tensor, lengths: torch.Tensor | None, block: int) -> torch.Tensor:
    """Per block of ``block`` tokens, the [min, max] segment id of its valid tokens: int32 ``[B, nblocks, 2]``.

    Tokens at or beyond ``lengths[b]`` are left out; a block with no valid token gets
    ``[INT32_MAX, INT32_MIN]``, an empty range that overlaps nothing, so the kernels skip it.
    """
    batch, num = segments.shape
    num_blocks = triton.cdiv(num, block)
    pad = num_blocks * block - num
    lo = segments.to(torch.int32)
    hi = lo
    if lengths is not None:
        valid = torch.arange(num, device=segments.device)[None, :] < lengths[:, None]
        lo = lo.masked_fill(~valid, _INT32_MAX)
        hi = hi.masked_fill(~valid, _INT32_MIN)
    lo = torch.nn.functional.pad(lo, (0, pad), value=_INT32_MAX).view(batch, num_blocks, block).amin(-1)
    hi = torch.nn.functional.pad(hi, (0, pad), value=_INT32_MIN).view(batch, num_blocks, block).amax(-1)
    return torch.stack([lo, hi], dim=-1).contiguous()


def _check_runnable(device: torch.device) -> None:
    if device.type != "cuda" and not knobs.runtime.interpret:
        raise RuntimeError(
            f"flash_attention got {device.type} tensors: the Triton kernels run on CUDA, or on CPU in "
            "Triton's interpreter (set TRITON_INTERPRET=1 before the first call)"
        )


def _device_guard(device: torch.device) -> contextlib.AbstractContextManager:
    # Triton launches on the current CUDA device; make it the tensors' one.
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _precision(dtype: torch.dtype) -> str | None:
    # fp32 inputs get exact fp32 products (no TF32 rounding); fp16/bf16 ignore the setting.
    return "ieee" if dtype == torch.float32 else None


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _metadata(q, k, key_lengths, q_segments, k_segments, cfg_q: BlockConfig, cfg_k: BlockConfig):
    """Kernel arguments for the mask: lengths, segments and their block ranges (dummies when absent)."""
    dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
    has_len = key_lengths is not None
    has_seg = q_segments is not None
    lengths = key_lengths if has_len else dummy
    if not has_seg:
        return has_len, has_seg, lengths, dummy, dummy, dummy, dummy, 0, 0
    q_ranges = segment_block_ranges(q_segments, None, cfg_q.block_m)
    k_ranges = segment_block_ranges(k_segments, key_lengths, cfg_k.block_n)
    return has_len, has_seg, lengths, q_segments, k_segments, q_ranges, k_ranges, q_ranges.shape[1], k_ranges.shape[1]


def _launch_forward(q, k, v, key_lengths, q_segments, k_segments, softmax_scale: float):
    batch, heads, num_q, head_dim = q.shape
    num_k = k.shape[2]
    out = q.new_empty(q.shape)
    lse = q.new_empty((batch, heads, num_q), dtype=torch.float32)
    if num_q == 0:
        return out, lse
    if num_k == 0:  # nothing to attend to: zero output, log-sum-exp of no key
        return out.zero_(), lse.fill_(float("-inf"))
    _check_runnable(q.device)
    cfg, _, _ = _configs(q.device, head_dim)
    has_len, has_seg, lengths, qs, ks, qr, kr, nqb, nkb = _metadata(q, k, key_lengths, q_segments, k_segments, cfg, cfg)
    grid = (triton.cdiv(num_q, cfg.block_m), batch * heads)
    with _device_guard(q.device):
        jit_kernels(knobs.runtime.interpret)["fwd"][grid](
            q, k, v, out, lse, lengths, qs, ks, qr, kr,
            *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            heads, num_q, num_k, nqb, nkb, softmax_scale * math.log2(math.e),
            HAS_LEN=has_len, HAS_SEG=has_seg, HEAD_DIM=head_dim,
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, PRECISION=_precision(q.dtype),
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )  # fmt: skip
    return out, lse


def _launch_backward(grad_out, q, k, v, out, lse, key_lengths, q_segments, k_segments, softmax_scale: float):
    batch, heads, num_q, head_dim = q.shape
    num_k = k.shape[2]
    dq, dk, dv = q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
    if num_q == 0 or num_k == 0:  # no query or no key: every gradient is zero
        return dq.zero_(), dk.zero_(), dv.zero_()
    _check_runnable(q.device)
    _, cfg_kv, cfg_q = _configs(q.device, head_dim)
    kernels = jit_kernels(knobs.runtime.interpret)
    delta = torch.empty_like(lse)
    scale_log2 = softmax_scale * math.log2(math.e)
    precision = _precision(q.dtype)
    with _device_guard(q.device):
        kernels["delta"][(triton.cdiv(num_q, cfg_q.block_m), batch * heads)](
            out, grad_out, delta, *_strides(out), *_strides(grad_out), heads, num_q,
            HEAD_DIM=head_dim, BLOCK_M=cfg_q.block_m,
        )  # fmt: skip
        meta = _metadata(q, k, key_lengths, q_segments, k_segments, cfg_kv, cfg_kv)
        has_len, has_seg, lengths, qs, ks, qr, kr, nqb, nkb = meta
        kernels["dkdv"][(triton.cdiv(num_k, cfg_kv.block_n), batch * heads)](
            q, k, v, grad_out, dk, dv, lse, delta, lengths, qs, ks, qr, kr,
            *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dk), *_strides(dv),
            heads, num_q, num_k, nqb, nkb, softmax_scale, scale_log2,
            HAS_LEN=has_len, HAS_SEG=has_seg, HEAD_DIM=head_dim,
            BLOCK_M=cfg_kv.block_m, BLOCK_N=cfg_kv.block_n, PRECISION=precision,
            num_warps=cfg_kv.num_warps, num_stages=cfg_kv.num_stages,
        )  # fmt: skip
        has_len, has_seg, lengths, qs, ks, qr, kr, nqb, nkb = _metadata(
            q, k, key_lengths, q_segments, k_segments, cfg_q, cfg_q
        )
        kernels["dq"][(triton.cdiv(num_q, cfg_q.block_m), batch * heads)](
            q, k, v, grad_out, dq, lse, delta, lengths, qs, ks, qr, kr,
            *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dq),
            heads, num_q, num_k, nqb, nkb, softmax_scale, scale_log2,
            HAS_LEN=has_len, HAS_SEG=has_seg, HEAD_DIM=head_dim,
            BLOCK_M=cfg_q.block_m, BLOCK_N=cfg_q.block_n, PRECISION=precision,
            num_warps=cfg_q.num_warps, num_stages=cfg_q.num_stages,
        )  # fmt: skip
    return dq, dk, dv


# --- torch custom ops: opaque to torch.compile, with shapes from the fake implementations ---


@torch.library.custom_op("egom2p::flash_attention_fwd", mutates_args=())
def _flash_attention_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_lengths: torch.Tensor | None,
    q_segments: torch.Tensor | None,
    k_segments: torch.Tensor | None,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _launch_forward(q, k, v, key_lengths, q_segments, k_segments, softmax_scale)


@_flash_attention_fwd.register_fake
def _(q, k, v, key_lengths, q_segments, k_segments, softmax_scale):
    batch, heads, num_q, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((batch, heads, num_q), dtype=torch.float32)


@torch.library.custom_op("egom2p::flash_attention_bwd", mutates_args=())
def _flash_attention_bwd(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    key_lengths: torch.Tensor | None,
    q_segments: torch.Tensor | None,
    k_segments: torch.Tensor | None,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _launch_backward(grad_out, q, k, v, out, lse, key_lengths, q_segments, k_segments, softmax_scale)


@_flash_attention_bwd.register_fake
def _(grad_out, q, k, v, out, lse, key_lengths, q_segments, k_segments, softmax_scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, key_lengths, q_segments, k_segments, softmax_scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, key_lengths, q_segments, k_segments)
    ctx.softmax_scale = softmax_scale


def _backward(ctx, grad_out, grad_lse):
    del grad_lse  # the log-sum-exp is an internal output, never differentiated
    q, k, v, out, lse, key_lengths, q_segments, k_segments = ctx.saved_tensors
    dq, dk, dv = _flash_attention_bwd(
        grad_out.contiguous(), q, k, v, out, lse, key_lengths, q_segments, k_segments, ctx.softmax_scale
    )
    return dq, dk, dv, None, None, None, None


_flash_attention_fwd.register_autograd(_backward, setup_context=_setup_context)


def _validate(q, k, v, key_lengths, q_segments, k_segments) -> None:
    check_attention_inputs(q, k, v, key_lengths, q_segments, k_segments)
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"flash_attention: q/k/v dtype must be one of {SUPPORTED_DTYPES}, got {q.dtype}")
    if q.shape[3] > SUPPORTED_HEAD_DIMS[-1]:
        raise ValueError(f"flash_attention: head dim {q.shape[3]} > {SUPPORTED_HEAD_DIMS[-1]} is not supported")


def _as_int32(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device=device, dtype=torch.int32).contiguous()


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_lengths: torch.Tensor | None = None,
    q_segments: torch.Tensor | None = None,
    k_segments: torch.Tensor | None = None,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Fused masked attention ``softmax(q k^T * scale) v`` -> ``[B, H, Nq, D]`` (differentiable).

    Args:
        q: ``[B, H, Nq, D]``; k, v: ``[B, H, Nk, D]``; one dtype of fp16/bf16/fp32 (fp32 accumulation).
            Head dims 32/64/128 run as is; smaller ones are zero-padded to the next supported size.
        key_lengths: int ``[B]``; key j is visible iff ``j < key_lengths[b]`` (None: all keys).
        q_segments, k_segments: int ``[B, Nq]`` / ``[B, Nk]``; a query sees only keys of its own segment.
        softmax_scale: defaults to ``D ** -0.5``.

    A query row that sees no key (including ``Nk == 0`` or a zero length) returns zeros with zero gradients.
    """
    _validate(q, k, v, key_lengths, q_segments, k_segments)
    head_dim = q.shape[3]
    scale = head_dim**-0.5 if softmax_scale is None else float(softmax_scale)
    padded_dim = next(d for d in SUPPORTED_HEAD_DIMS if d >= head_dim)
    if padded_dim != head_dim:  # zero columns change neither q.k nor the kept columns of p.v
        pad = (0, padded_dim - head_dim)
        q, k, v = (torch.nn.functional.pad(t, pad) for t in (q, k, v))
    out, _ = _flash_attention_fwd(
        _last_dim_contiguous(q),
        _last_dim_contiguous(k),
        _last_dim_contiguous(v),
        _as_int32(key_lengths, q.device),
        _as_int32(q_segments, q.device),
        _as_int32(k_segments, q.device),
        scale,
    )
    return out[..., :head_dim] if padded_dim != head_dim else out
