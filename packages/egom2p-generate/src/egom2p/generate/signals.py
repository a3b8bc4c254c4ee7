"""Camera and gaze tokens back to signals with the tokenizers of ``egom2p-tokenizers`` (the ``[tokenizers]`` extra).

``--tokenizer tok_cam=SOURCE`` / ``tok_gaze=SOURCE`` name a VQ-VAE (anything ``VQVAE.from_pretrained``
opens). ``egom2p.tokenizers`` is imported only when one is given, so generation and token-level
evaluation work without it. Decoded camera poses are camera-to-world matrices in the window's canonical
frame (the first pose is the identity up to the tokenizer's error), so they need no dataset basis; decoded gaze needs the image frame it was
tokenised in (``--gaze-frame NAME`` or ``--orig-res/--resize-res/--crop``) to become pixels.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from egom2p.core.cli import one_line, warn
from egom2p.core.errors import MissingExtraError
from egom2p.core.modalities import ModalitySpec

INSTALL_HINT = "pip install 'egom2p-generate[tokenizers]'"


@dataclass(frozen=True)
class SignalKind:
    """What a modality's tokens decode to: the tokenizer kind that decodes them and the signal's name."""

    tokenizer: str  # the VQ-VAE's kind, "cam" or "gaze"
    signal: str  # "poses" (N, 60, 4, 4) or "pixels" (N, 60, 2)


SIGNALS: dict[str, SignalKind] = {"tok_cam": SignalKind("cam", "poses"), "tok_gaze": SignalKind("gaze", "pixels")}


def require_tokenizers(module: str = "") -> ModuleType:
    """``egom2p.tokenizers`` (or its submodule ``module``), or :class:`MissingExtraError` with the install hint."""
    name = f"egom2p.tokenizers.{module}" if module else "egom2p.tokenizers"
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingExtraError(f"--tokenizer needs egom2p-tokenizers: {INSTALL_HINT}") from None


def parse_tokenizer_options(items: Iterable[str]) -> dict[str, str]:
    """``["tok_cam=SOURCE", ...]`` -> ``{modality: source}``; a bad item is a ValueError naming it."""
    sources: dict[str, str] = {}
    for item in items:
        name, sep, source = item.partition("=")
        if not sep or not source:
            raise ValueError(f"--tokenizer {item!r}: expected MODALITY=SOURCE, e.g. tok_cam=tokenizers/cam")
        if name not in SIGNALS:
            raise ValueError(f"--tokenizer {name}: no signal tokenizer decodes it; give {' or '.join(f'{m}=SOURCE' for m in SIGNALS)}")
        if name in sources:
            raise ValueError(f"--tokenizer {name} is given twice")
        sources[name] = source
    return sources


def gaze_frame_from_args(args: argparse.Namespace, needed: bool) -> Any:
    """The ``GazeFrame`` of ``--gaze-frame`` or ``--orig-res/--resize-res/--crop`` (None when neither is given).

    ``needed``: a ``tok_gaze`` tokenizer is given, so the frame must be; otherwise giving one is an error.
    """
    sizes = {"--orig-res": args.orig_res, "--resize-res": args.resize_res, "--crop": args.crop}
    given = [flag for flag, value in sizes.items() if value is not None]
    if not needed:
        if args.gaze_frame is not None or given:
            flag = "--gaze-frame" if args.gaze_frame is not None else given[0]
            raise ValueError(f"{flag} applies only with --tokenizer tok_gaze=SOURCE")
        return None
    # What is missing is said before the extra is needed; the tokenizers' own parser then builds the frame.
    if args.gaze_frame is not None and given:
        raise ValueError(f"give --gaze-frame or --orig-res/--resize-res/--crop, not both (got --gaze-frame and {given[0]})")
    missing = [flag for flag in ("--orig-res", "--resize-res") if flag not in given]
    if args.gaze_frame is None and missing:
        what = "--gaze-frame NAME or --orig-res W H --resize-res W H [--crop W H]"
        raise ValueError(f"--tokenizer tok_gaze needs the gaze image frame: {what}" + (f" (missing {missing[0]})" if given else ""))
    return require_tokenizers("cli_options").gaze_frame_from_args(args)


@dataclass(frozen=True)
class SignalOptions:
    """The checked ``--tokenizer`` sources and the gaze frame, before any model is loaded."""

    sources: dict[str, str]
    gaze_frame: Any = None  # egom2p.tokenizers.gaze.GazeFrame, with a tok_gaze tokenizer


def signal_options(args: argparse.Namespace) -> SignalOptions | None:
    """The signal options of a command line, checked: option mistakes first, then the install hint;
    None without ``--tokenizer``."""
    sources = parse_tokenizer_options(args.tokenizer)
    frame = gaze_frame_from_args(args, needed="tok_gaze" in sources)
    if not sources:
        return None
    require_tokenizers()
    return SignalOptions(sources, frame)


class SignalDecoder:
    """The tokenizers of the ``--tokenizer`` options, checked against a checkpoint's modalities.

    Build with :meth:`load`. ``decode(modality, tokens)`` turns token ids ``[B, 30]`` into float64
    signals: ``tok_cam`` canonical camera-to-world poses ``(B, 60, 4, 4)``, ``tok_gaze`` pixels of the
    original image ``(B, 60, 2)``.
    """

    def __init__(self, tokenizers: Mapping[str, Any], sources: Mapping[str, str], gaze_frame: Any = None) -> None:
        self.tokenizers, self.sources, self.gaze_frame = dict(tokenizers), dict(sources), gaze_frame

    @classmethod
    def load(
        cls, options: SignalOptions, modalities: Mapping[str, ModalitySpec], device: torch.device | str | None = None
    ) -> SignalDecoder:
        """Open each tokenizer and check it decodes the checkpoint's tokens: the modality exists, the kind
        matches, the codebook size is the modality's vocabulary and the token counts agree."""
        vqvae = require_tokenizers("vqvae")
        tokenizers = {}
        for name, source in options.sources.items():
            if name not in modalities:
                raise ValueError(f"--tokenizer {name}: the checkpoint has no {name} (it has {sorted(modalities)})")
            try:
                tokenizer = vqvae.VQVAE.from_pretrained(source, device=device)
            except (ValueError, FileNotFoundError) as err:  # name the option, then the tokenizer's own message
                error = FileNotFoundError if isinstance(err, FileNotFoundError) else ValueError
                raise error(f"--tokenizer {name}: {one_line(err)}") from None
            check_tokenizer(name, tokenizer, modalities[name], source)
            tokenizers[name] = tokenizer
        return cls(tokenizers, options.sources, options.gaze_frame)

    def __contains__(self, modality: object) -> bool:
        return modality in self.tokenizers

    def signal_name(self, modality: str) -> str:
        """``poses`` or ``pixels``: the name of what ``modality``'s tokens decode to."""
        return SIGNALS[modality].signal

    def decode(self, modality: str, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """The float64 signals of token ids ``[B, N]`` (or ``[N]`` for one sample, returned as a batch of one)."""
        tokenizer = self.tokenizers[modality]
        ids = torch.as_tensor(np.asarray(tokens)).reshape(-1, tokenizer.num_tokens)
        if modality == "tok_cam":
            return tokenizer.decode_poses(ids)
        return tokenizer.decode_gaze(ids, self.gaze_frame)


def warn_unused_tokenizers(prog: str, decoder: SignalDecoder, targets: Iterable[str]) -> None:
    """A one-line warning for each tokenizer whose modality nothing generates (it is ignored)."""
    for name in sorted(set(decoder.tokenizers) - set(targets)):
        warn(prog, f"--tokenizer {name}: nothing generates {name} here, so it decodes nothing")


def check_tokenizer(modality: str, tokenizer: Any, spec: ModalitySpec, source: str) -> None:
    """ValueError (one line naming the modality and both numbers) when ``tokenizer`` cannot decode ``spec``'s tokens."""
    kind = SIGNALS[modality].tokenizer
    if tokenizer.kind != kind:
        raise ValueError(f"--tokenizer {modality}={source}: a {tokenizer.kind} tokenizer; {modality} needs a {kind} tokenizer")
    if tokenizer.vocab_size != spec.vocab_size:
        raise ValueError(f"--tokenizer {modality}={source}: its codebook has {tokenizer.vocab_size} entries, the "
                         f"checkpoint's {modality} vocabulary {spec.vocab_size}")
    if tokenizer.num_tokens != spec.num_tokens:
        raise ValueError(f"--tokenizer {modality}={source}: it makes {tokenizer.num_tokens} tokens per window, the "
                         f"checkpoint's {modality} has {spec.num_tokens}")


def signal_file(out: Path, modality: str) -> Path:
    """Where file mode writes ``modality``'s decoded signals: ``<out stem>_<modality>_<signal>.npy`` beside ``out``."""
    return out.with_name(f"{out.stem}_{modality}_{SIGNALS[modality].signal}.npy")


def signal_folder(target_folder: str, modality: str) -> str:
    """The shard folder of ``modality``'s decoded signals in batch inference: ``cam_poses``, ``gaze_pixels``."""
    return f"{target_folder}_{SIGNALS[modality].signal}"
