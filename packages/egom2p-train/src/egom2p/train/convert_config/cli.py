"""The command line of ``egom2p-convert config``: translate, check, write, then print what was not carried."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from egom2p.core.cli import CliParser, positive_int, run_cli
from egom2p.train.convert_config.output import PROG, check, report_lines, summary, write_translation
from egom2p.train.convert_config.translate import translate


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``egom2p-convert config``."""
    parser = CliParser(
        prog=PROG,
        description="Translate the original EgoM2P's training config (the flat argparse YAML, its data_config and\n"
        "alphas configs) into our train.yaml + data.yaml (+ copies of the alphas files) in --out. Every original\n"
        "key is carried or listed as not carried with the reason; the result is loaded with our config loader\n"
        "before it is written.",
        epilog="examples:\n  egom2p-convert config cfgs/default/egom2p/models/main/ego-b_mod4_500b_clariden_2048_camcv_"
        "depthdenoise.yaml \\\n      --out configs/ego-b --world-size 256\n"
        "  egom2p-convert config my-run.yaml --out converted/ --data-config my-data.yaml --alphas-dir my-alphas/\n"
        "then: egom2p-train --config configs/ego-b/train.yaml --dry-run --world-size 256",
    )
    parser.add_argument("original", metavar="ORIGINAL.yaml", help="the original trainer's main config (its -c file)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder for train.yaml, data.yaml and alphas/ (created if needed)")
    parser.add_argument("--world-size", type=positive_int, metavar="N",
                        help="the original run's GPU count: fixes schedule.global_batch_size = batch_size x "
                             "accum_iter x N (without it the global batch grows with the GPU count, as in the original)")
    parser.add_argument("--data-config", metavar="PATH",
                        help="the original data config, instead of the file the main config's data_config names")
    parser.add_argument("--alphas-dir", metavar="DIR",
                        help="folder holding the alphas configs the data config names (looked up by file name)")
    parser.add_argument("--model-preset", metavar="NAME",
                        help="our model preset instead of the original's model name (e.g. egom2p-base)")
    return parser


def _run(opts: argparse.Namespace) -> int:
    t = translate(opts.original, opts.world_size, opts.data_config, opts.alphas_dir, opts.model_preset)
    report = check(t, opts.world_size)
    written = write_translation(t, opts.out)
    for line in report_lines(t):
        print(line)
    print(summary(t, written, report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``egom2p-convert config ORIGINAL.yaml --out DIR``; a user mistake exits 2 with one line."""
    opts = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(opts))
