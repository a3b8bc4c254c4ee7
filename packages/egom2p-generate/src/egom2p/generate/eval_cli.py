"""`egom2p-eval`: token accuracy of an EgoM2P checkpoint on rgb2cam / rgb2depth / rgb2gaze / depth2rgb."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from egom2p.core.shards import ShardError
from egom2p.model import EgoM2P

from . import __version__
from .precision import TF32_HELP, parse_device, tf32_on_cuda
from .tasks import DEFAULTS, TASKS, run_eval_task

EXAMPLES = f"""examples:
  egom2p-eval --checkpoint runs/demo-cpu/final --task rgb2cam \\
      --data 'data/demo/val/[cam,depth,gaze,rgb]/synth_full/shard-000000.tar' --max-samples 64
  egom2p-eval --checkpoint ckpt/checkpoint-main.pth --task rgb2depth --data val_root --dataset holoassist --json out.json
defaults are the released eval scripts': ROAR, steps rgb2depth 3 / rgb2cam 3 / rgb2gaze 5 / depth2rgb 6,
temperature 0.01, top-p 0.8, CFG 2.0 with growing conditioning, seed 0. Metrics are token-level.

{TF32_HELP}
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `egom2p-eval`."""
    parser = argparse.ArgumentParser(
        prog="egom2p-eval",
        description="Token-level evaluation of an EgoM2P checkpoint.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint directory (ours, a run's checkpoints/step-N, or a run: its newest step) "
                             "or the original .pth")
    parser.add_argument("--data", required=True,
                        help="shard pattern with a [folder,...] list and brace ranges, or a root directory")
    parser.add_argument("--dataset", help="dataset folder under each modality folder when --data is a root")
    parser.add_argument("--task", required=True, choices=sorted(TASKS), action="append",
                        help="task to run (repeat for several)")
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="override the task's decoding steps")
    parser.add_argument("--scheme", choices=["roar", "maskgit"], default=DEFAULTS["scheme"])
    parser.add_argument("--temp", type=float, default=DEFAULTS["temperature"])
    parser.add_argument("--top-k", type=float, default=DEFAULTS["top_k"])
    parser.add_argument("--top-p", type=float, default=DEFAULTS["top_p"])
    parser.add_argument("--cfg", type=float, default=DEFAULTS["cfg_scale"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--device", type=parse_device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-tf32", action="store_true", help="keep full fp32 matmuls on CUDA (see below)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    return parser


def format_table(results: list[dict]) -> str:
    """A small fixed-width table of eval results."""
    header = f"{'task':<10} {'accuracy':>9} {'tokens':>9} {'samples':>8} {'skipped':>8} {'seconds':>8}"
    rows = [
        f"{r['task']:<10} {r['accuracy']:>9.4f} {r['n_tokens']:>9} {r['n_samples']:>8} {r['n_skipped']:>8} "
        f"{r['seconds']:>8.1f}"
        for r in results
    ]
    return "\n".join([header, *rows])


def main(argv: list[str] | None = None) -> int:
    """Entry point of `egom2p-eval`."""
    args = build_parser().parse_args(argv)
    top_k = int(args.top_k) if args.top_k >= 1 and args.top_k.is_integer() else args.top_k
    try:
        model = EgoM2P.from_pretrained(args.checkpoint).to(args.device).eval()
        with tf32_on_cuda(args.device, enabled=not args.no_tf32):
            results = [
                run_eval_task(
                    model, args.data, task, max_samples=args.max_samples, dataset=args.dataset,
                    batch_size=args.batch_size, steps=args.steps, scheme=args.scheme, temperature=args.temp,
                    top_k=top_k, top_p=args.top_p, cfg_scale=args.cfg, seed=args.seed,
                )  # fmt: skip
                for task in args.task
            ]
    except (ValueError, FileNotFoundError, ShardError) as err:
        print(f"egom2p-eval: error: {err}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
