"""``egom2p-convert``: turn the released original ``.pth`` into our safetensors + config.json directory."""

from __future__ import annotations

import argparse
import sys

from .model import EgoM2P


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``egom2p-convert``."""
    return argparse.ArgumentParser(
        prog="egom2p-convert",
        description="Convert an original EgoM2P checkpoint (.pth with 'model' and 'args') into "
        "model.safetensors + config.json. Weights are checked (fixed buffers, tied copies) on the way.",
        epilog="example:\n  egom2p-convert checkpoint-main.pth egom2p-base/\n"
        "then: EgoM2P.from_pretrained('egom2p-base/')",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``egom2p-convert ORIGINAL.pth OUT_DIR``."""
    parser = build_parser()
    parser.add_argument("checkpoint", help="original .pth file (or one of our directories)")
    parser.add_argument("out_dir", help="output directory (created if needed)")
    opts = parser.parse_args(argv)
    try:
        model = EgoM2P.from_pretrained(opts.checkpoint)
    except (ValueError, FileNotFoundError) as err:
        print(f"egom2p-convert: {err}", file=sys.stderr)
        return 1
    model.save_pretrained(opts.out_dir)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {opts.out_dir} ({params:,} parameters, modalities {model.modality_names})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
