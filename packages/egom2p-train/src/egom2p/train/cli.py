"""``egom2p-train`` / ``python -m egom2p.train``: a config file plus dotted ``key=value`` overrides, and
``egom2p-train plot RUN_DIR`` (the curves of a run). The house CLI style is :mod:`egom2p.core.cli`."""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Sequence

from egom2p.core.cli import CliParser, add_version_option, fail, positive_int, run_cli
from egom2p.core.disk_space import out_of_space_reason
from egom2p.core.presets import preset_names
from egom2p.train import __version__

PROG = "egom2p-train"

EXAMPLES = """\
examples:
  # single process (CPU demo): a config egom2p-train ships, by name (after egom2p-data synth --out data/demo)
  egom2p-train --config demo-cpu output_dir=runs/demo
  # tiny model, 20 steps: any key of the tree, data keys included, as a dotted override
  egom2p-train --config demo-cpu model.dim=48 schedule.max_steps=20 \\
      data.train.num_input_tokens=32 output_dir=runs/t
  # the released recipe (a file in the repository's configs/, to copy and edit): the resolved tree, and the
  # schedule a 256-GPU job would run (one JSON line), without training
  egom2p-train --config configs/train/egom2p-b-released.yaml --print-config
  egom2p-train --config configs/train/egom2p-b-released.yaml --dry-run --world-size 256
  # one node, 8 GPUs
  torchrun --standalone --nproc_per_node=8 -m egom2p.train --config configs/train/egom2p-b-released.yaml
  # several nodes (run on each node; docs/cluster.md has the SLURM script)
  torchrun --nnodes=64 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=$HEAD:29500 \\
      --rdzv_id=$JOB_ID -m egom2p.train --config configs/train/egom2p-b-released.yaml
  # the camera tokenizer (recipe: tokenizer) on synthetic head motion, CPU; the released recipe on 4 GPUs
  egom2p-train --config cam-demo-cpu
  torchrun --standalone --nproc_per_node=4 -m egom2p.train --config configs/tokenizers/cam-released.yaml
  # the loss, per-modality loss, LR, tokens/s and MFU curves of a run (needs egom2p-train[viz])
  egom2p-train plot runs/demo --out runs/demo/curves.png

Re-running the same command resumes from the newest output_dir/checkpoints/step-N/
(checkpoint.auto_resume=true); every step directory opens with EgoM2P.from_pretrained
(VQVAE.from_pretrained for the tokenizer recipe).
Relative paths in a config file resolve against its project root, on the command line and in a shipped
config named on it against the working directory. --config, model.modalities, data and alphas_config take a
file or the name of a shipped config (an existing file wins). Keys are listed in packages/egom2p-train/README.md.
Exit codes: 0 done or stopped cleanly (SIGTERM: checkpoint written), 1 stopped after non-finite steps,
2 a config, input or usage error (one line naming the key, file or value), 130 interrupted.
"""

PLOT_EXAMPLES = """\
examples:
  egom2p-train plot runs/demo-cpu                 # writes runs/demo-cpu/metrics.png
  egom2p-train plot runs/demo-cpu --out loss.png
"""

# Storage failures that are the user's environment, not a bug (besides core's out-of-room ones): one line, exit 2.
_STORAGE_ERRNOS = {errno.EROFS, errno.EACCES}


def build_parser() -> CliParser:
    """The trainer's command-line interface (frozen by a test)."""
    parser = CliParser(prog=PROG, description="Train EgoM2P or its camera / gaze tokenizers (single process or "
                                              "under torchrun); 'egom2p-train plot RUN_DIR' draws a run's curves.",
                       epilog=EXAMPLES)
    parser.add_argument("--config", "-c", metavar="FILE|NAME",
                        help="training YAML, or the name of one egom2p-train ships ("
                             f"{', '.join(preset_names('train'))}); without it, the dataclass defaults")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config tree (YAML, loads back with --config) and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the schedule the run would use (global batch, micro batch, accum_iter, "
                             "peak lr, warmup and total steps) as one JSON line and exit, without launching")
    parser.add_argument("--world-size", type=positive_int, metavar="N", default=None,
                        help="with --dry-run: the number of ranks to plan for (default: $WORLD_SIZE, else 1)")
    add_version_option(parser, __version__)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides applied after the file, e.g. optim.blr=2e-4 model.dim=48 "
                             "schedule.max_steps=20 output_dir=runs/t")
    return parser


def build_plot_parser() -> CliParser:
    """``egom2p-train plot RUN_DIR [--out PNG]``."""
    parser = CliParser(prog=f"{PROG} plot", epilog=PLOT_EXAMPLES,
                       description="Draw the loss, per-modality loss, learning rate, tokens/s, MFU and gradient "
                                   "norm curves of RUN_DIR/metrics.jsonl into a PNG (needs egom2p-train[viz]).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run's output_dir (holds metrics.jsonl)")
    parser.add_argument("--out", metavar="PNG", help="the PNG file to write (default: RUN_DIR/metrics.png)")
    add_version_option(parser, __version__)
    return parser


def _plot(run_dir: str, out: str | None) -> int:
    from egom2p.train.plot import plot_run

    print(f"{PROG}: wrote {plot_run(run_dir, out)}")
    return 0


def _train(config: str | None, overrides: list[str], print_config: bool, dry_run: bool,
           world_size: int | None) -> int:
    from egom2p.data.loader import BadDataError
    from egom2p.train.config import ConfigError, config_to_yaml, load_config
    from egom2p.train.faults import NonFiniteStepError

    rank = int(os.environ.get("RANK", 0))
    try:
        cfg = load_config(config, overrides)
        if print_config:
            print(config_to_yaml(cfg), end="")
            return 0
        if dry_run:
            from egom2p.train.schedule import dry_run_report

            print(json.dumps(dry_run_report(cfg, world_size or int(os.environ.get("WORLD_SIZE", 1)))))
            return 0
        from egom2p.train.trainer import run_training

        if rank == 0:
            print(f"{PROG}: config {config or '(defaults)'} overrides {overrides or 'none'}", flush=True)
        run_training(cfg, log=lambda msg: print(msg, flush=True))
    except ConfigError as err:
        # Every rank reads the same config and finds the same error: rank 0 says it once.
        return fail(PROG, err) if rank == 0 else 2
    except (NonFiniteStepError, BadDataError) as err:  # the run, or its data, not the config: exit 1, one line
        print(f"{PROG}: stopped: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno in _STORAGE_ERRNOS or out_of_space_reason(err):  # read-only, forbidden, full, over a quota
            return fail(PROG, err)
        raise
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, validate, train (or plot). Exit codes: 0 done or stopped cleanly, 1 non-finite steps, 2 bad
    config, input or usage, 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plot"]:
        plot_args = build_plot_parser().parse_args(argv[1:])
        return run_cli(PROG, lambda: _plot(plot_args.run_dir, plot_args.out))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.world_size is not None and not args.dry_run:
        parser.error("--world-size goes with --dry-run (torchrun sets the world size of a real run)")
    return run_cli(PROG, lambda: _train(args.config, list(args.overrides), args.print_config, args.dry_run,
                                        args.world_size))


if __name__ == "__main__":
    sys.exit(main())
