"""The options egom2p-generate and egom2p-eval share: one definition, one help text, one default.

Each command builds its parser with :func:`generation_parser` (the head), adds its own options, then
:func:`add_decoding_options` (the tail); the few differences between the two are arguments.
Defaults are the released eval scripts' (``egom2p.generate.tasks.DEFAULTS``).
"""

from __future__ import annotations

import argparse

from egom2p.core.cli import (
    CliParser,
    add_checkpoint_option,
    add_device_option,
    add_seed_option,
    add_version_option,
    finite_float,
    non_negative_float,
    positive_int,
)

from . import __version__
from .precision import TF32_HELP
from .schedule import SCHEMES
from .tasks import DEFAULTS, TASKS, task_spec
from .video import add_video_options

# The released eval scripts' decoding steps per task, for --steps help texts.
_TASK_STEPS = ", ".join(f"{name} {task.steps}" for name, task in TASKS.items())


def generation_parser(prog: str, description: str, examples: str) -> CliParser:
    """A parser with ``--version`` (this package's) and ``--checkpoint``; its epilog is ``examples`` followed by
    the TF32 note of ``--no-tf32``."""
    parser = CliParser(prog=prog, description=description, epilog=f"{examples}\n{TF32_HELP}\n")
    add_version_option(parser, __version__)
    add_checkpoint_option(parser)
    return parser


def add_decoding_options(parser: argparse.ArgumentParser, *, steps_for: str, decode_video: bool,
                         default_steps: int | None = None) -> None:
    """The decoded-signal, video and sampling options, and ``--steps`` with one value per ``steps_for``
    (``--target`` or ``--task``); ``default_steps``: the steps where no task sets them (``None``: a task always
    does); ``decode_video``: whether ``--decode`` writes videos (:func:`egom2p.generate.video.add_video_options`)."""
    _add_signal_options(parser)
    add_video_options(parser, decode=decode_video)
    sampling = _add_sampling_options(parser)
    default = "" if default_steps is None else f"{default_steps}; with --task, "
    sampling.add_argument("--steps", type=positive_int, nargs="+", metavar="N",
                          help=f"decoding steps: one value for every {steps_for} or one per {steps_for}, in order "
                               f"(default: {default}the task's: {_TASK_STEPS})")


def task_name(text: str) -> str:
    """``--task``: a released task name or ``<cond>2<target>`` (:func:`egom2p.generate.tasks.task_spec`)."""
    try:
        task_spec(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def parse_top_k(text: str) -> float | int:
    """``--top-k``: an integer >= 1 keeps that many tokens, a number in (0, 1] that fraction of the vocabulary, 0 is off."""
    value = non_negative_float(text)
    if value >= 1 and not value.is_integer():
        raise argparse.ArgumentTypeError(f"top-k must be an integer >= 1 or a fraction in (0, 1], got {text!r}")
    return int(value) if value >= 1 else value


def _add_sampling_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--scheme --temp --top-k --top-p --cfg --seed --device --no-tf32`` (``--steps``: :func:`add_decoding_options`)."""
    group = parser.add_argument_group("sampling (defaults: the released eval scripts')")
    group.add_argument("--scheme", choices=list(SCHEMES), default=DEFAULTS["scheme"],
                       help="decoding scheme: roar (random order) or maskgit (most confident first)")
    group.add_argument("--temp", type=non_negative_float, metavar="T", default=DEFAULTS["temperature"],
                       help="sampling temperature (0 = argmax)")
    group.add_argument("--top-k", type=parse_top_k, metavar="K", default=DEFAULTS["top_k"],
                       help="keep the k most likely tokens (integer) or that fraction of the vocabulary (0-1); 0 = off")
    group.add_argument("--top-p", type=non_negative_float, metavar="P", default=DEFAULTS["top_p"],
                       help="nucleus sampling: keep the most likely tokens up to this probability mass; 0 = off")
    group.add_argument("--cfg", type=finite_float, default=None, metavar="SCALE",
                       help=f"classifier-free guidance scale of the conditioning (default: {DEFAULTS['cfg_scale']}; "
                            "1 = unguided; a target nothing conditions runs unguided)")
    add_seed_option(group, DEFAULTS["seed"], help="base seed: decoding step s of every batch uses seed + s")
    add_device_option(group)
    group.add_argument("--no-tf32", action="store_true", help="keep full fp32 matmuls on CUDA (see TF32 below)")
    return group


def steps_per(steps: list[int] | None, names: list[str], what: str) -> list[int | None]:
    """The ``--steps`` value of each of ``names`` (None where not given): one value serves all, or one per name;
    any other count is a ValueError naming the option."""
    if steps is None:
        return [None] * len(names)
    if len(steps) not in (1, len(names)):
        raise ValueError(f"--steps: give one value or one per {what} ({len(names)}), got {' '.join(map(str, steps))}")
    return list(steps) * len(names) if len(steps) == 1 else list(steps)


def add_batch_size_option(group: argparse._ArgumentGroup, default: int) -> None:
    """``--batch-size N``: samples per forward pass."""
    group.add_argument("--batch-size", type=positive_int, default=default, metavar="N",
                       help=f"samples per forward pass (default: {default})")


def _add_signal_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--tokenizer --gaze-frame --orig-res --resize-res --crop``: decode camera / gaze tokens to signals."""
    group = parser.add_argument_group("decoded signals (the [tokenizers] extra: pip install 'egom2p-generate[tokenizers]')")
    group.add_argument("--tokenizer", action="append", default=[], metavar="MODALITY=SOURCE",
                       help="decode tok_cam / tok_gaze with this VQ-VAE tokenizer (a directory from save_pretrained, "
                            "a run or step directory, the original .pth, or org/repo); repeat for both")
    group.add_argument("--gaze-frame", metavar="NAME",
                       help="the image frame of the gaze tokens (a preset of egom2p.tokenizers.gaze.GAZE_FRAMES, "
                            "e.g. holoassist or egoexo); needed with --tokenizer tok_gaze, or give the sizes below")
    for flag, what in (("--orig-res", "the original image size"), ("--resize-res", "the size after resizing"),
                       ("--crop", "the centre crop's size (default: no crop, the whole resized frame)")):
        group.add_argument(flag, type=positive_int, nargs=2, metavar=("W", "H"),
                           help=f"gaze image frame instead of --gaze-frame: {what} in pixels")
    return group
