"""`egom2p-eval`: token accuracy of an EgoM2P checkpoint on rgb2cam / rgb2depth / rgb2gaze / depth2rgb."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from egom2p.core.cli import (
    CliParser,
    add_checkpoint_option,
    add_data_options,
    add_version_option,
    fail,
    positive_int,
    run_cli,
)
from egom2p.model import EgoM2P

from . import __version__
from .cli_options import TASK_STEPS, add_sampling_options
from .precision import TF32_HELP, tf32_on_cuda
from .tasks import TASKS, BatchCallback, run_eval_task

PROG = "egom2p-eval"

EXAMPLES = f"""examples:
  {PROG} --checkpoint runs/demo-cpu --task rgb2cam \\
      --data 'data/demo/val/[cam,depth,gaze,rgb]/synth_full/shard-000000.tar' --max-samples 64
  {PROG} --checkpoint ckpt/checkpoint-main.pth --task rgb2depth --data val_root --dataset holoassist --out out.json
  {PROG} --checkpoint org/egom2p-base --task rgb2cam --data 's3://bucket/[rgb,cam]/val/shard-{{000000..000009}}.tar' \\
      --save-figures figs/          # figs/rgb2cam/<sample key>.png: true vs generated tokens
defaults are the released eval scripts': ROAR, steps rgb2depth 3 / rgb2cam 3 / rgb2gaze 5 / depth2rgb 6,
temperature 0.01, top-p 0.8, CFG 2.0 with growing conditioning, seed 0. Metrics are token-level.
Exit status 1 when a task evaluated no sample (the data lacks its modalities).

{TF32_HELP}
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `egom2p-eval`."""
    parser = CliParser(prog=PROG, description="Token-level evaluation of an EgoM2P checkpoint: each task generates "
                       "its target\nfrom the conditioning of every sample and counts the tokens that match.",
                       epilog=EXAMPLES)
    add_version_option(parser, __version__)
    add_checkpoint_option(parser)
    add_data_options(parser)
    parser.add_argument("--task", required=True, choices=sorted(TASKS), action="append",
                        help="task to run (repeat for several)")
    parser.add_argument("--max-samples", type=positive_int, metavar="N", help="evaluate at most this many samples per task "
                        "(default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="samples per forward pass")
    parser.add_argument("--out", "--json", type=Path, metavar="FILE", help="also write the results as JSON here")
    parser.add_argument("--save-figures", type=Path, metavar="DIR",
                        help="draw true vs generated tokens of the first --max-figures samples of each task into "
                             "DIR/<task>/<key>.png (needs the [viz] extra: matplotlib)")
    parser.add_argument("--max-figures", type=positive_int, default=8, metavar="N", help="figures per task with --save-figures")
    sampling = add_sampling_options(parser)
    sampling.add_argument("--steps", type=positive_int, metavar="N", help=f"decoding steps (default: the task's: {TASK_STEPS})")
    return parser


def format_table(results: list[dict[str, Any]]) -> str:
    """A small fixed-width table of eval results (accuracy ``-`` where nothing was evaluated)."""
    header = f"{'task':<10} {'accuracy':>9} {'tokens':>9} {'samples':>8} {'skipped':>8} {'seconds':>8}"
    rows = [
        f"{r['task']:<10} {'-' if r['accuracy'] is None else format(r['accuracy'], '.4f'):>9} {r['n_tokens']:>9} "
        f"{r['n_samples']:>8} {r['n_skipped']:>8} {r['seconds']:>8.1f}"
        for r in results
    ]
    return "\n".join([header, *rows])


def figure_writer(directory: Path, task: str, model: EgoM2P, limit: int) -> BatchCallback:
    """An ``on_batch`` callback drawing the first ``limit`` samples of ``task`` into ``directory/task/``."""
    from .figures import save_token_figure

    spec = model.modalities[TASKS[task].target]
    drawn: list[Path] = []

    def draw(keys: list[str], truth: Any, generated: Any) -> None:
        for key, true_tokens, tokens in zip(keys, truth, generated):
            if len(drawn) < limit:
                drawn.append(save_token_figure(directory / task / f"{key}.png", spec, true_tokens, tokens, title=task))

    return draw


def _evaluate(args: argparse.Namespace) -> int:
    if args.save_figures is not None:
        from .figures import require_matplotlib  # the [viz] extra: fail before the run, not after

        require_matplotlib()
    model = EgoM2P.from_pretrained(args.checkpoint, device=args.device)
    results = []
    with tf32_on_cuda(args.device, enabled=not args.no_tf32):
        for task in args.task:
            draw = figure_writer(args.save_figures, task, model, args.max_figures) if args.save_figures else None
            results.append(run_eval_task(
                model, args.data, task, max_samples=args.max_samples, dataset=args.dataset,
                batch_size=args.batch_size, steps=args.steps, on_batch=draw, scheme=args.scheme,
                temperature=args.temp, top_k=args.top_k, top_p=args.top_p, cfg_scale=args.cfg, seed=args.seed,
            ))  # fmt: skip
    print(format_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    if args.save_figures:
        print(f"figures: {args.save_figures}/<task>/<sample key>.png")
    empty = [r for r in results if not r["n_samples"]]
    if empty:
        names = ", ".join(f"{r['task']} ({r['n_skipped']} samples lack {TASKS[r['task']].cond} or "
                          f"{TASKS[r['task']].target})" for r in empty)
        return fail(PROG, f"nothing evaluated for {names} in {args.data}", 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `egom2p-eval`."""
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _evaluate(args))


if __name__ == "__main__":
    raise SystemExit(main())
