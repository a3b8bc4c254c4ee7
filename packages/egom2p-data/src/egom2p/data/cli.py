"""``egom2p-data``: write, inspect, validate and synthesize token shards."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
from egom2p.core.modalities import load_modality_specs
from egom2p.core.shards import TOKEN_SUFFIXES, load_token_array, sample_key
from egom2p.data import __version__
from egom2p.data.checks import inspect_shards
from egom2p.data.shards import write_shards
from egom2p.data.synth import write_demo_dataset

EPILOG = """examples:
  # demo data for configs/data/demo.yaml (two datasets, train and val splits)
  egom2p-data synth --out data/demo

  # shards from one token file per sample and modality: tokens/<folder>/<key>.npy|.npz
  egom2p-data write --from-dir tokens/ --root shards/ --dataset egogen --samples-per-shard 1000

  # shards from stacked arrays [N, ...] (one file per modality folder)
  egom2p-data write --stacked rgb=rgb.npy cam=cam.npy --root shards/ --dataset egogen

  # what is in a set of shards, and are they usable with a modality file?
  egom2p-data inspect 'shards/[rgb,cam]/egogen/shard-{000000..000003}.tar'
  egom2p-data validate 'shards/[rgb,cam]/egogen/shard-{000000..000003}.tar' --modalities configs/modalities/egom2p.yaml
"""


def _load_array(path: str) -> np.ndarray:
    """A token file (``.npy`` or ``.npz`` ``arr_0``) in its stored dtype; never unpickles."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_token_array(path, data)


def _cmd_write(args: argparse.Namespace) -> int:
    keys: list[str] | None = None
    if args.from_dir:
        if not os.path.isdir(args.from_dir):
            raise FileNotFoundError(f"--from-dir {args.from_dir} is not a folder")
        folders = sorted(d for d in os.listdir(args.from_dir) if os.path.isdir(os.path.join(args.from_dir, d)))
        if not folders:
            raise ValueError(f"{args.from_dir} has no modality folders (expected <dir>/<folder>/<key>.npy)")
        files = {f: {sample_key(n)[0]: os.path.join(args.from_dir, f, n) for n in sorted(os.listdir(os.path.join(args.from_dir, f)))
                     if n.endswith(TOKEN_SUFFIXES)} for f in folders}
        keys = sorted(files[folders[0]])
        for f in folders:
            if sorted(files[f]) != keys:
                diff = sorted(set(files[f]) ^ set(keys))[:5]
                raise ValueError(f"folder '{f}' and '{folders[0]}' hold different sample keys, e.g. {diff}")
        samples = {f: [_load_array(files[f][k]) for k in keys] for f in folders}
    else:
        samples = {}
        for item in args.stacked:
            folder, sep, path = item.partition("=")
            if not sep or not folder or not path:
                raise ValueError(f"--stacked takes FOLDER=FILE, got {item!r}")
            samples[folder] = _load_array(path)
    pattern = write_shards(args.root, args.dataset, samples, keys=keys, samples_per_shard=args.samples_per_shard, subdir=args.subdir)
    print(pattern)
    return 0


def _cmd_inspect(args: argparse.Namespace, validate: bool) -> int:
    mods = load_modality_specs(args.modalities) if args.modalities else None
    report = inspect_shards(args.pattern, mods)
    print(report.format())
    if validate and report.problems:
        print(f"INVALID: {len(report.problems)} problem(s)", file=sys.stderr)
        return 1
    if validate:
        print("OK")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    patterns = write_demo_dataset(args.out, train_samples=args.train_samples, val_samples=args.val_samples,
                                  samples_per_shard=args.samples_per_shard, seed=args.seed)
    for name, pattern in patterns.items():
        print(f"{name}: {pattern}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``egom2p-data`` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="egom2p-data", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("write", help="write shards from numpy token files", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = w.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-dir", help="folder with <folder>/<key>.npy|.npz, one file per sample and modality")
    src.add_argument("--stacked", nargs="+", metavar="FOLDER=FILE", help="stacked [N, ...] arrays, one per modality folder")
    w.add_argument("--root", required=True, help="output root: shards go to ROOT/<folder>/<dataset>/shard-*.tar")
    w.add_argument("--dataset", required=True, help="dataset name (a path component)")
    w.add_argument("--subdir", default=None, help="optional folder below the dataset (the original uses 'token')")
    w.add_argument("--samples-per-shard", type=int, default=1000)

    for name, text in (("inspect", "summarize shards"), ("validate", "check shards; exit 1 on any problem")):
        p = sub.add_parser(name, help=text, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("pattern", help="shard pattern, e.g. 'root/[rgb,cam]/ds/shard-{000000..000009}.tar' (or s3://...)")
        p.add_argument("--modalities", help="modality file (configs/modalities/*.yaml) to check shapes and vocabularies")

    s = sub.add_parser("synth", help="write the synthetic demo dataset", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    s.add_argument("--train-samples", type=int, default=2048, help="samples per dataset in the train split")
    s.add_argument("--val-samples", type=int, default=128, help="samples per dataset in the val split")
    s.add_argument("--samples-per-shard", type=int, default=256)
    s.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``egom2p-data`` console script: 0 ok, 1 invalid shards, 2 a usage mistake."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "write":
            return _cmd_write(args)
        if args.command in ("inspect", "validate"):
            return _cmd_inspect(args, validate=args.command == "validate")
        return _cmd_synth(args)
    except (ValueError, FileNotFoundError) as exc:  # user mistakes: one line, exit 2 (as argparse does)
        print(f"egom2p-data: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
