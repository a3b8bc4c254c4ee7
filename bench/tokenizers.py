"""Camera / gaze VQ-VAE tokenizers at the released size: encode and decode throughput and one training step.

Each configuration runs in a fresh process (its own peak RSS); every row names the configuration. The in-run
baseline is `--attention written-out`: the original's attention, written out by hand (q k^T * scale, softmax,
@ v, as `egom2p/vq/models/cam_transformer.py` does), swapped into our modules; everything else is identical.

usage (from the repository root):
  python bench/tokenizers.py [--preset cam-released] [--batch-size 128] [--threads 2] [--repeats 3]
                             [--train-batch-size 32] [--dtype fp32|bf16] [--device cpu|cuda] [--rows FILE]
                             [--only NAME ...]

rows (JSON lines): {"bench": "tokenizer", "config", "impl" (encode | decode | train_step), "batch", "seconds"
(best of --repeats), "ms", "windows_per_s", "peak_gib" (peak RSS on the CPU; peak allocated on CUDA), "device",
"threads", "dtype", "check"}. Each configuration also checks itself against the same model in float64 (tokens equal
up to near-ties, reconstruction close); the script exits 1 when a check fails. `--dry-run`: cam-tiny, small
batches, one repeat (the CI smoke test).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rows import append_row  # noqa: E402

CONFIGS = {
    "written-out attention (the original's math) - in-run baseline": ["--attention", "written-out"],
    "sdpa (ours)": ["--attention", "sdpa"],
}


def _written_out_attention(self, x):  # the original's attention, for the baseline only
    import torch
    from einops import rearrange

    q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
    attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    out = torch.softmax(attn, dim=-1) @ v
    return self.proj(rearrange(out, "b h n d -> b n (h d)"))


def _best(fn, repeats: int, sync) -> float:
    fn()  # warm-up: allocator, MKL plans, CUDA kernels
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def _measure(args: argparse.Namespace) -> list[dict]:
    import torch
    from egom2p.tokenizers import VQVAE, layers

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if args.attention == "written-out":
        layers.Attention.forward = _written_out_attention
    torch.manual_seed(0)
    model = VQVAE.from_preset(args.preset).to(device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    autocast = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)  # noqa: E731
    channels = 9 if model.kind == "cam" else 3
    x = torch.randn(args.batch_size, model.config.num_frames, channels, device=device)
    if model.kind == "gaze":
        x[..., 2] = 1.0
    rows = []
    base = {"bench": "tokenizer", "threads": args.threads, "dtype": args.dtype, "device": device.type,
            "preset": args.preset}

    def row(what: str, batch: int, seconds: float) -> dict:
        return {**base, "impl": what, "batch": batch, "seconds": round(seconds, 4), "ms": round(1000 * seconds, 1),
                "windows_per_s": round(batch / seconds, 1)}

    model.eval()
    check = _check_against_float64(model, x) if dtype == torch.float32 else _agreement_with_float32(model, x, dtype)
    model.set_compute_dtype(dtype)  # what `egom2p-tokenize --dtype` and `from_pretrained(compute_dtype=)` do
    with torch.inference_mode():
        tokens = model.tokenize(x)
        rows.append(row("encode", args.batch_size, _best(lambda: model.tokenize(x), args.repeats, sync)))
        rows.append(row("decode", args.batch_size, _best(lambda: model.decode_tokens(tokens), args.repeats, sync)))
    model.set_compute_dtype(None)  # training: the trainer's autocast (config `dtype`), as below
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, betas=(0.9, 0.99))
    xt = x[: args.train_batch_size]

    def step() -> None:
        with autocast():
            recon, commit = model(xt)
            loss = model.reconstruction_loss(recon.float(), xt) + commit
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows.append(row("train_step", args.train_batch_size, _best(step, args.repeats, sync)))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for r in rows:
        r["peak_gib"] = round(peak, 2)  # of the whole process (all three measurements)
        r["check"] = check
    return rows


def _check_against_float64(model, x) -> str:
    """"ok" when the measured path agrees with the same weights in float64: every token is the nearest code or
    within 1e-5 cosine of it (a near-tie), and the reconstruction of the same tokens is within 1e-4; else what
    differs."""
    import torch
    import torch.nn.functional as F

    reference = copy.deepcopy(model).double()
    with torch.inference_mode():
        tokens = model.tokenize(x)
        codes = F.normalize(reference.quantize._codebook.embed, dim=-1)
        similarity = F.normalize(reference.encode(x.double()), dim=-1) @ codes.t()
        gap = (similarity.max(-1).values - similarity.gather(-1, tokens[..., None]).squeeze(-1)).max().item()
        error = (model.decode_tokens(tokens).double() - reference.decode_tokens(tokens)).abs().max().item()
    if gap > 1e-5 or error > 1e-4:
        return f"FAILED: a token is {gap:.2e} (cosine) from the nearest code, reconstruction differs by {error:.2e}"
    return "ok"


def _agreement_with_float32(model, x, dtype) -> str:
    """How far the reduced-precision path is from float32 on the same weights: the share of equal tokens (a flip
    is a near-tie) and the largest reconstruction difference of the same tokens relative to its range."""
    import torch

    with torch.inference_mode():
        tokens32 = model.tokenize(x)
        recon32 = model.decode_tokens(tokens32)
        model.set_compute_dtype(dtype)
        tokens = model.tokenize(x)
        recon = model.decode_tokens(tokens32)
        model.set_compute_dtype(None)
    equal = (tokens == tokens32).double().mean().item()
    relative = ((recon - recon32).abs().max() / recon32.abs().max()).item()
    return f"tokens equal to float32: {100 * equal:.2f}%; reconstruction within {relative:.1e} of its range"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cam-released")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rows", help="append the rows to this JSON-lines file")
    parser.add_argument("--dry-run", action="store_true", help="cam-tiny, batch 8 / 4, one repeat (CI smoke test)")
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="run only these configurations")
    parser.add_argument("--attention", choices=["sdpa", "written-out"], help=argparse.SUPPRESS)  # one child
    args = parser.parse_args()
    if args.attention:  # a child process: measure one configuration and print its rows
        print(json.dumps(_measure(args)))
        return
    if args.dry_run:
        args.preset, args.batch_size, args.train_batch_size, args.repeats = "cam-tiny", 8, 4, 1
    common = ["--preset", args.preset, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
              "--repeats", str(args.repeats), "--train-batch-size", str(args.train_batch_size), "--dtype", args.dtype,
              "--device", args.device]
    failed = False
    for name in args.only or CONFIGS:
        out = subprocess.run([sys.executable, __file__, *common, *CONFIGS[name]], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        for row in json.loads(out.stdout.strip().splitlines()[-1]):
            append_row(args.rows, {"config": name, **row})
            failed = failed or row["check"].startswith("FAILED")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
