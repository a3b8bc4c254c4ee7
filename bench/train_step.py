"""Time one EgoM2P training step (forward + backward, optionally an AdamW step).

Prints step time, tokens/s, peak memory and (on GPU) MFU for one configuration. On CPU every
measurement runs in a fresh subprocess so that ru_maxrss is that configuration's own peak.

Examples:
  python bench/train_step.py --dry-run
  python bench/train_step.py --preset egom2p-base --enc-tokens 2048 --dec-tokens 2048 --batch-size 1 \
      --dtype fp32 --threads 2 --backend sdpa           # the issue-4 CPU target
  python bench/train_step.py --device cuda --dtype bf16 --batch-size 32 --backend triton --fused-loss
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from egom2p.model import EgoM2P, preset_config

# Dense bf16 tensor-core peaks (TFLOP/s, SXM parts), used when --peak-tflops is not given.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def make_batch(model: EgoM2P, batch_size: int, enc_tokens: int, dec_tokens: int, fill: float, seed: int):
    """Random tokens; per sample ``fill * budget`` inputs and as many disjoint targets, spread over all tokens."""
    gen = torch.Generator().manual_seed(seed)
    specs = model.modalities
    total = sum(s.num_tokens for s in specs.values())
    n_in, n_tg = int(fill * enc_tokens), int(fill * dec_tokens)
    if n_in + n_tg > total:
        raise SystemExit(f"budgets {n_in}+{n_tg} exceed the {total} tokens of the modalities")
    rank = torch.argsort(torch.rand(batch_size, total, generator=gen), dim=1)
    is_input, is_target = rank < n_in, (rank >= n_in) & (rank < n_in + n_tg)
    batch, start = {}, 0
    for name, spec in specs.items():
        stop = start + spec.num_tokens
        batch[name] = {
            "tensor": torch.randint(0, spec.vocab_size, (batch_size, spec.num_tokens), generator=gen),
            "input_mask": ~is_input[:, start:stop],
            "target_mask": ~is_target[:, start:stop],
        }
        start = stop
    return batch


def measure(opts: argparse.Namespace) -> dict:
    """Build the model and time ``opts.steps`` steps after ``opts.warmup`` untimed ones."""
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    device = torch.device(opts.device)
    cfg = preset_config(opts.preset, attn_backend=opts.backend, fused_loss=opts.fused_loss)
    model = EgoM2P(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if opts.optimizer_step else None
    batch = make_batch(model, opts.batch_size, opts.enc_tokens, opts.dec_tokens, opts.fill, opts.seed)
    batch = {m: {k: v.to(device) for k, v in d.items()} for m, d in batch.items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.dtype == "bf16")

    def step() -> dict[str, int]:
        with autocast:
            out = model(batch, num_encoder_tokens=opts.enc_tokens, num_decoder_tokens=opts.dec_tokens)
        out.loss.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)
        return out.num_targets

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(opts.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(opts.steps):
        num_targets = step()
    sync()
    step_s = (time.perf_counter() - start) / opts.steps
    per_sample = {m: n // opts.batch_size for m, n in num_targets.items() if n}
    per_sample_total = sum(per_sample.values())
    # Integer division can leave a remainder; give it to the largest modality so the sum is exact.
    if per_sample:
        per_sample[max(per_sample, key=per_sample.get)] += int(opts.fill * opts.dec_tokens) - per_sample_total
    flops = model.flops_per_sample(int(opts.fill * opts.enc_tokens), int(opts.fill * opts.dec_tokens), per_sample)
    tokens = opts.batch_size * (opts.enc_tokens + opts.dec_tokens)
    result = {
        "preset": opts.preset, "device": str(device), "dtype": opts.dtype, "backend": opts.backend,
        "batch_size": opts.batch_size, "enc_tokens": opts.enc_tokens, "dec_tokens": opts.dec_tokens,
        "fill": opts.fill, "threads": opts.threads, "optimizer_step": opts.optimizer_step,
        "fused_loss": opts.fused_loss, "step_s": round(step_s, 4),
        "budget_tokens_per_s": round(tokens / step_s, 1),
        "achieved_tflops": round(flops * opts.batch_size / step_s / 1e12, 3),
    }
    if device.type == "cuda":
        result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        name = torch.cuda.get_device_name()
        peak = opts.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            result["mfu"] = round(result["achieved_tflops"] / peak, 4)
    else:
        result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring for examples)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="egom2p-base")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--enc-tokens", type=int, default=2048)
    p.add_argument("--dec-tokens", type=int, default=2048)
    p.add_argument("--fill", type=float, default=1.0, help="fraction of each budget holding real tokens (1.0: no padding)")
    p.add_argument("--backend", default="auto", choices=["reference", "sdpa", "triton", "auto"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--optimizer-step", action="store_true", help="include an AdamW step")
    p.add_argument("--fused-loss", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak for MFU (default: table for H100/H200 bf16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="egom2p-tiny, 64/64 tokens, one step: checks the script runs")
    p.add_argument("--in-process", action="store_true", help="do not spawn a fresh subprocess on CPU")
    opts = p.parse_args(argv)
    if opts.dry_run:
        opts.preset, opts.enc_tokens, opts.dec_tokens, opts.steps, opts.warmup = "egom2p-tiny", 64, 64, 1, 0
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    if opts.device == "cpu" and not opts.in_process:
        # A fresh process per configuration: ru_maxrss is then this configuration's peak alone.
        args = (argv if argv is not None else sys.argv[1:]) + ["--in-process"]
        proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr)
        print(proc.stdout.strip())
        return
    print(json.dumps(measure(opts)))


if __name__ == "__main__":
    main()
