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
from .sampler import GenerationSampler
from .schedule import build_generation_schedule

EXAMPLES = """examples:
  # the released rgb -> camera eval settings
  egom2p-generate --checkpoint ckpt/checkpoint-main.pth --cond tok_rgb=clip.npz --target tok_cam \\
      --steps 3 --scheme roar --temp 0.01 --top-p 0.8 --cfg 2.0 --seed 0 --out clip_cam.npz
  # chained: camera, then gaze (writes out_tok_cam.npz and out_tok_gaze.npz)
  egom2p-generate --checkpoint ckpt_dir --cond tok_rgb=clip.npz --target tok_cam --target tok_gaze \\
      --steps 3 5 --out out.npz
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
    parser.add_argument("--cfg", type=float, default=2.0, help="guidance scale (1 = unguided)")
    parser.add_argument("--no-grow-conditioning", action="store_true",
                        help="do not blank earlier targets in the unconditional pass of later ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
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


def _conditioning(
    specs: list[str], modalities: Mapping[str, ModalitySpec]
) -> tuple[dict[str, dict[str, torch.Tensor]], bool]:
    batch, single = {}, None
    for item in specs:
        name, sep, file = item.partition("=")
        if not sep:
            raise ValueError(f"--cond {item!r}: expected MODALITY=FILE, e.g. tok_rgb=clip.npz")
        if name not in modalities:
            raise ValueError(f"--cond {name!r}: unknown modality; the checkpoint has {sorted(modalities)}")
        tokens = load_tokens(file)
        spec = modalities[name]
        n = spec.num_tokens
        is_single = tokens.size == n
        if not is_single and (tokens.ndim < 2 or tokens[0].size != n):
            raise ValueError(f"--cond {name}: {file} has shape {tokens.shape}, expected {n} tokens per sample")
        problem = next(filter(None, map(spec.check_tokens, tokens.reshape(-1, n))), None)
        if problem:
            raise ValueError(f"--cond {name}: {file}: {problem}")
        if single is not None and single != is_single:
            raise ValueError("mix of single-sample and batched --cond files")
        single = is_single
        batch[name] = {"tensor": torch.as_tensor(tokens[None] if is_single else tokens).long()}
    return batch, bool(single)


def output_paths(out: Path, targets: list[str]) -> dict[str, Path]:
    """Where each target's tokens go: `out` itself for one target, `OUT_<target>.npz` for several."""
    if len(targets) == 1:
        return {targets[0]: out}
    return {t: out.with_name(f"{out.stem}_{t}{out.suffix or '.npz'}") for t in targets}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `egom2p-generate`."""
    args = build_parser().parse_args(argv)
    try:
        model = EgoM2P.from_pretrained(args.checkpoint).to(args.device).eval()
        modalities = model.modalities
        batch, single = _conditioning(args.cond, modalities)
        targets = args.target
        unknown = [t for t in targets if t not in modalities]
        if unknown:
            raise ValueError(f"--target {unknown}: unknown modality; the checkpoint has {sorted(modalities)}")
        steps = args.steps * len(targets) if len(args.steps) == 1 else args.steps
        n = len(targets)
        schedule = build_generation_schedule(
            cond_domains=list(batch), target_domains=targets,
            tokens_per_target=[modalities[t].num_tokens for t in targets],
            autoregression_schemes=[args.scheme] * n, decoding_steps=steps,
            token_decoding_schedules=[args.token_schedule] * n, temps=[args.temp] * n,
            temp_schedules=[args.temp_schedule] * n, cfg_scales=[args.cfg] * n, cfg_schedules=["constant"] * n,
            cfg_grow_conditioning=not args.no_grow_conditioning, modality_info=modalities,
            roar_honours_token_schedule=args.roar_honours_schedule,
        )  # fmt: skip
        start = time.perf_counter()
        out = GenerationSampler(model).generate(batch, schedule, seed=args.seed, top_k=args.top_k, top_p=args.top_p)
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
