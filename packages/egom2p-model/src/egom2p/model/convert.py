"""``egom2p-convert``: turn the released original ``.pth`` (or any checkpoint we read) into our safetensors + config.json directory."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .checkpoint import resolve_checkpoint
from .model import EgoM2P


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``egom2p-convert``."""
    parser = argparse.ArgumentParser(
        prog="egom2p-convert",
        description="Convert an original EgoM2P checkpoint (.pth with 'model' and 'args') into "
        "model.safetensors + config.json. Weights are checked (fixed buffers, tied copies) on the way. "
        "Also takes our directories and training runs (the newest checkpoints/step-N/).",
        epilog="examples:\n  egom2p-convert checkpoint-main.pth egom2p-base/\n"
        "  egom2p-convert runs/demo/ demo-final/        # newest runs/demo/checkpoints/step-N/\n"
        "then: EgoM2P.from_pretrained('egom2p-base/')",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="original .pth/.pt file, one of our directories, or a run directory")
    parser.add_argument("out_dir", help="output directory (created if needed)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``egom2p-convert CHECKPOINT OUT_DIR``; a user mistake exits 2 with one line."""
    opts = build_parser().parse_args(argv)
    try:
        source = resolve_checkpoint(opts.checkpoint)
        model = EgoM2P.from_pretrained(source)
    except (ValueError, FileNotFoundError) as err:
        print(f"egom2p-convert: {err}", file=sys.stderr)
        return 2
    model.save_pretrained(opts.out_dir)
    params = sum(p.numel() for p in model.parameters())
    print(f"read {source}; wrote {opts.out_dir} ({params:,} parameters, modalities {model.modality_names})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
