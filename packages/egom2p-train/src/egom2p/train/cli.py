"""``egom2p-train`` / ``python -m egom2p.train``: a config file plus dotted ``key=value`` overrides."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from egom2p.train import __version__

if TYPE_CHECKING:
    from egom2p.train.config import TrainConfig

EXAMPLES = """\
examples:
  # single process (CPU demo)
  egom2p-train --config configs/train/demo-cpu.yaml output_dir=runs/demo
  # tiny model, 20 steps: any key of the tree, data keys included, as a dotted override
  egom2p-train --config configs/train/demo-cpu.yaml model.dim=48 schedule.max_steps=20 \\
      data.train.num_input_tokens=32 output_dir=runs/t
  # the resolved tree, and the schedule a 256-GPU job would run, without training
  egom2p-train --config configs/train/egom2p-b-released.yaml --print-config
  egom2p-train --config configs/train/egom2p-b-released.yaml --dry-run --world-size 256
  # one node, 8 GPUs
  torchrun --standalone --nproc_per_node=8 -m egom2p.train --config configs/train/egom2p-b-released.yaml
  # several nodes (run on each node)
  torchrun --nnodes=64 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=$HEAD:29500 \\
      --rdzv_id=$JOB_ID -m egom2p.train --config configs/train/egom2p-b-released.yaml

Re-running the same command resumes from the newest output_dir/checkpoints/step-N/
(checkpoint.auto_resume=true); every step directory opens with EgoM2P.from_pretrained.
Relative paths in a config file resolve against its project root, on the command line against the
working directory. Keys are listed in packages/egom2p-train/README.md.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (frozen by a test)."""
    parser = argparse.ArgumentParser(
        prog="egom2p-train", description="Train EgoM2P (single process or under torchrun).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", metavar="FILE", help="training YAML (configs/train/*.yaml)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config tree (YAML) and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the derived schedule (lr, global batch, steps, warmup) and exit")
    parser.add_argument("--world-size", type=int, metavar="N", default=None,
                        help="world size for --dry-run (default: $WORLD_SIZE or 1)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides applied after the file, e.g. optim.blr=2e-4 model.dim=48")
    return parser


def _dry_run(cfg: TrainConfig, world_size: int) -> str:
    """The derived run for ``world_size`` ranks, as printed by ``--dry-run``."""
    from egom2p.train.schedule import derive_schedule

    data = cfg.data_config()
    s = derive_schedule(cfg, world_size, data.max_input_tokens + data.max_target_tokens)
    end = min(s.total_steps, cfg.schedule.max_steps or s.total_steps)
    return (f"world size {world_size}: global batch {s.global_batch} = batch_size {cfg.loader.batch_size} x "
            f"accum_iter {cfg.schedule.accum_iter} x {world_size}; budgets {data.max_input_tokens} + "
            f"{data.max_target_tokens} tokens per sample\nschedule: {s.describe()}, running to step {end}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, validate, train. Exit codes: 0 done or stopped cleanly, 1 non-finite steps, 2 bad config."""
    from egom2p.train.config import ConfigError, config_to_yaml, load_config
    from egom2p.train.faults import NonFiniteStepError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.world_size is not None and (not args.dry_run or args.world_size < 1):
        parser.error("--world-size takes a positive N and goes with --dry-run")
    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            print(config_to_yaml(cfg), end="")
            return 0
        if args.dry_run:
            print(_dry_run(cfg, args.world_size or int(os.environ.get("WORLD_SIZE", 1))))
            return 0
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
