"""Benchmark the fused output head + cross-entropy against the unfused head at the released shapes.

One video-modality head at batch 4: about 4 x 1000 target tokens, D = 768, V = 64000, bf16.
Implementations (summed CE; "fwd+bwd" adds the gradients w.r.t. hidden and weight, "no_grad" is
the forward under torch.no_grad, as validation runs it):
  unfused-fp32   F.cross_entropy(F.linear(h, w).float(), t, reduction="sum")   (the model's unfused path)
  unfused-bf16   F.cross_entropy(F.linear(h, w), t, reduction="sum")            (bf16 logits)
  fused-<c>      fused_linear_cross_entropy(h, w, t, chunk_size=c)               (never holds [T, V];
                 "auto" sizes the chunk from V: ~256 MiB of logits)
Reported: time (triton.testing.do_bench, median ms) and peak memory above the inputs. Rows are
appended to --json as they are produced, so a time limit loses only the running row.

Examples:
  python bench/loss.py                    # GPU
  python bench/loss.py --tokens 8000 --chunks auto 1024 4096 --json out.jsonl
  python bench/loss.py --dry-run          # CPU, tiny shapes: correctness only
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from _rows import append_row, run_gpu_bench, time_step  # bench/ is on sys.path when a script runs
from egom2p.model.kernels.fused_linear_ce import fused_linear_cross_entropy


def _chunk(value: str) -> int | None:
    """A --chunks entry: a token count, or "auto" (None: sized from the vocabulary)."""
    return None if value == "auto" else int(value)


def implementations(chunks: list[int | None]) -> dict:
    """name -> ``fn(hidden, weight, targets)`` returning the summed CE."""
    impls = {
        "unfused-fp32": lambda h, w, t: F.cross_entropy(F.linear(h, w).float(), t, reduction="sum"),
        "unfused-bf16": lambda h, w, t: F.cross_entropy(F.linear(h, w), t, reduction="sum"),
    }
    for c in chunks:
        impls[f"fused-{c or 'auto'}"] = lambda h, w, t, c=c: fused_linear_cross_entropy(h, w, t, chunk_size=c)
    return impls


def make_inputs(tokens: int, dim: int, vocab: int, dtype, device):
    gen = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(tokens, dim, generator=gen, device=device, dtype=dtype).requires_grad_()
    weight = (torch.randn(vocab, dim, generator=gen, device=device, dtype=dtype) * dim**-0.5).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), generator=gen, device=device)
    return hidden, weight, targets


def dry_run() -> int:
    """Tiny fp32 CPU shapes: every implementation's loss and gradients vs fp64 unfused math."""
    hidden, weight, targets = make_inputs(37, 16, 53, torch.float32, torch.device("cpu"))
    ref_in = [t.detach().double().requires_grad_() for t in (hidden, weight)]
    ref = F.cross_entropy(ref_in[0] @ ref_in[1].T, targets, reduction="sum")
    ref_grads = torch.autograd.grad(ref, ref_in)
    failures = 0
    for name, fn in implementations([8, 64, None]).items():
        loss = fn(hidden, weight, targets)
        got = (loss, *torch.autograd.grad(loss, (hidden, weight)))
        ok = all(torch.allclose(a.double(), b, rtol=1e-4, atol=1e-4) for a, b in zip(got, (ref, *ref_grads)))
        err = max((a.double() - b).abs().max().item() for a, b in zip(got, (ref, *ref_grads)))
        failures += not ok
        print(f"{name:13s} max abs error (loss, d hidden, d weight) {err:.2e} {'ok' if ok else 'MISMATCH'}")
    return 1 if failures else 0


def bench(opts: argparse.Namespace) -> list[dict]:
    device = torch.device("cuda")
    hidden, weight, targets = make_inputs(opts.tokens, opts.dim, opts.vocab, torch.bfloat16, device)
    rows = []
    for name, fn in implementations(opts.chunks).items():
        for mode in opts.modes:

            def step(fn=fn, mode=mode):
                if mode == "no_grad":
                    with torch.no_grad():
                        return fn(hidden, weight, targets)
                return torch.autograd.grad(fn(hidden, weight, targets), (hidden, weight))

            ms, peak_gib = time_step(step)
            rows.append(append_row(opts.json, {"bench": "loss", "tokens": opts.tokens, "dim": opts.dim,
                                               "vocab": opts.vocab, "mode": mode, "impl": name, "ms": round(ms, 3),
                                               "peak_gib": round(peak_gib, 3)}))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=4000, help="target tokens of one modality over the batch")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--vocab", type=int, default=64000)
    p.add_argument("--chunks", type=_chunk, nargs="+", default=[None, 1024, 4096], help='token counts or "auto"')
    p.add_argument("--modes", nargs="+", choices=("fwd+bwd", "no_grad"), default=["fwd+bwd", "no_grad"])
    return run_gpu_bench(p, argv, dry_run, bench, "bench/loss.py")


if __name__ == "__main__":
    sys.exit(main())
