"""`egom2p-generate`: generate target modalities from pre-tokenised conditioning files."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from egom2p.core.modalities import ModalitySpec
from egom2p.core.shards import decode_tokens
from egom2p.model import EgoM2P

from . import __version__
from .precision import TF32_HELP, parse_device, tf32_on_cuda
from .sampler import GenerationSampler
from .schedule import build_generation_schedule

DEFAULT_CFG = 2.0

EXAMPLES = f"""examples:
  # the released rgb -> camera eval settings
  egom2p-generate --checkpoint ckpt/checkpoint-main.pth --cond tok_rgb=clip.npz --target tok_cam \\
      --steps 3 --scheme roar --temp 0.01 --top-p 0.8 --cfg 2.0 --seed 0 --out clip_cam.npz
  # chained: camera, then gaze (writes out_tok_cam.npz and out_tok_gaze.npz)
  egom2p-generate --checkpoint ckpt_dir --cond tok_rgb=clip.npz --target tok_cam --target tok_gaze \\
      --steps 3 5 --out out.npz
  # multi-condition guidance: rgb with weight 1.5 and depth with weight 0.5, one pass each
  egom2p-generate --checkpoint ckpt_dir --guide tok_rgb=rgb.npz:1.5 --guide tok_depth=depth.npz:0.5 \\
      --target tok_cam --out cam.npz
  # one condition made of two modalities, then a second target guided by the finished camera too
  egom2p-generate --checkpoint ckpt_dir --guide tok_rgb=rgb.npz,tok_depth=depth.npz:2 \\
      --target tok_cam --target tok_gaze --steps 3 5 --finished-weight 1.0 --out out.npz

