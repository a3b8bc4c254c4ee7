"""Cosmos video tokenizer throughput through our adapter: clips per second to encode and to decode (16 frames of
256 x 256 <-> 5 x 32 x 32 ids), including the original's pre- and post-processing (scaling, padding, cropping,
uint8 rounding) and the host <-> device copies, as ``egom2p-tokenize prepare`` and ``egom2p-generate --decode``
run it.

``--tokenizer DIR`` names a folder with NVIDIA's ``encoder.jit`` / ``decoder.jit``; without it (or with
``standin``) the scripted stand-in is timed, and the row says so: its numbers are the adapter's overhead, not
Cosmos's. bf16 on CUDA and fp32 on the CPU by default, as the original.

usage (from the repository root):
  python bench/cosmos.py --device cuda [--tokenizer DIR] [--clips 8] [--repeats 5] [--rows rows.jsonl]
  OMP_NUM_THREADS=1 python bench/cosmos.py --device cpu --clips 2 --repeats 1      # the CPU dry run
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from _rows import append_row  # bench/ is on sys.path when a script runs
from egom2p.tokenizers.cosmos import CosmosVideoTokenizer
from egom2p.tokenizers.cosmos_standin import write_standin
from egom2p.tokenizers.video import CLIP_FRAMES, FRAME_SIZE, TOKEN_SHAPE


def best_seconds(run, repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokenizer", default="standin", help="a folder with encoder.jit + decoder.jit, or standin")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 on CUDA, fp32 on the CPU")
    parser.add_argument("--clips", type=int, default=8, help="clips per call (the batch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", help="append the rows (JSON lines) here")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, None: None}[args.dtype]
    with tempfile.TemporaryDirectory() as tmp:
        source = write_standin(tmp) if args.tokenizer == "standin" else args.tokenizer
        tokenizer = CosmosVideoTokenizer.from_pretrained(source, device=device, dtype=dtype)
    impl = "stand-in (adapter overhead)" if args.tokenizer == "standin" else "Cosmos DV4x8x8"
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (args.clips, CLIP_FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    ids = tokenizer.encode(clips, batch_size=args.clips)  # warm-up, and the ids to decode
    assert ids.shape == (args.clips, *TOKEN_SHAPE), ids.shape
    tokenizer.decode(ids, batch_size=args.clips)
    for mode, run in (("encode", lambda: tokenizer.encode(clips, batch_size=args.clips)),
                      ("decode", lambda: tokenizer.decode(ids, batch_size=args.clips))):
        seconds = best_seconds(run, args.repeats, device)
        append_row(args.rows, {"bench": "cosmos", "impl": impl, "mode": mode,
                               "dtype": str(tokenizer.dtype).removeprefix("torch."), "batch": args.clips,
                               "s": round(seconds, 4), "clips_per_s": round(args.clips / seconds, 2)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
