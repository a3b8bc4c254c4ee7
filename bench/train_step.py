"""Time one EgoM2P training step (forward + backward, optionally an AdamW step).

Prints step time, tokens/s, peak memory and (on GPU) MFU for one configuration. On CPU every
measurement runs in a fresh subprocess so that ru_maxrss is that configuration's own peak.

Samples are not all alike: each draws its own fill of the budgets, uniform in ``fill +- spread/2``
(the released masking fills 1,078 of 2,048 input slots on average and pads 82% of the samples), so
padding and block skipping are exercised. Reported besides: ``valid_tok_s`` (input + target tokens
per second), ``mfu_valid`` (the model's FLOPs, ``EgoM2P.flops_per_sample``, at each sample's valid
token counts) and ``mfu_computed`` (the same formula at the full budgets: the slots a padded step
computes in its linear layers; an upper bound).

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


def make_batch(model: EgoM2P, batch_size: int, enc_tokens: int, dec_tokens: int, fill: float, seed: int,
               spread: float = 0.0):  # fmt: skip
    """Random tokens; sample s gets ``fill_s * budget`` inputs and as many disjoint targets, spread over all
    tokens, ``fill_s`` uniform in ``fill +- spread / 2`` (clipped to [1/budget, 1]).

    Returns the batch and, per sample, (inputs, {modality: targets}).
    """
    gen = torch.Generator().manual_seed(seed)
    specs = model.modalities
    total = sum(s.num_tokens for s in specs.values())
    fills = (fill + spread * (torch.rand(batch_size, generator=gen) - 0.5)).clamp(1 / min(enc_tokens, dec_tokens), 1.0)
    n_in = (fills * enc_tokens).long().clamp(min=1)
    n_tg = (fills * dec_tokens).long().clamp(min=1)
    if int((n_in + n_tg).max()) > total:
        raise SystemExit(f"budgets {int(n_in.max())}+{int(n_tg.max())} exceed the {total} tokens of the modalities")
    rank = torch.argsort(torch.rand(batch_size, total, generator=gen), dim=1)
    is_input = rank < n_in[:, None]
    is_target = (rank >= n_in[:, None]) & (rank < (n_in + n_tg)[:, None])
    batch, start, targets = {}, 0, [{} for _ in range(batch_size)]
    for name, spec in specs.items():
        stop = start + spec.num_tokens
        batch[name] = {
            "tensor": torch.randint(0, spec.vocab_size, (batch_size, *spec.shape), generator=gen),
            "input_mask": ~is_input[:, start:stop],
            "target_mask": ~is_target[:, start:stop],
        }
        for s, count in enumerate(is_target[:, start:stop].sum(1).tolist()):
            if count:
                targets[s][name] = count
        start = stop
    return batch, [(int(n_in[s]), targets[s]) for s in range(batch_size)]


def step_flops(model: EgoM2P, samples, enc_tokens: int, dec_tokens: int) -> tuple[float, float]:
    """(FLOPs at the valid tokens, FLOPs at the full budgets) of one forward + backward over ``samples``."""
    valid = computed = 0.0
    for n_in, targets in samples:
        n_tg = sum(targets.values())
        valid += model.flops_per_sample(n_in, n_tg, targets)
        padded = dict(targets)
        largest = max(padded, key=padded.get)
        padded[largest] += dec_tokens - n_tg  # the padded slots, counted with the largest head
        computed += model.flops_per_sample(enc_tokens, dec_tokens, padded)
    return valid, computed


def measure(opts: argparse.Namespace) -> dict:
    """Build the model and time ``opts.steps`` steps after ``opts.warmup`` untimed ones."""
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    device = torch.device(opts.device)
    cfg = preset_config(opts.preset, attn_backend=opts.backend, fused_loss=opts.fused_loss)
    model = EgoM2P(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if opts.optimizer_step else None
    batch, samples = make_batch(model, opts.batch_size, opts.enc_tokens, opts.dec_tokens, opts.fill, opts.seed,
                                opts.fill_spread)  # fmt: skip
    batch = {m: {k: v.to(device) for k, v in d.items()} for m, d in batch.items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.dtype == "bf16")

    def step() -> None:
        with autocast:
            out = model(batch, num_encoder_tokens=opts.enc_tokens, num_decoder_tokens=opts.dec_tokens)
        out.loss.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)

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
        step()
    sync()
    step_s = (time.perf_counter() - start) / opts.steps
    valid_flops, computed_flops = step_flops(model, samples, opts.enc_tokens, opts.dec_tokens)
    valid_tokens = sum(n_in + sum(targets.values()) for n_in, targets in samples)
    tokens = opts.batch_size * (opts.enc_tokens + opts.dec_tokens)
    result = {
        "preset": opts.preset, "device": str(device), "dtype": opts.dtype, "backend": opts.backend,
        "batch_size": opts.batch_size, "enc_tokens": opts.enc_tokens, "dec_tokens": opts.dec_tokens,
        "fill": opts.fill, "fill_spread": opts.fill_spread, "valid_fraction": round(valid_tokens / tokens, 3),
        "threads": opts.threads, "optimizer_step": opts.optimizer_step,
        "fused_loss": opts.fused_loss, "step_s": round(step_s, 4),
        "budget_tokens_per_s": round(tokens / step_s, 1),
        "valid_tok_s": round(valid_tokens / step_s, 1),
        "achieved_tflops": round(valid_flops / step_s / 1e12, 3),
    }  # fmt: skip
    if device.type == "cuda":
        result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        name = torch.cuda.get_device_name()
        peak = opts.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            result["mfu_valid"] = round(valid_flops / step_s / 1e12 / peak, 4)
            result["mfu_computed"] = round(computed_flops / step_s / 1e12 / peak, 4)
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
    p.add_argument("--fill", type=float, default=1.0, help="mean fraction of each budget holding real tokens")
    p.add_argument("--fill-spread", type=float, default=0.0,
                   help="per-sample fills uniform in fill +- spread/2 (0: every sample alike)")
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
        opts.batch_size, opts.fill, opts.fill_spread = max(opts.batch_size, 2), 0.6, 0.5  # padding exercised
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
