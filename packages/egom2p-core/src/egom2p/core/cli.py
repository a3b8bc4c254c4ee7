"""One command-line style for every egom2p console script, and the helpers that apply it.

The style (every egom2p console script follows it):

1. Options are long and kebab-case; the shared ones mean one thing everywhere:
   ``--checkpoint`` what ``EgoM2P.from_pretrained`` opens (our directory, a step or run directory, the
   original ``.pth``, a Hugging Face Hub id ``org/repo``); ``--data`` a shard pattern (brace ranges and one
   ``[folder,...]`` list, local or ``s3://``) or a root directory with ``--dataset``; ``--device``
   (``auto`` = cuda when available, else cpu); ``--seed`` (default 0); ``--out`` the command's main output
   (its help says whether a file or a directory). Inputs are options, not positionals; the exceptions
   are a subcommand name, the trainer's dotted ``key=value`` overrides and ``egom2p-train plot RUN_DIR``.
   Counts are validated as positive integers by the parser (:func:`positive_int`).
2. ``--help`` shows a description, every option with a help text and its default, and examples;
   ``--version`` prints ``PROG VERSION``.
3. Exit codes: 0 done; 1 the command ran but produced nothing (nothing evaluated, inspected or
   written) or found problems (a validation); 2 a usage or input error (bad option, missing or
   unreadable file, not a checkpoint, bad data, missing optional extra), reported as ONE line
   ``PROG: error: MESSAGE`` on stderr, never a traceback; 130 interrupted.
4. A requested setting that is clamped or ignored prints one line ``PROG: warning: MESSAGE`` on stderr
   (a ``UserWarning`` raised by library code is shown the same way).
5. Every loop over shards, samples or decoding steps shows a tqdm progress bar on stderr (off when
   stderr is not a terminal).

This module needs only the standard library (torch is imported only to parse ``--device``), so every
package can use it. Build the parser with
:class:`CliParser` and the ``add_*_option`` helpers, and run the command as
``return run_cli(PROG, lambda: command(args))``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any, NoReturn

from egom2p.core.errors import DiskFullError, MissingExtraError, ShardError

__all__ = [
    "CliParser",
    "HelpFormatter",
    "USER_ERRORS",
    "add_checkpoint_option",
    "add_data_options",
    "add_device_option",
    "add_seed_option",
    "finite_float",
    "add_version_option",
    "fail",
    "non_negative_float",
    "one_line",
    "parse_device",
    "positive_int",
    "run_cli",
    "warn",
]


# The exceptions that mean "the user gave something wrong": one line and exit 2, never a traceback.
# DiskFullError: the message says "disk full" and names the path (egom2p.core.errors).
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
               ShardError, MissingExtraError, DiskFullError)


def one_line(message: object) -> str:
    """``message`` as one line: line breaks (and the spaces around them) become single spaces."""
    return re.sub(r"\s*\n\s*", " ", str(message)).strip()


def fail(prog: str, message: object, code: int = 2) -> int:
    """Print ``PROG: error: MESSAGE`` as one line on stderr and return ``code`` (for ``return fail(...)``)."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return code


def warn(prog: str, message: object) -> None:
    """Print ``PROG: warning: MESSAGE`` as one line on stderr."""
    print(f"{prog}: warning: {one_line(message)}", file=sys.stderr)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks and appends ``(default: X)`` to every option
    whose default says something (not None, False or an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is None or default is False or default is argparse.SUPPRESS or default == []:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
            return f"{text} (default: {shown})"
        return text


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` in the house style: :class:`HelpFormatter`, and usage errors as one line, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """One line ``PROG: error: MESSAGE (see PROG --help)`` on stderr, exit 2 (argparse prints the usage too)."""
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _number(text: str, convert: Callable[[str], Any], ok: Callable[[Any], bool], unparsed: str, refused: str) -> Any:
    """``convert(text)`` when ``ok`` holds; else the argparse error ``expected <unparsed|refused>, got 'text'``."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {unparsed}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {refused}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, lambda v: v >= 1, "a positive integer", "a positive integer")


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` are refused: they would poison every probability)."""
    return _number(text, float, math.isfinite, "a number", "a finite number")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0", "a finite number >= 0")


def parse_device(text: str) -> Any:
    """argparse type for ``--device``: ``auto`` (cuda when available, else cpu) or a torch device name."""
    import torch  # only here: the rest of the module does not need torch

    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (e.g. auto, cpu, cuda, cuda:1)") from None
    # Refused here, in one line, rather than as a traceback from the first tensor moved there.
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"device {text!r}: CUDA is not available on this machine (use cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return device


def add_checkpoint_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--checkpoint``: anything ``EgoM2P.from_pretrained`` opens."""
    parser.add_argument("--checkpoint", required=required, metavar="PATH|ORG/REPO",
                        help="our checkpoint directory (model.safetensors + config.json), a trainer's step "
                             "directory or run directory (its newest step), the original .pth, or a Hugging Face "
                             "Hub id org/repo (from the local cache with HF_HUB_OFFLINE=1; needs the [hub] extra)")


def add_data_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--data`` (a shard pattern, local or s3://, or a root directory) and ``--dataset``."""
    parser.add_argument("--data", required=required, metavar="PATTERN|ROOT",
                        help="shard pattern with brace ranges and one [folder,...] list, e.g. "
                             "'root/[rgb,cam]/val/shard-{000000..000003}.tar', local or s3://bucket/...; "
                             "or a local root directory with --dataset")
    parser.add_argument("--dataset", metavar="NAME",
                        help="with a root directory as --data: the dataset folder under each modality folder")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``: ``auto`` (the default) or a torch device name."""
    parser.add_argument("--device", type=parse_device, default="auto", metavar="DEVICE",
                        help="torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...")


def add_seed_option(parser: argparse.ArgumentParser, default: int = 0, help: str = "random seed") -> None:
    """``--seed``: an integer, default 0."""
    parser.add_argument("--seed", type=int, default=default, metavar="N", help=help)


def run_cli(prog: str, main: Callable[[], int]) -> int:
    """Run ``main()`` under the house rules: user errors are one line and exit 2, Ctrl-C exits 130,
    ``UserWarning``s print as ``PROG: warning: ...``. Returns the exit code."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        warn(prog, message)

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = show
        try:
            return main()
        except USER_ERRORS as err:
            return fail(prog, err)
        except KeyboardInterrupt:
            return fail(prog, "interrupted", 130)


def add_version_option(parser: argparse.ArgumentParser, version: str) -> None:
    """``--version``: prints ``PROG VERSION`` and exits 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}", help="print the version and exit")
