"""``egom2p-data``: write, inspect, validate and synthesize token shards.

Exit codes (the egom2p CLI style, :mod:`egom2p.core.cli`): 0 done; 1 nothing was inspected or validated,
or ``validate`` found problems; 2 a usage or input error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from egom2p.core.cli import (
    CliParser,
    add_data_options,
    add_seed_option,
    add_version_option,
    fail,
    positive_int,
    run_cli,
)
from egom2p.core.modalities import load_modality_specs
from egom2p.core.presets import preset_names
from egom2p.data import __version__

PROG = "egom2p-data"
DESCRIPTION = """Write, inspect, validate and synthesize EgoM2P token shards (local or s3://).

exit codes: 0 done; 1 nothing was inspected or validated, or validate found problems;
2 a usage or input error (one line on stderr)."""

EPILOG = """examples:
  # demo data for the shipped data config demo (two datasets, train and val splits): egom2p-train --config demo-cpu
  egom2p-data synth --out data/demo

  # shards from one token file per sample and modality: tokens/<folder>/<key>.npy|.npz
  egom2p-data write --from-dir tokens/ --out shards/ --dataset egogen --samples-per-shard 1000

  # shards from stacked arrays [N, ...] (one file per modality folder)
  egom2p-data write --stacked rgb=rgb.npy cam=cam.npy --out shards/ --dataset egogen

  # an existing dataset is never written over: replace it as a whole, or add shards after its last one
  egom2p-data write --from-dir tokens/ --out shards/ --dataset egogen --overwrite
  egom2p-data write --from-dir more_tokens/ --out shards/ --dataset egogen --append

  # what is in a set of shards (local or s3://), and will training read all of it?
  egom2p-data inspect --data 'shards/[rgb,cam]/egogen/shard-{000000..000003}.tar'
  egom2p-data validate --data 'shards/[rgb,cam]/egogen/shard-{000000..000003}.tar' --modalities egom2p
  egom2p-data validate --data shards/ --dataset egogen --modalities egom2p --expect-samples-per-shard 1000
"""


def _cmd_write(args: argparse.Namespace) -> int:
    from egom2p.data.shards import write_shards
    from egom2p.data.sources import read_from_dir, read_stacked

    if args.from_dir:
        keys, samples = read_from_dir(args.from_dir)
    else:
        keys, samples = None, read_stacked(args.stacked)
    mode = "overwrite" if args.overwrite else "append" if args.append else "new"
    pattern = write_shards(args.out, args.dataset, samples, keys=keys, samples_per_shard=args.samples_per_shard,
                           subdir=args.subdir, progress=True, mode=mode)
    print(pattern)
    return 0


def _pattern(args: argparse.Namespace, folders: list[str] | None) -> str:
    """``--data`` as a shard pattern: a pattern as given, or a root (local or ``s3://``) with ``--dataset``
    (:func:`egom2p.core.sources.is_shard_pattern` decides which)."""
    from egom2p.core.sources import is_shard_pattern
    from egom2p.data.shards import dataset_pattern

    data = args.data
    if is_shard_pattern(data):
        if args.dataset is not None:
            raise ValueError(f"--dataset applies to a root directory as --data, not to the shard pattern {args.data!r}")
        return data
    if args.dataset is not None:
        return dataset_pattern(data, args.dataset, folders)
    if data.startswith("s3://") or os.path.isdir(data):
        raise ValueError(f"--data {data} is a directory: also give --dataset NAME (or a shard pattern)")
    raise FileNotFoundError(f"--data {data}: not a shard pattern (.../shard-{{000000..000009}}.tar) and no such folder")


def _cmd_inspect(args: argparse.Namespace, validate: bool) -> int:
    from egom2p.data.checks import inspect_shards

    mods = load_modality_specs(args.modalities) if args.modalities else None
    folders = sorted({spec.folder for spec in mods.values()}) if mods else None
    expect = getattr(args, "expect_samples_per_shard", None)
    report = inspect_shards(_pattern(args, folders), mods, expect_samples_per_shard=expect, progress=True)
    print(report.format())
    if report.samples == 0:
        print(f"{PROG}: nothing to {'validate' if validate else 'inspect'}: no readable sample", file=sys.stderr)
        return 1
    if validate:
        if report.problems:
            print(f"INVALID: {len(report.problems)} problem(s)", file=sys.stderr)
            return 1
        print("OK")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from egom2p.data.synth import write_demo_dataset

    patterns = write_demo_dataset(args.out, train_samples=args.train_samples, val_samples=args.val_samples,
                                  samples_per_shard=args.samples_per_shard, seed=args.seed, overwrite=args.overwrite,
                                  hand=args.hand)
    for name, pattern in patterns.items():
        print(f"{name}: {pattern}")
    return 0


def build_parser() -> CliParser:
    """The argparse parser of ``egom2p-data`` (exposed for tests and docs)."""
    parser = CliParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    add_version_option(parser, __version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CliParser)

    w = sub.add_parser("write", help="write shards from numpy token files", description="Write token shards "
                       "OUT/<folder>/<dataset>[/<subdir>]/shard-NNNNNN.tar from numpy token files; prints their pattern. "
                       "A folder that already holds shards is refused unless --overwrite or --append. The shards are "
                       "written aside and moved in when all are complete: a failed or killed write leaves the dataset "
                       "as it was (the next write removes what it left, or finishes its moves, and says so).",
                       epilog=EPILOG)
    src = w.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-dir", metavar="DIR",
                     help="folder with DIR/<folder>/<key>.npy|.npz, one file per sample and modality folder; the key is "
                          "the file name without its final extension and may not contain a dot")
    src.add_argument("--stacked", nargs="+", metavar="FOLDER=FILE", help="stacked [N, ...] arrays, one file per modality folder")
    w.add_argument("--out", metavar="DIR", help="output root (a directory; required): shards go to DIR/<folder>/<dataset>/shard-*.tar")
    w.add_argument("--root", dest="out", help=argparse.SUPPRESS)  # the old name of --out
    w.add_argument("--dataset", required=True, metavar="NAME", help="dataset name (one folder name)")
    w.add_argument("--subdir", metavar="PATH", help="optional folder below the dataset (the original uses 'token')")
    w.add_argument("--samples-per-shard", type=positive_int, default=1000, metavar="N", help="samples per tar")
    existing = w.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true",
                          help="replace the shards of the written folders as a whole (swapped in when all are written)")
    existing.add_argument("--append", action="store_true",
                          help="add shards numbered after the last existing one; a sample key already there is refused")

    texts = {"inspect": ("summarize shards: samples per shard, shapes, dtypes, token ranges",
                         "Summarize token shards. Exit 1 when no sample could be read."),
             "validate": ("check shards as training reads them; exit 1 on any problem",
                          "Check that training reads every sample of the shards: readable and complete tars "
                          "(end-of-archive marker), keys equal across folders, no empty shard, consistent samples per "
                          "shard, and with --modalities the loader's own per-sample check (shape, integer dtype, "
                          "vocabulary). Exit 1 on any problem.")}
    for name, (short, description) in texts.items():
        p = sub.add_parser(name, help=short, description=description, epilog=EPILOG)
        add_data_options(p)
        p.add_argument("--modalities", metavar="FILE|NAME",
                       help="modality file, or the name of one egom2p-core ships ("
                            f"{', '.join(preset_names('modalities'))}): check shapes and vocabularies as training does")
        if name == "validate":
            p.add_argument("--expect-samples-per-shard", type=positive_int, metavar="N",
                           help="every shard holds N samples, the last 1 to N (default: the most common count)")

    s = sub.add_parser("synth", help="write the synthetic demo dataset", description="Write the synthetic demo "
                       "dataset (the modalities tiny) as OUT/{train,val}/<folder>/<dataset>/shard-*.tar.",
                       epilog=EPILOG)
    s.add_argument("--out", default="data/demo", metavar="DIR", help="output folder")
    s.add_argument("--train-samples", type=positive_int, default=2048, metavar="N", help="samples per dataset in the train split")
    s.add_argument("--val-samples", type=positive_int, default=128, metavar="N", help="samples per dataset in the val split")
    s.add_argument("--samples-per-shard", type=positive_int, default=256, metavar="N", help="samples per tar")
    s.add_argument("--overwrite", action="store_true", help="replace demo shards already in --out")
    s.add_argument("--hand", action="store_true", help="also write synth_full's raw 2-D hand tracks, a fifth signal for "
                   "the fine-tuning example (docs/new-modality.md): OUT/raw/<split>-hand.npy + .keys.txt")
    add_seed_option(s)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``egom2p-data`` console script: 0 ok, 1 nothing read or invalid shards, 2 a usage mistake."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "write" and args.out is None:
        parser.error("write: the following arguments are required: --out")

    def command() -> int:
        try:
            if args.command == "write":
                return _cmd_write(args)
            if args.command in ("inspect", "validate"):
                return _cmd_inspect(args, validate=args.command == "validate")
            return _cmd_synth(args)
        except OSError as exc:  # a full disk, an unreachable store: input/output errors are one line too
            return fail(PROG, exc)

    return run_cli(PROG, command)


if __name__ == "__main__":
    sys.exit(main())
