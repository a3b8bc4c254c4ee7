"""Benchmark the Triton masked attention against SDPA (boolean mask), flex_attention (BlockMask)
and dense unmasked SDPA (the flash ceiling), on the released EgoM2P shapes and mask patterns.

Patterns (N queries and keys; "fill": valid tokens at the released masking, Dirichlet budgets capped
by the 30-token cam/gaze modalities: 1,078 of 2,048 encoder and 1,022 of 2,048 decoder slots):
  enc-pad0         encoder, no padding
  enc-fill53       encoder at the released fill: key and query lengths 0.53 N (padded rows are not computed)
  dec-4runs        decoder self-attention, 4 modality runs of 1400/600/24/24 tokens (scaled to N)
  dec-4runs-fill50 decoder at the released fill: the 4 runs over 0.5 N, then -1 padding
  dec-2runs        decoder self-attention, 2 runs of N/2
  cross            decoder queries (0.5 N valid) -> encoder context (40-70% of the keys valid)
Every masked implementation computes the same function (padded query rows are zero); the Triton
kernel reads lengths and segments, flex a BlockMask built from the same rule, SDPA the boolean mask.
Reported per implementation: time (triton.testing.do_bench, median ms), TFLOP/s on the FLOPs actually
needed (egom2p.model.cost: attention_flops, 4 * D per visible query-key pair forward, and
FLASH_BACKWARD_FACTOR = 2.5x that more for the backward, which recomputes the scores), peak memory.
Rows are appended to --json as they are produced, so a time limit loses only the running row.

Examples:
  python bench/attention.py                       # GPU: batch 4 and 16, 12 heads, D 64, N 2048, bf16
  python bench/attention.py --impls flex --json out.jsonl   # flex alone (it compiles per pattern)
  python bench/attention.py --batch 4 --modes fwd --impls triton sdpa-mask
  python bench/attention.py --dry-run             # CPU, tiny shapes, Triton interpreter: correctness only
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings

if "--dry-run" in sys.argv:  # must precede the first kernel call: CPU runs Triton in its interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch
import torch.nn.functional as F
from _rows import append_row, run_gpu_bench, time_step  # bench/ is on sys.path when a script runs
from egom2p.model.cost import FLASH_BACKWARD_FACTOR, attention_flops
from egom2p.model.kernels.flash_attention import flash_attention
from egom2p.model.kernels.reference import AttentionMask, masked_attention_reference
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

PATTERNS = ("enc-pad0", "enc-fill53", "dec-4runs", "dec-4runs-fill50", "dec-2runs", "cross")
IMPLS = ("triton", "sdpa-mask", "flex", "sdpa-dense")
DECODER_RUNS = (1400, 600, 24, 24)  # the released 4-modality decoder layout at N = 2048
ENCODER_FILL, DECODER_FILL = 0.53, 0.5  # the released masking's average fill of the 2048/2048 budgets


def _runs_to_segments(runs: list[int], batch: int, n: int, device: torch.device) -> torch.Tensor:
    """Segment ids of consecutive ``runs``, then -1 padding up to ``n``."""
    ids = torch.repeat_interleave(torch.arange(len(runs)), torch.tensor(runs))
    ids = torch.cat([ids, torch.full((n - len(ids),), -1)])
    return ids.to(device=device, dtype=torch.int32).expand(batch, -1).contiguous()


def _scaled_runs(runs: tuple[int, ...], n: int) -> list[int]:
    """``runs`` rescaled to sum to ``n`` (every run keeps at least one token)."""
    scaled = [max(1, round(r * n / sum(runs))) for r in runs]
    scaled[0] += n - sum(scaled)
    return scaled


def make_case(pattern: str, batch: int, heads: int, n: int, head_dim: int, dtype, device, n_keys: int | None = None):
    """q, k, v and the :class:`AttentionMask` of one pattern.

    ``n_keys`` (cross only) sets the context length; default ``n``.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    n_k = n_keys if pattern == "cross" and n_keys else n
    q = torch.randn(batch, heads, n, head_dim, generator=gen, device=device, dtype=dtype)
    k, v = (torch.randn(batch, heads, n_k, head_dim, generator=gen, device=device, dtype=dtype) for _ in range(2))

    def lengths(fill: float) -> torch.Tensor:
        return torch.full((batch,), max(1, int(fill * n)), dtype=torch.int32, device=device)

    if pattern == "enc-pad0":
        return q, k, v, AttentionMask(key_lengths=lengths(1.0))
    if pattern == "enc-fill53":
        return q, k, v, AttentionMask.self_attention(lengths(ENCODER_FILL))
    if pattern == "cross":
        keys = torch.randint(int(0.4 * n_k), int(0.7 * n_k) + 1, (batch,), generator=gen, device=device)
        return q, k, v, AttentionMask(keys.to(torch.int32), lengths(DECODER_FILL))
    if pattern == "dec-2runs":
        segments = _runs_to_segments([n // 2, n - n // 2], batch, n, device)
        return q, k, v, AttentionMask(lengths(1.0), q_segments=segments, k_segments=segments)
    fill = DECODER_FILL if pattern == "dec-4runs-fill50" else 1.0
    valid = lengths(fill)
    segments = _runs_to_segments(_scaled_runs(DECODER_RUNS, int(valid[0])), batch, n, device)
    return q, k, v, AttentionMask(valid, valid if fill < 1 else None, segments, segments)


def _visible_pairs(q, k, mask: AttentionMask) -> int:
    return int(mask.visibility(q.shape[0], q.shape[2], k.shape[2], q.device).sum().item()) * q.shape[1]


def implementations(q, k, v, mask: AttentionMask, compile_flex: bool, names=IMPLS):
    """name -> forward ``fn(q, k, v)`` for this case's mask; all compute the same attention except the dense ceiling."""
    batch, _, n_q, _ = q.shape
    n_k = k.shape[2]
    impls = {}
    if "triton" in names:
        impls["triton"] = lambda q, k, v: flash_attention(q, k, v, mask)
    if "sdpa-mask" in names:  # as the model's sdpa backend: rows that see nothing are opened, then zeroed
        bool_mask = mask.visibility(batch, n_q, n_k, q.device)
        sees_any = bool_mask.any(-1, keepdim=True)
        open_mask = bool_mask | ~sees_any
        impls["sdpa-mask"] = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=open_mask).masked_fill(
            ~sees_any, 0.0)  # fmt: skip
    if "flex" in names:
        keys = mask.key_lengths.long()
        rows = (mask.query_lengths if mask.query_lengths is not None else torch.full_like(keys, n_q)).long()
        no_segments = mask.q_segments is None
        q_seg = torch.zeros(batch, n_q, dtype=torch.int32, device=q.device) if no_segments else mask.q_segments
        k_seg = torch.zeros(batch, n_k, dtype=torch.int32, device=q.device) if no_segments else mask.k_segments

        def mask_mod(b, h, q_idx, kv_idx):
            same = (q_seg[b, q_idx] == k_seg[b, kv_idx]) & (q_seg[b, q_idx] >= 0)
            return (kv_idx < keys[b]) & (q_idx < rows[b]) & same

        block_mask = create_block_mask(mask_mod, batch, None, n_q, n_k, device=q.device)
        flex = torch.compile(flex_attention) if compile_flex else flex_attention
        # flex gives rows that see nothing zeros already (its log-sum-exp is -inf there).
        impls["flex"] = lambda q, k, v: flex(q, k, v, block_mask=block_mask)
    if "sdpa-dense" in names:
        impls["sdpa-dense"] = lambda q, k, v: F.scaled_dot_product_attention(q, k, v)
    return impls


def dry_run() -> int:
    """Tiny CPU cases through the Triton interpreter: every masked implementation vs float64 math."""
    warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    failures = 0
    for pattern in PATTERNS:
        case = make_case(pattern, 2, 2, 48, 32, torch.float32, torch.device("cpu"), n_keys=61)
        q, k, v = (t.requires_grad_() for t in case[:3])
        ref_in = [t.detach().double().requires_grad_() for t in (q, k, v)]
        ref = masked_attention_reference(*ref_in, case[3])
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
            print(f"{pattern:16s} {name:10s} max abs error ({checked}) {err:.2e} {'ok' if ok else 'MISMATCH'}")
    return 1 if failures else 0


def _run_once(fn, q, k, v, grad_out):
    """Forward, plus the backward to q, k, v when ``grad_out`` is given."""
    out = fn(q, k, v)
    return out if grad_out is None else torch.autograd.grad(out, (q, k, v), grad_out)


def bench(opts: argparse.Namespace) -> list[dict]:
    device, dtype = torch.device("cuda"), torch.bfloat16
    rows = []
    for batch in opts.batch:
        for pattern in opts.patterns:
            case = make_case(pattern, batch, opts.heads, opts.seq, opts.head_dim, dtype, device)
            q, k, v = (t.requires_grad_() for t in case[:3])
            fwd_flops = attention_flops(_visible_pairs(*case), opts.head_dim)
            dense_flops = attention_flops(batch * opts.heads * opts.seq * opts.seq, opts.head_dim)
            for name, fn in implementations(*case, compile_flex=True, names=opts.impls).items():
                if name == "sdpa-dense" and pattern != opts.patterns[0]:
                    continue  # pattern-independent: measured once per batch
                for mode in opts.modes:
                    ms, peak_gib = time_step(
                        functools.partial(_run_once, fn, q, k, v, torch.randn_like(q) if mode != "fwd" else None))
                    flops = dense_flops if name == "sdpa-dense" else fwd_flops
                    flops *= 1.0 if mode == "fwd" else 1 + FLASH_BACKWARD_FACTOR
                    row = {
                        "bench": "attention", "batch": batch, "pattern": "dense" if name == "sdpa-dense" else pattern,
                        "mode": mode, "impl": name, "ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1),
                        "peak_gib": round(peak_gib, 3),
                    }  # fmt: skip
                    rows.append(append_row(opts.json, row))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[4, 16])
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--patterns", nargs="+", choices=PATTERNS, default=list(PATTERNS))
    p.add_argument("--modes", nargs="+", choices=("fwd", "fwd+bwd"), default=["fwd", "fwd+bwd"])
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=[i for i in IMPLS if i != "flex"],
                   help="implementations (default: all but flex, which compiles per pattern: give it its own run)")
    return run_gpu_bench(p, argv, dry_run, bench, "bench/attention.py")


if __name__ == "__main__":
    sys.exit(main())
