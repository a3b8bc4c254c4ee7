"""Benchmark the Triton masked attention against SDPA (boolean mask), flex_attention (BlockMask)
and dense unmasked SDPA (the flash ceiling), on the released EgoM2P shapes.

Patterns (self-attention unless noted, N queries and keys):
  enc-pad0   encoder, no padding (key lengths = N)
  enc-pad25  encoder, 25% padding (key lengths = 0.75 N)
  dec-4runs  decoder self-attention, 4 modality runs of 1400/600/24/24 tokens (scaled to N)
  dec-2runs  decoder self-attention, 2 runs of N/2
  cross      decoder queries -> encoder context, per-sample context lengths of 40-70% of the keys
             (the released masking fills about 53% of the 2048 input slots on average)
Reported per implementation: time (triton.testing.do_bench, ms), TFLOP/s on the FLOPs actually
needed (4 * D per visible query-key pair forward, 2.5x that more for the backward), peak memory.

Examples:
  python bench/attention.py                       # GPU: batch 4 and 16, 12 heads, D 64, N 2048, bf16
  python bench/attention.py --batch 4 --modes fwd --json out.jsonl
  python bench/attention.py --dry-run             # CPU, tiny shapes, Triton interpreter: correctness only
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import warnings

if "--dry-run" in sys.argv:  # must precede the first kernel call: CPU runs Triton in its interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch
import torch.nn.functional as F
from egom2p.model.kernels.flash_attention import flash_attention
from egom2p.model.kernels.reference import attention_visibility, masked_attention_reference
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

PATTERNS = ("enc-pad0", "enc-pad25", "dec-4runs", "dec-2runs", "cross")
DECODER_RUNS = (1400, 600, 24, 24)  # the released 4-modality decoder layout at N = 2048


def _runs_to_segments(runs: list[int], batch: int, device: torch.device) -> torch.Tensor:
    ids = torch.repeat_interleave(torch.arange(len(runs)), torch.tensor(runs))
    return ids.to(device=device, dtype=torch.int32).expand(batch, -1).contiguous()


def _scaled_runs(runs: tuple[int, ...], n: int) -> list[int]:
    """``runs`` rescaled to sum to ``n`` (every run keeps at least one token)."""
    scaled = [max(1, round(r * n / sum(runs))) for r in runs]
    scaled[0] += n - sum(scaled)
    return scaled


def make_case(pattern: str, batch: int, heads: int, n: int, head_dim: int, dtype, device, n_keys: int | None = None):
    """q, k, v and the mask metadata (key_lengths, q_segments, k_segments) of one pattern.

    ``n_keys`` (cross only) sets the context length; default ``n``.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    n_k = n_keys if pattern == "cross" and n_keys else n
    q = torch.randn(batch, heads, n, head_dim, generator=gen, device=device, dtype=dtype)
    k, v = (torch.randn(batch, heads, n_k, head_dim, generator=gen, device=device, dtype=dtype) for _ in range(2))
    full = torch.full((batch,), n, dtype=torch.int32, device=device)
    if pattern == "enc-pad0":
        return q, k, v, full, None, None
    if pattern == "enc-pad25":
        return q, k, v, torch.full((batch,), (3 * n) // 4, dtype=torch.int32, device=device), None, None
    if pattern == "cross":
        lengths = torch.randint(int(0.4 * n_k), int(0.7 * n_k) + 1, (batch,), generator=gen, device=device)
        return q, k, v, lengths.to(torch.int32), None, None
    runs = _scaled_runs(DECODER_RUNS, n) if pattern == "dec-4runs" else [n // 2, n - n // 2]
    segments = _runs_to_segments(runs, batch, device)
    return q, k, v, full, segments, segments


def _visible_pairs(q, k, key_lengths, q_segments, k_segments) -> int:
    mask = attention_visibility(q.shape[0], q.shape[2], k.shape[2], q.device, key_lengths, q_segments, k_segments)
    return int(mask.sum().item()) * q.shape[1]


def implementations(q, k, v, key_lengths, q_segments, k_segments, compile_flex: bool):
    """name -> forward ``fn(q, k, v)`` for this case's mask; all compute the same attention except the dense ceiling."""
    batch, _, n_q, _ = q.shape
    n_k = k.shape[2]
    bool_mask = attention_visibility(batch, n_q, n_k, q.device, key_lengths, q_segments, k_segments)
    lengths = key_lengths.long()
    q_seg = q_segments if q_segments is not None else torch.zeros(batch, n_q, dtype=torch.int32, device=q.device)
    k_seg = k_segments if k_segments is not None else torch.zeros(batch, n_k, dtype=torch.int32, device=q.device)

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx < lengths[b]) & (q_seg[b, q_idx] == k_seg[b, kv_idx])

    block_mask = create_block_mask(mask_mod, batch, None, n_q, n_k, device=q.device)
    flex = torch.compile(flex_attention) if compile_flex else flex_attention
    return {
        "triton": lambda q, k, v: flash_attention(q, k, v, key_lengths, q_segments, k_segments),
        "sdpa-mask": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask),
        "flex": lambda q, k, v: flex(q, k, v, block_mask=block_mask),
        "sdpa-dense": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
    }


