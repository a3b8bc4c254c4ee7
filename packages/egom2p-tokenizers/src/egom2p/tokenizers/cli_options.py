"""Command-line options for the tokenizers' conventions, shared by every command that takes them.

``--tokenizer SOURCE`` (anything ``VQVAE.from_pretrained`` opens), ``--basis NAME`` (a camera basis of
:data:`egom2p.tokenizers.camera.BASES`) and the gaze frame: ``--gaze-frame NAME`` (a preset of
:data:`egom2p.tokenizers.gaze.GAZE_FRAMES`) or ``--orig-res W H --resize-res W H [--crop W H]``.
"""

from __future__ import annotations

import argparse

from egom2p.core.cli import positive_int
from egom2p.tokenizers.camera import BASES
from egom2p.tokenizers.gaze import GAZE_FRAMES, GazeFrame, gaze_frame

__all__ = ["add_basis_option", "add_compute_dtype_option", "add_gaze_frame_options", "add_tokenizer_option",
           "gaze_frame_from_args"]

_SIZES = (("--orig-res", "orig_res", "the size of the images the gaze pixels refer to"),
          ("--resize-res", "resize_res", "the size the images are resized to"),
          ("--crop", "crop", "the size of the centre crop of the resized image (default: no crop)"))


def add_tokenizer_option(parser: argparse.ArgumentParser) -> None:
    """``--tokenizer SOURCE`` (required)."""
    parser.add_argument("--tokenizer", required=True, metavar="SOURCE",
                        help="the camera or gaze VQ-VAE: a directory from save_pretrained (model.safetensors + "
                             "config.json), a training run or step directory, the original .pth, or a Hugging Face "
                             "Hub id org/repo (needs the [hub] extra)")


def add_compute_dtype_option(parser: argparse.ArgumentParser) -> None:
    """``--dtype``: the tokenizer's compute dtype (``VQVAE.set_compute_dtype``), float32 (exact) or bfloat16."""
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="compute dtype of the encoder and decoder: float32 (default, exact) or bfloat16 (about "
                             "2.5x faster on CPUs with AVX512-BF16 and on GPUs; a few tokens at near-ties differ)")


def add_basis_option(parser: argparse.ArgumentParser) -> None:
    """``--basis NAME``: the dataset's camera basis."""
    parser.add_argument("--basis", choices=sorted(BASES), metavar="NAME",
                        help=f"camera only: the dataset's axes, right-multiplied onto every pose before tokenizing "
                             f"({', '.join(sorted(BASES))}; default: none, poses already OpenCV camera-to-world)")


def add_gaze_frame_options(parser: argparse.ArgumentParser) -> None:
    """``--gaze-frame NAME`` or ``--orig-res W H --resize-res W H [--crop W H]``."""
    group = parser.add_argument_group("gaze frame (gaze only: how the gaze pixels map onto the tokenizer's crop)")
    group.add_argument("--gaze-frame", choices=sorted(GAZE_FRAMES), metavar="NAME",
                       help=f"a dataset's frame: {', '.join(sorted(GAZE_FRAMES))} (holoassist: 896x504 with a "
                            "480x480 centre crop; the others 1408x1408 without a crop); or give the sizes below")
    for flag, _, what in _SIZES:
        group.add_argument(flag, type=positive_int, nargs=2, metavar=("W", "H"), help=f"instead of --gaze-frame: {what}")


def gaze_frame_from_args(args: argparse.Namespace) -> GazeFrame | None:
    """The :class:`GazeFrame` the options give, or None when none is given (the one parser of these options:
    egom2p-generate and egom2p-eval use it too).

    Raises ``ValueError`` for both forms at once, for sizes without both ``--orig-res`` and ``--resize-res``, and for
    sizes that do not fit together.
    """
    given = [flag for flag, name, _ in _SIZES if getattr(args, name) is not None]
    if args.gaze_frame is not None:
        if given:
            raise ValueError(f"give --gaze-frame or --orig-res/--resize-res/--crop, not both (got --gaze-frame and "
                             f"{given[0]})")
        try:
            return gaze_frame(args.gaze_frame)
        except ValueError as err:
            raise ValueError(f"--gaze-frame: {err}") from None
    if not given:
        return None
    missing = [flag for flag in ("--orig-res", "--resize-res") if flag not in given]
    if missing:
        raise ValueError(f"{given[0]}: the gaze frame also needs {' and '.join(missing)} (or use --gaze-frame NAME)")
    try:
        return GazeFrame(tuple(args.orig_res), tuple(args.resize_res), None if args.crop is None else tuple(args.crop))
    except ValueError as err:
        raise ValueError(f"--orig-res/--resize-res/--crop: {err}") from None
