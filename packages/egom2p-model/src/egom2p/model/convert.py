"""``egom2p-convert``: turn the released original ``.pth`` (or any checkpoint we read) into our safetensors + config.json directory.

``egom2p-convert config ORIGINAL.yaml --out DIR`` translates the original's training configs instead; that command
lives in egom2p-train (:mod:`egom2p.train.convert_config`), imported only when asked for, so this wheel does not
depend on the trainer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from egom2p.core.cli import CliParser, add_checkpoint_option, add_version_option, fail, run_cli
from egom2p.core.hub import is_hub_id, require_hub, upload_folder

from . import __version__
from .checkpoint import HUB_INSTALL_HINT, resolve_checkpoint
from .hub import COMMIT_MESSAGE, prepare_hub_folder
from .model import EgoM2P

PROG = "egom2p-convert"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``egom2p-convert``."""
    parser = CliParser(
        prog=PROG,
        description="Convert an original EgoM2P checkpoint (.pth with 'model' and 'args', read with\n"
        "torch.load(weights_only=True)) into model.safetensors + config.json + a README.md model card.\n"
        "Weights are checked (fixed buffers, tied copies) on the way. Also takes our directories,\n"
        "training runs (the newest checkpoints/step-N/) and Hugging Face Hub ids.",
        epilog="examples:\n  egom2p-convert --checkpoint checkpoint-main.pth --out egom2p-base/\n"
        "  egom2p-convert --checkpoint runs/demo/ --out demo-final/        # newest runs/demo/checkpoints/step-N/\n"
        "  egom2p-convert --checkpoint checkpoint-main.pth --out egom2p-base/ --push-to-hub my-org/egom2p-base\n"
        "then: EgoM2P.from_pretrained('egom2p-base/')\n\n"
        "The original's training configs (needs egom2p-train; see egom2p-convert config --help):\n"
        "  egom2p-convert config ORIGINAL.yaml --out DIR [--world-size N]",
    )
    add_version_option(parser, __version__)
    add_checkpoint_option(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    parser.add_argument("--push-to-hub", metavar="ORG/REPO",
                        help="also upload the converted checkpoint to this Hugging Face Hub repository "
                             "(created if needed; needs the [hub] extra and Hub credentials)")
    return parser


def _convert(opts: argparse.Namespace) -> int:
    if Path(opts.out).exists() and not Path(opts.out).is_dir():  # before the conversion, not after it
        raise ValueError(f"--out {opts.out}: is a file; give a folder (created if needed)")
    if opts.push_to_hub:  # fail before converting, not after
        if not is_hub_id(opts.push_to_hub):
            raise ValueError(f"--push-to-hub {opts.push_to_hub!r}: expected a Hub repository id org/repo")
        require_hub(HUB_INSTALL_HINT)
    source = resolve_checkpoint(opts.checkpoint)
    model = EgoM2P.from_pretrained(source)
    out = prepare_hub_folder(model, opts.out, opts.push_to_hub or Path(opts.out).resolve().name)
    params = sum(p.numel() for p in model.parameters())
    print(f"read {source}; wrote {out} ({params:,} parameters, modalities {model.modality_names})")
    if opts.push_to_hub:
        url = upload_folder(out, opts.push_to_hub, commit_message=COMMIT_MESSAGE, install_hint=HUB_INSTALL_HINT)
        print(f"uploaded {out} to {opts.push_to_hub}: {url}")
    return 0


CONFIG_COMMAND = "config"
CONFIG_INSTALL_HINT = f"`{PROG} {CONFIG_COMMAND}` needs the trainer: pip install egom2p-train"


def _config_command(argv: Sequence[str]) -> int:
    """``egom2p-convert config ...``: the trainer's config translator, imported here and only here."""
    try:
        from egom2p.train.convert_config import main as config_main
    except ModuleNotFoundError as err:
        if err.name is not None and (err.name == "egom2p.train" or err.name.startswith("egom2p.train.")):
            return fail(f"{PROG} {CONFIG_COMMAND}", CONFIG_INSTALL_HINT)
        raise
    return config_main(list(argv))


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``egom2p-convert --checkpoint SRC --out DIR`` (or ``egom2p-convert config ORIGINAL.yaml
    --out DIR``); a user mistake exits 2 with one line."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == CONFIG_COMMAND:
        return _config_command(argv[1:])
    opts = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _convert(opts))


if __name__ == "__main__":
    raise SystemExit(main())