def dry_run() -> int:
    """Tiny CPU cases through the Triton interpreter: every masked implementation vs float64 math."""
    warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    failures = 0
    for pattern in PATTERNS:
        case = make_case(pattern, 2, 2, 48, 32, torch.float32, torch.device("cpu"), n_keys=61)
        q, k, v = (t.requires_grad_() for t in case[:3])
        ref_in = [t.detach().double().requires_grad_() for t in (q, k, v)]
        ref = masked_attention_reference(*ref_in, *case[3:])
        ref_grads = torch.autograd.grad(ref.sum(), ref_in)
        for name, fn in implementations(*case, compile_flex=False).items():
            if name == "sdpa-dense":
                continue  # the unmasked ceiling computes a different function
            if name == "flex":  # flex_attention has no CPU backward: check its forward only
                got, want, checked = (fn(q.detach(), k.detach(), v.detach()),), (ref,), "out"
            else:
                out = fn(q, k, v)
                got, want, checked = (
                    (out, *torch.autograd.grad(out.sum(), (q, k, v))),
                    (ref, *ref_grads),
                    "out, dq, dk, dv",
                )
            err = max((a.double() - b).abs().max().item() for a, b in zip(got, want))
            ok = err < 1e-4
            failures += not ok
            print(f"{pattern:10s} {name:10s} max abs error ({checked}) {err:.2e} {'ok' if ok else 'MISMATCH'}")
    return 1 if failures else 0


def _run_once(fn, q, k, v, grad_out):
    """Forward, plus the backward to q, k, v when ``grad_out`` is given."""
    out = fn(q, k, v)
    return out if grad_out is None else torch.autograd.grad(out, (q, k, v), grad_out)


def bench(opts: argparse.Namespace) -> list[dict]:
    from triton.testing import do_bench

    device, dtype = torch.device("cuda"), torch.bfloat16
    rows = []
    for batch in opts.batch:
        for pattern in opts.patterns:
            case = make_case(pattern, batch, opts.heads, opts.seq, opts.head_dim, dtype, device)
            q, k, v = (t.requires_grad_() for t in case[:3])
            fwd_flops = 4 * opts.head_dim * _visible_pairs(*case)
            dense_flops = 4 * opts.head_dim * batch * opts.heads * opts.seq * opts.seq
            for name, fn in implementations(*case, compile_flex=True).items():
                if name == "sdpa-dense" and pattern != opts.patterns[0]:
                    continue  # pattern-independent: measured once per batch
                for mode in opts.modes:
                    step = functools.partial(_run_once, fn, q, k, v, torch.randn_like(q) if mode != "fwd" else None)
                    step()  # compile / autotune outside the timing
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    ms = do_bench(step, return_mode="median")
                    peak_gib = (torch.cuda.max_memory_allocated() - base) / 2**30
                    flops = dense_flops if name == "sdpa-dense" else fwd_flops
                    flops *= 1.0 if mode == "fwd" else 3.5
                    row = {
                        "bench": "attention", "batch": batch, "pattern": "dense" if name == "sdpa-dense" else pattern,
                        "mode": mode, "impl": name, "ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1),
                        "peak_gib": round(peak_gib, 3),
                    }  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[4, 16])
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--patterns", nargs="+", choices=PATTERNS, default=list(PATTERNS))
    p.add_argument("--modes", nargs="+", choices=("fwd", "fwd+bwd"), default=["fwd", "fwd+bwd"])
    p.add_argument("--json", help="append the result rows to this JSON-lines file")
    p.add_argument("--dry-run", action="store_true", help="tiny CPU shapes, Triton interpreter, correctness only")
    opts = p.parse_args(argv)
    if opts.dry_run:
        return dry_run()
    if not torch.cuda.is_available():
        sys.exit("bench/attention.py needs a CUDA GPU (or --dry-run)")
    rows = bench(opts)
    if opts.json:
        with open(opts.json, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
