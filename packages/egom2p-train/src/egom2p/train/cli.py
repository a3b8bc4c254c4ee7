"""``egom2p-train`` / ``python -m egom2p.train``: a config file plus ``key=value`` overrides."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

EXAMPLES = """\
examples:
  # single process (CPU demo)
  egom2p-train --config configs/train/demo-cpu.yaml output_dir=runs/demo
  # tiny model, 20 steps
  egom2p-train --config configs/train/demo-cpu.yaml model_overrides.dim=48 max_steps=20 output_dir=runs/t
  # one node, 8 GPUs
  torchrun --standalone --nproc_per_node=8 -m egom2p.train --config configs/train/egom2p-b-released.yaml
  # several nodes (run on each node)
  torchrun --nnodes=64 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=$HEAD:29500 \\
      --rdzv_id=$JOB_ID -m egom2p.train --config configs/train/egom2p-b-released.yaml

Re-running the same command resumes from the newest checkpoint in output_dir (auto_resume=true).
Keys are listed in packages/egom2p-train/README.md.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (frozen by a test)."""
    parser = argparse.ArgumentParser(
        prog="egom2p-train", description="Train EgoM2P (single process or under torchrun).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", metavar="FILE", help="training YAML (configs/train/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides applied after the file, e.g. blr=2e-4 model_overrides.dim=48")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, validate, train. Exit codes: 0 done or stopped cleanly, 1 non-finite steps, 2 bad config."""
    from egom2p.train.config import ConfigError, load_config
    from egom2p.train.faults import NonFiniteStepError

    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"egom2p-train: {err}", file=sys.stderr)
        return 2
    from egom2p.train.trainer import run_training

    if int(os.environ.get("RANK", 0)) == 0:
        print(f"egom2p-train: config {args.config or '(defaults)'} overrides {list(args.overrides) or 'none'}",
              flush=True)
    try:
        run_training(cfg, log=lambda msg: print(msg, flush=True))
    except ConfigError as err:  # found while building the model or the schedule
        print(f"egom2p-train: {err}", file=sys.stderr)
        return 2
    except NonFiniteStepError as err:
        print(f"egom2p-train: stopped: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