multi-condition guidance (--guide, the original's generate_multi_guided): each --guide is one
condition with its weight; logits = uncond + sum_i w_i (cond_i - uncond). The unconditional pass
sees the --cond inputs (shared by every pass) and the targets decoded so far; pass i sees the same
plus condition i. With several targets, each finished target becomes one more condition of the
later ones, with weight --finished-weight.

{TF32_HELP}
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `egom2p-generate`."""
    parser = argparse.ArgumentParser(
        prog="egom2p-generate",
        description="Generate token modalities with an EgoM2P checkpoint (ROAR / MaskGIT, classifier-free guidance).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint directory (ours, a run's checkpoints/step-N, or a run: its newest step) "
                             "or the original .pth")
    parser.add_argument("--cond", action="append", default=[], metavar="MODALITY=FILE",
                        help="conditioning tokens: .npz (arr_0) or .npy, one sample (5,32,32)/(30,) or a batch")
    parser.add_argument("--guide", action="append", default=[], metavar="MODALITY=FILE[,MODALITY=FILE...]:WEIGHT",
                        help="one condition of multi-condition guidance and its weight (repeat for several)")
    parser.add_argument("--finished-weight", type=float, default=1.0,
                        help="with --guide and several targets: the weight of each finished target as a "
                             "condition of the later ones (default 1.0)")
    parser.add_argument("--target", action="append", required=True, help="modality to generate (repeat to chain)")
    parser.add_argument("--steps", type=int, nargs="+", default=[3], help="decoding steps, one value or one per target")
    parser.add_argument("--scheme", choices=["roar", "maskgit"], default="roar")
    parser.add_argument("--token-schedule", choices=["linear", "cosine"], default="linear",
                        help="token split per step (ROAR uses linear unless --roar-honours-schedule)")
    parser.add_argument("--roar-honours-schedule", action="store_true")
    parser.add_argument("--temp", type=float, default=0.01, help="sampling temperature (0 = argmax)")
    parser.add_argument("--temp-schedule", default="constant", help="constant | linear | onex:{min_t}:{power}")
    parser.add_argument("--top-k", type=_top_k, default=0.0, help="int: keep k tokens; float <= 1: fraction of V")
    parser.add_argument("--top-p", type=float, default=0.8)
    parser.add_argument("--cfg", type=float, default=None,
                        help=f"guidance scale of the --cond inputs (1 = unguided; default {DEFAULT_CFG}); "
                             "not with --guide, whose weights replace it")
    parser.add_argument("--no-grow-conditioning", action="store_true",
                        help="do not blank earlier targets in the unconditional pass of later ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=parse_device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-tf32", action="store_true", help="keep full fp32 matmuls on CUDA (see below)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output .npz; with several targets, OUT_<target>.npz per target")
    return parser


def _top_k(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() and value >= 1 else value


def load_tokens(path: str | Path) -> np.ndarray:
    """Token ids (int64) of an .npz (`arr_0`) or .npy file; a non-integer array is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conditioning file not found: {path}")
    return decode_tokens(str(path), path.read_bytes())


def _modality_tokens(item: str, flag: str, modalities: Mapping[str, ModalitySpec]) -> tuple[str, np.ndarray, bool]:
    """(name, tokens [B, ...], whether the file held one sample) of one MODALITY=FILE item."""
    name, sep, file = item.partition("=")
    if not sep:
        raise ValueError(f"{flag} {item!r}: expected MODALITY=FILE, e.g. tok_rgb=clip.npz")
    if name not in modalities:
        raise ValueError(f"{flag} {name!r}: unknown modality; the checkpoint has {sorted(modalities)}")
    tokens = load_tokens(file)
    spec = modalities[name]
    n = spec.num_tokens
    is_single = tokens.size == n
    if not is_single and (tokens.ndim < 2 or tokens[0].size != n):
        raise ValueError(f"{flag} {name}: {file} has shape {tokens.shape}, expected {n} tokens per sample")
    problem = next(filter(None, map(spec.check_tokens, tokens.reshape(-1, n))), None)
    if problem:
        raise ValueError(f"{flag} {name}: {file}: {problem}")
    return name, tokens[None] if is_single else tokens, is_single


def parse_guide(text: str) -> tuple[list[str], float]:
    """`MODALITY=FILE[,MODALITY=FILE...]:WEIGHT` -> (["MODALITY=FILE", ...], weight)."""
    items, sep, weight = text.rpartition(":")
    try:
        value = float(weight) if sep and items else None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(f"--guide {text!r}: expected MODALITY=FILE[,MODALITY=FILE...]:WEIGHT, e.g. tok_rgb=a.npz:1.5")
    return items.split(","), value


def _load_inputs(
    args: argparse.Namespace, modalities: Mapping[str, ModalitySpec]
) -> tuple[dict[str, dict[str, torch.Tensor]], list[dict[str, dict[str, torch.Tensor]]], list[float], bool]:
    """(shared --cond batch, one batch per --guide, the --guide weights, whether files hold one sample)."""
    guides = [parse_guide(text) for text in args.guide]
    groups = [("--cond", args.cond)] + [("--guide", items) for items, _ in guides]
    batches, singles = [], set()
    for flag, items in groups:
        batch = {}
        for item in items:
            name, tokens, is_single = _modality_tokens(item, flag, modalities)
            if name in batch:
                raise ValueError(f"{flag}: {name} is given twice in one group")
            batch[name] = {"tensor": torch.as_tensor(tokens).long()}
            singles.add(is_single)
        batches.append(batch)
    if len(singles) > 1:
        raise ValueError("mix of single-sample and batched token files")
    return batches[0], batches[1:], [weight for _, weight in guides], singles == {True}


def _check_flags(args: argparse.Namespace) -> None:
    if not args.guide:
        return
    if args.cfg is not None:
        raise ValueError("--cfg does not apply with --guide: each --guide carries its own weight")
    if args.no_grow_conditioning:
        raise ValueError("--no-grow-conditioning does not apply with --guide: finished targets always become "
                         "conditions (weight --finished-weight), as in the original's generate_multi_guided")


def output_paths(out: Path, targets: list[str]) -> dict[str, Path]:
    """Where each target's tokens go: `out` itself for one target, `OUT_<target>.npz` for several."""
    if len(targets) == 1:
        return {targets[0]: out}
    return {t: out.with_name(f"{out.stem}_{t}{out.suffix or '.npz'}") for t in targets}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `egom2p-generate`."""
    args = build_parser().parse_args(argv)
    try:
        _check_flags(args)
        model = EgoM2P.from_pretrained(args.checkpoint).to(args.device).eval()
        modalities = model.modalities
        batch, guides, weights, single = _load_inputs(args, modalities)
        targets = args.target
        unknown = [t for t in targets if t not in modalities]
        if unknown:
            raise ValueError(f"--target {unknown}: unknown modality; the checkpoint has {sorted(modalities)}")
        steps = args.steps * len(targets) if len(args.steps) == 1 else args.steps
        n = len(targets)
        cfg = DEFAULT_CFG if args.cfg is None else args.cfg
        # with --guide, target j is guided by the given conditions and the j targets finished before it
        scales = [weights + [args.finished_weight] * j for j in range(n)] if guides else [cfg] * n
        schedule = build_generation_schedule(
            cond_domains=list(batch), target_domains=targets,
            tokens_per_target=[modalities[t].num_tokens for t in targets],
            autoregression_schemes=[args.scheme] * n, decoding_steps=steps,
            token_decoding_schedules=[args.token_schedule] * n, temps=[args.temp] * n,
            temp_schedules=[args.temp_schedule] * n, cfg_scales=scales, cfg_schedules=["constant"] * n,
            cfg_grow_conditioning=not args.no_grow_conditioning, modality_info=modalities,
            roar_honours_token_schedule=args.roar_honours_schedule,
        )  # fmt: skip
        sampler, options = GenerationSampler(model), dict(seed=args.seed, top_k=args.top_k, top_p=args.top_p)
        with tf32_on_cuda(args.device, enabled=not args.no_tf32):
            start = time.perf_counter()
            if guides:
                out = sampler.generate_multi_guided(batch, guides, schedule, **options)
            else:
                out = sampler.generate(batch, schedule, **options)
            seconds = time.perf_counter() - start
    except (ValueError, FileNotFoundError) as err:
        print(f"egom2p-generate: error: {err}", file=sys.stderr)
        return 2

    generated = 0
    for target, path in output_paths(args.out, targets).items():
        tokens = out[target]["tensor"].cpu().numpy()
        tokens = tokens.reshape((tokens.shape[0],) + tuple(modalities[target].shape))
        generated += tokens.size
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, tokens[0] if single else tokens)
        print(f"{target}: {tokens.shape[1:] if single else tokens.shape} -> {path}")
    print(f"{len(schedule)} steps, {seconds:.2f} s, {generated / max(seconds, 1e-9):.1f} tokens/s, "
          f"{len(schedule) / max(seconds, 1e-9):.2f} steps/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
