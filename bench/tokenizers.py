"""Camera / gaze VQ-VAE tokenizers at the released size: encode and decode throughput and one training step.

Each configuration runs in a fresh process (its own peak RSS); every row names the configuration. The in-run
baseline is `--attention written-out`: the original's attention, written out by hand (q k^T * scale, softmax,
@ v, as `egom2p/vq/models/cam_transformer.py` does), swapped into our modules; everything else is identical.

usage (from the repository root):
  python bench/tokenizers.py [--preset cam-released] [--batch-size 128] [--threads 2] [--repeats 3]
                             [--train-batch-size 32] [--dtype fp32|bf16] [--rows FILE] [--only NAME ...]

rows (JSON lines): {"config", "what" (encode | decode | train_step), "batch", "seconds" (best of --repeats),
"windows_per_s", "peak_rss_gib", "device", "threads", "dtype"}
"""

from __future__ import annotations

import argparse
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


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, MKL plans
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _measure(args: argparse.Namespace) -> list[dict]:
    import torch
    from egom2p.tokenizers import VQVAE, layers

    torch.set_num_threads(args.threads)
    if args.attention == "written-out":
        layers.Attention.forward = _written_out_attention
    torch.manual_seed(0)
    model = VQVAE.from_preset(args.preset)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    channels = 9 if model.kind == "cam" else 3
    x = torch.randn(args.batch_size, model.config.num_frames, channels)
    if model.kind == "gaze":
        x[..., 2] = 1.0
    rows = []
    base = {"threads": args.threads, "dtype": args.dtype, "device": "cpu", "preset": args.preset}
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        tokens = model.tokenize(x)
        seconds = _best(lambda: model.tokenize(x), args.repeats)
        rows.append({**base, "what": "encode", "batch": args.batch_size, "seconds": round(seconds, 3),
                     "windows_per_s": round(args.batch_size / seconds, 1)})
        seconds = _best(lambda: model.decode_tokens(tokens), args.repeats)
        rows.append({**base, "what": "decode", "batch": args.batch_size, "seconds": round(seconds, 3),
                     "windows_per_s": round(args.batch_size / seconds, 1)})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, betas=(0.9, 0.99))
    xt = x[: args.train_batch_size]

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            recon, commit = model(xt)
            loss = model.reconstruction_loss(recon.float(), xt) + commit
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _best(step, args.repeats)
    rows.append({**base, "what": "train_step", "batch": args.train_batch_size, "seconds": round(seconds, 3),
                 "windows_per_s": round(args.train_batch_size / seconds, 1)})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for row in rows:
        row["peak_rss_gib"] = round(peak, 2)  # of the whole process (all three measurements)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cam-released")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--rows", help="append the rows to this JSON-lines file")
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="run only these configurations")
    parser.add_argument("--attention", choices=["sdpa", "written-out"], help=argparse.SUPPRESS)  # one child
    args = parser.parse_args()
    if args.attention:  # a child process: measure one configuration and print its rows
        print(json.dumps(_measure(args)))
        return
    common = ["--preset", args.preset, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
              "--repeats", str(args.repeats), "--train-batch-size", str(args.train_batch_size), "--dtype", args.dtype]
    for name in args.only or CONFIGS:
        out = subprocess.run([sys.executable, __file__, *common, *CONFIGS[name]], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        for row in json.loads(out.stdout.strip().splitlines()[-1]):
            append_row(args.rows, {"config": name, **row})


if __name__ == "__main__":
    main()
