"""`egom2p-generate`: generate token modalities from token files, unconditionally, or for a whole shard set."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from egom2p.core.cli import add_data_options, fail, finite_float, positive_int, run_cli, warn
from egom2p.core.modalities import ModalitySpec
from egom2p.core.progress import progress as progress_bar
from egom2p.core.shards import decode_tokens
from egom2p.model import EgoM2P

from .batch import empty_target
from .batch_manifest import source_identity
from .cli_options import add_batch_size_option, add_decoding_options, generation_parser, steps_per, task_name
from .infer import generate_shards
from .precision import tf32_on_cuda
from .sampler import GenerationSampler
from .schedule import build_generation_schedule
from .signals import (
    SignalDecoder,
    SignalOptions,
    signal_file,
    signal_folder,
    signal_options,
    warn_unused_tokenizers,
)
from .tasks import DEFAULTS, TASKS, task_spec, warn_clamped
from .video import VIDEO_MODALITIES, VideoCodec, save_frames_figure, video_file

PROG = "egom2p-generate"

EXAMPLES = f"""examples:
  # the released rgb -> camera eval settings
  {PROG} --checkpoint ckpt/checkpoint-main.pth --cond tok_rgb=clip.npz --target tok_cam \\
      --steps 3 --scheme roar --temp 0.01 --top-p 0.8 --cfg 2.0 --seed 0 --out clip_cam.npz
  # chained: camera, then gaze (writes out_tok_cam.npz and out_tok_gaze.npz)
  {PROG} --checkpoint ckpt_dir --cond tok_rgb=clip.npz --target tok_cam --target tok_gaze \\
      --steps 3 5 --out out.npz
  # unconditional: four camera token sequences from nothing
  {PROG} --checkpoint ckpt_dir --target tok_cam --num-samples 4 --out cams.npz
  # batch inference: depth tokens for every sample of a shard set (local or s3://), resumable
  {PROG} --checkpoint ckpt_dir --data 'shards/[rgb]/val/shard-{{000000..000009}}.tar' \\
      --task rgb2depth --out preds/          # -> preds/depth/val/shard-00000N.tar
  # the same with another temperature: preds/ holds the first run, so write to preds-2/ (printed)
  {PROG} --checkpoint ckpt_dir --data 'shards/[rgb]/val/shard-{{000000..000009}}.tar' \\
      --task rgb2depth --out preds/ --temp 0.5 --new-root
  # multi-condition guidance: rgb with weight 1.5 and depth with weight 0.5, one pass each
  {PROG} --checkpoint ckpt_dir --guide tok_rgb=rgb.npz:1.5 --guide tok_depth=depth.npz:0.5 \\
      --target tok_cam --out cam.npz
  # decoded signals too (the [tokenizers] extra): out_tok_cam_poses.npy and out_tok_gaze_pixels.npy
  {PROG} --checkpoint ckpt_dir --cond tok_rgb=clip.npz --target tok_cam --target tok_gaze --steps 3 5 \\
      --tokenizer tok_cam=tokenizers/cam --tokenizer tok_gaze=tokenizers/gaze --gaze-frame holoassist --out out.npz

decoded signals (--tokenizer): next to the token files, file mode writes OUT-STEM_tok_cam_poses.npy,
(N, 60, 4, 4) float64 OpenCV camera-to-world poses in the window's canonical frame (the first pose is
the identity up to the tokenizer's error; no --basis needed), and
OUT-STEM_tok_gaze_pixels.npy, (N, 60, 2) float64 gaze pixels of the original image (the --gaze-frame's
orig_res), always with the batch dimension. Batch inference writes DIR/cam_poses/<dataset>/shard-N.tar
and DIR/gaze_pixels/<dataset>/shard-N.tar beside the token shards: one <key>.npy per sample, same keys
and order. A tokenizer must match the checkpoint's modality: kind, codebook size = vocabulary, tokens.

multi-condition guidance (--guide, the original's generate_multi_guided): each --guide is one
condition with its weight; logits = uncond + sum_i w_i (cond_i - uncond). The unconditional pass
sees the --cond inputs (shared by every pass) and the targets decoded so far; pass i sees the same
plus condition i. With several targets, each finished target becomes one more condition of the
later ones, with weight --finished-weight.
"""

FILE_STEPS = 3  # decoding steps of each --target without --steps

# Options of the file / unconditional mode, and of batch inference: neither mode takes the other's (--out is both
# modes' main output: a FILE in the first, a DIR in the second).
FILE_OPTIONS = ("cond", "guide", "target", "num_samples", "finished_weight", "token_schedule",
                "temp_schedule", "roar_honours_schedule", "no_grow_conditioning", "save_figures")
BATCH_OPTIONS = ("data", "dataset", "task", "batch_size", "overwrite", "new_root")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `egom2p-generate`."""
    parser = generation_parser(
        PROG,
        "Generate token modalities with an EgoM2P checkpoint (ROAR / MaskGIT, classifier-free\n"
        "guidance): from token files (--cond / --guide), from nothing (no --cond), or for every\n"
        "sample of a shard set (--data with --task and --out DIR).",
        EXAMPLES,
    )
    parser.add_argument("--out", type=Path, metavar="FILE|DIR",
                        help="the main output. With --target: a FILE, the output .npz (with several targets, "
                             "OUT_<target>.npz per target). With --data: a local DIR for the generated shards, in "
                             "the input's layout: DIR/<target folder>/<dataset>/shard-N.tar")
    files = parser.add_argument_group("from token files, or unconditional (no --cond / --guide)")
    files.add_argument("--cond", action="append", default=[], metavar="MODALITY=FILE",
                       help="conditioning tokens: .npz (arr_0) or .npy, one sample (5,32,32)/(30,) or a batch "
                            "(repeat for several modalities)")
    files.add_argument("--guide", action="append", default=[], metavar="MODALITY=FILE[,MODALITY=FILE...]:WEIGHT",
                       help="one condition of multi-condition guidance and its weight (repeat for several)")
    files.add_argument("--target", action="append", metavar="MODALITY", help="modality to generate (repeat to chain)")
    files.add_argument("--num-samples", type=positive_int, metavar="N",
                       help="unconditional generation: how many samples (default: 1); with token files the "
                            "files set the batch")
    files.add_argument("--finished-weight", type=finite_float, metavar="WEIGHT",
                       help="with --guide and several targets: the weight of each finished target as a "
                            "condition of the later ones (default: 1.0)")
    files.add_argument("--token-schedule", choices=["linear", "cosine"],
                       help="token split per step (default: linear; ROAR uses linear unless --roar-honours-schedule)")
    files.add_argument("--roar-honours-schedule", action="store_true", help="let ROAR use --token-schedule")
    files.add_argument("--temp-schedule", metavar="SCHEDULE",
                       help="constant | linear | onex:{min_t}:{power} (default: constant)")
    files.add_argument("--no-grow-conditioning", action="store_true",
                       help="do not blank earlier targets in the unconditional pass of later ones")
    shards = parser.add_argument_group("batch inference over shards")
    add_data_options(shards, required=False)
    shards.add_argument("--task", type=task_name, metavar="TASK", help="what to generate from what: the released eval "
                        f"tasks ({', '.join(sorted(TASKS))}) or <cond>2<target> (rgb2hand: tok_rgb -> tok_hand)")
    add_batch_size_option(shards, default=8)
    shards.add_argument("--overwrite", action="store_true",
                        help="generate every shard again; when DIR holds a run with other settings (recorded in "
                             "DIR/egom2p-batch-<task>.json), delete that run's outputs first (default: resume a run "
                             "with the same settings, skipping its finished shards; refuse other settings)")
    shards.add_argument("--new-root", action="store_true",
                        help="when DIR holds a run with other settings, write to the first of DIR-2, DIR-3, ... that "
                             "is free or holds this same run (printed), instead of refusing")
    add_decoding_options(parser, steps_for="--target", decode_video=True, default_steps=FILE_STEPS)
    return parser


def load_tokens(path: str | Path) -> np.ndarray:
    """Token ids (int64) of an .npz (`arr_0`) or .npy file; a non-integer array is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conditioning file not found: {path}")
    return decode_tokens(str(path), path.read_bytes())


def _modality_tokens(item: str, flag: str, modalities: Mapping[str, ModalitySpec],
                     video: VideoCodec | None = None) -> tuple[str, np.ndarray, bool]:
    """(name, tokens [B, ...], whether the file held one sample) of one MODALITY=FILE item (a token file, or a
    video with ``--video-tokenizer``: one sample per whole 2 s clip)."""
    name, sep, file = item.partition("=")
    if not sep:
        raise ValueError(f"{flag} {item!r}: expected MODALITY=FILE, e.g. tok_rgb=clip.npz")
    if name not in modalities:
        raise ValueError(f"{flag} {name!r}: unknown modality; the checkpoint has {sorted(modalities)}")
    if video is not None and video.is_video(file):
        if not Path(file).is_file():
            raise FileNotFoundError(f"conditioning file not found: {file}")
        tokens = video.condition(name, file)
        return name, tokens, len(tokens) == 1
    try:
        tokens = load_tokens(file)
    except ValueError as err:
        if Path(file).suffix.lower() in (".npz", ".npy") or video is not None:
            raise
        raise ValueError(f"{flag} {name}: {err}; a video needs --video-tokenizer SOURCE (the Cosmos tokenizer)") from None
    spec = modalities[name]
    n = spec.num_tokens
    is_single = tokens.size == n
    if tokens.ndim >= 1 and len(tokens) == 0:
        raise ValueError(f"{flag} {name}: {file} holds no sample (shape {tokens.shape})")
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
    if value is not None and not math.isfinite(value):
        raise ValueError(f"--guide {text!r}: the weight must be a finite number, got {weight}")
    if value is None:
        raise ValueError(f"--guide {text!r}: expected MODALITY=FILE[,MODALITY=FILE...]:WEIGHT, e.g. tok_rgb=a.npz:1.5")
    return items.split(","), value


def _load_inputs(
    args: argparse.Namespace, modalities: Mapping[str, ModalitySpec], video: VideoCodec | None = None
) -> tuple[dict[str, dict[str, torch.Tensor]], list[dict[str, dict[str, torch.Tensor]]], list[float], bool]:
    """(shared --cond batch, one batch per --guide, the --guide weights, whether files hold one sample)."""
    guides = [parse_guide(text) for text in args.guide]
    groups = [("--cond", args.cond)] + [("--guide", items) for items, _ in guides]
    batches, singles = [], set()
    for flag, items in groups:
        batch = {}
        for item in items:
            name, tokens, is_single = _modality_tokens(item, flag, modalities, video)
            if name in batch:
                raise ValueError(f"{flag}: {name} is given twice in one group")
            batch[name] = {"tensor": torch.as_tensor(tokens).long()}
            singles.add(is_single)
        batches.append(batch)
    if len(singles) > 1:
        raise ValueError("mix of single-sample and batched token files")
    return batches[0], batches[1:], [weight for _, weight in guides], singles == {True}


def _check_mode(args: argparse.Namespace) -> None:
    """Batch inference (--data) and file mode take disjoint options; each mode's required ones are given."""
    given = lambda names: [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) not in (None, False, [])]  # noqa: E731
    if args.decode and args.video_tokenizer is None:
        raise ValueError("--decode needs --video-tokenizer SOURCE (the Cosmos tokenizer that decodes the video tokens)")
    if args.data is not None or args.task is not None:
        missing = [flag for flag, value in (("--data", args.data), ("--task", args.task), ("--out DIR", args.out))
                   if value is None]
        if missing:
            raise ValueError(f"batch inference needs --data, --task and --out DIR; missing {', '.join(missing)}")
        if given(FILE_OPTIONS):
            raise ValueError(f"{', '.join(given(FILE_OPTIONS))}: not with --data (batch inference runs --task)")
        if args.steps is not None and len(args.steps) > 1:
            raise ValueError(f"--steps: batch inference runs one target, give one value, got "
                             f"{' '.join(map(str, args.steps))}")
        if args.overwrite and args.new_root:
            raise ValueError("give --overwrite or --new-root, not both")
        return
    if given(["dataset", "overwrite", "new_root"]):
        raise ValueError(f"{', '.join(given(['dataset', 'overwrite', 'new_root']))}: only with --data")
    if not args.target:
        raise ValueError("give --target MODALITY (with --cond/--guide token files, or none for unconditional "
                         "generation), or --data/--task/--out DIR for batch inference")
    if args.out is None:
        raise ValueError("--out FILE is required with --target")
    if args.guide:
        if args.cfg is not None:
            raise ValueError("--cfg does not apply with --guide: each --guide carries its own weight")
        if args.no_grow_conditioning:
            raise ValueError("--no-grow-conditioning does not apply with --guide: finished targets always become "
                             "conditions (weight --finished-weight), as in the original's generate_multi_guided")
    elif args.finished_weight is not None:
        raise ValueError("--finished-weight applies only with --guide")
    if args.save_figures is not None and not args.decode:
        raise ValueError("--save-figures draws decoded video frames: it needs --decode and --video-tokenizer")
    if args.num_samples is not None and (args.cond or args.guide):
        raise ValueError("--num-samples is for unconditional generation; with --cond/--guide the token files set the batch")


def output_paths(out: Path, targets: list[str]) -> dict[str, Path]:
    """Where each target's tokens go: `OUT.npz` for one target, `OUT_<target>.npz` for several (OUT without a
    trailing `.npz`, which every token file gets, as numpy's savez writes it)."""
    stem = out.name.removesuffix(".npz")
    if len(targets) == 1:
        return {targets[0]: out.with_name(f"{stem}.npz")}
    return {t: out.with_name(f"{stem}_{t}.npz") for t in targets}


def _guidance_scales(args: argparse.Namespace, batch: Mapping, targets: list[str], weights: list[float]) -> list:
    """One guidance scale per target: the --guide weights, or --cfg where something conditions the target."""
    if args.guide:
        finished = 1.0 if args.finished_weight is None else args.finished_weight
        return [weights + [finished] * j for j in range(len(targets))]  # target j: conditions + j finished targets
    scales = []
    for j, target in enumerate(targets):
        conditioned = bool(batch) or (j > 0 and not args.no_grow_conditioning)
        if not conditioned and args.cfg not in (None, 1.0):
            warn(PROG, f"--cfg {args.cfg} does not apply to {target}: nothing conditions it, so it runs unguided")
        scales.append((DEFAULTS["cfg_scale"] if args.cfg is None else args.cfg) if conditioned else 1.0)
    return scales


def _signal_decoder(args: argparse.Namespace, options: SignalOptions | None, model: EgoM2P,
                    targets: list[str]) -> SignalDecoder | None:
    """The checked tokenizers of ``--tokenizer`` (None without one); a warning for each that decodes nothing."""
    if options is None:
        return None
    decoder = SignalDecoder.load(options, model.modalities, args.device)
    warn_unused_tokenizers(PROG, decoder, targets)
    return decoder


def _write_signals(decoder: SignalDecoder, out: Path, generated: Mapping[str, np.ndarray]) -> None:
    """The decoded signals of every target a tokenizer decodes, as ``<out stem>_<target>_<signal>.npy``."""
    for target, tokens in generated.items():
        if target in decoder:
            signal, path = decoder.decode(target, tokens), signal_file(out, target)
            np.save(path, signal)
            print(f"{target} {decoder.signal_name(target)}: {signal.shape} -> {path}")


def _generate_files(args: argparse.Namespace, options: SignalOptions | None) -> int:
    model = EgoM2P.from_pretrained(args.checkpoint, device=args.device)
    modalities = model.modalities
    video = None if args.video_tokenizer is None else VideoCodec.load(args.video_tokenizer, modalities, args.device)
    batch, guides, weights, single = _load_inputs(args, modalities, video)
    targets = args.target
    if args.decode and not set(targets) & set(VIDEO_MODALITIES):
        warn(PROG, f"--decode: no target is a video ({' or '.join(VIDEO_MODALITIES)}), so nothing is decoded to mp4")
    unknown = [t for t in targets if t not in modalities]
    if unknown:
        raise ValueError(f"--target {unknown}: unknown modality; the checkpoint has {sorted(modalities)}")
    n = len(targets)
    steps = [FILE_STEPS if given is None else given for given in steps_per(args.steps, targets, "--target")]
    unconditional = not batch and not guides
    if unconditional:  # the first target, empty: the sampler fills it from nothing
        single = args.num_samples is None
        batch = {targets[0]: empty_target(args.num_samples or 1, modalities[targets[0]].num_tokens)}
    schedule = build_generation_schedule(
        cond_domains=[] if unconditional else list(batch), target_domains=targets,
        tokens_per_target=[modalities[t].num_tokens for t in targets],
        autoregression_schemes=[args.scheme] * n, decoding_steps=steps,
        token_decoding_schedules=[args.token_schedule or "linear"] * n, temps=[args.temp] * n,
        temp_schedules=[args.temp_schedule or "constant"] * n,
        cfg_scales=_guidance_scales(args, {} if unconditional else batch, targets, weights),
        cfg_schedules=["constant"] * n, cfg_grow_conditioning=not args.no_grow_conditioning, modality_info=modalities,
        roar_honours_token_schedule=args.roar_honours_schedule,
    )  # fmt: skip
    warn_clamped(schedule, dict(zip(targets, steps)), modalities, args.top_k)
    decoder = _signal_decoder(args, options, model, targets)
    sampler, settings = GenerationSampler(model), dict(seed=args.seed, top_k=args.top_k, top_p=args.top_p)
    with tf32_on_cuda(args.device, enabled=not args.no_tf32):
        start = time.perf_counter()
        if guides:
            out = sampler.generate_multi_guided(batch, guides, schedule, **settings)
        else:
            with progress_bar(total=len(schedule), unit="step", desc="generate", leave=False) as steps_done:
                out = sampler.generate(batch, schedule, **settings, on_step=lambda *_: steps_done.update())
        seconds = time.perf_counter() - start

    generated = {}
    for target, path in output_paths(args.out, targets).items():
        tokens = out[target]["tensor"].cpu().numpy()
        tokens = generated[target] = tokens.reshape((tokens.shape[0],) + tuple(modalities[target].shape))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, tokens[0] if single else tokens)
        print(f"{target}: {tokens.shape[1:] if single else tokens.shape} -> {path}")
    if decoder is not None:
        _write_signals(decoder, args.out, generated)
    if args.decode:
        for target in (t for t in targets if t in VIDEO_MODALITIES):
            path = video.write(target, generated[target], video_file(args.out, target))
            print(f"{target} decoded: {len(generated[target]) * 16} frames at 8 fps -> {path}")
            if args.save_figures is not None:
                rows = {f"condition {name}": video.frames(name, batch[name]["tensor"][:1].numpy())[0]
                        for name in batch if name in VIDEO_MODALITIES and name not in targets}
                rows[f"generated {target}"] = video.frames(target, generated[target][:1])[0]
                figure = save_frames_figure(args.save_figures / f"{video_file(args.out, target).stem}.png", rows)
                print(f"{target} frames: {figure}")
    n_tokens = sum(tokens.size for tokens in generated.values())
    print(f"{len(schedule)} steps, {seconds:.2f} s, {n_tokens / max(seconds, 1e-9):.1f} tokens/s, "
          f"{len(schedule) / max(seconds, 1e-9):.2f} steps/s")  # fmt: skip
    return 0


def _generate_shards(args: argparse.Namespace, options: SignalOptions | None) -> int:
    model = EgoM2P.from_pretrained(args.checkpoint, device=args.device)
    target = task_spec(args.task).target
    decoder = _signal_decoder(args, options, model, [target])
    # what the output root's manifest records of the weights: resolved paths and content digests
    sources = {"checkpoint": source_identity(args.checkpoint)}
    if decoder is not None and target in decoder:
        sources[f"tokenizer {target}"] = source_identity(decoder.sources[target])
    video = None
    if args.decode and target in VIDEO_MODALITIES:
        video = VideoCodec.load(args.video_tokenizer, model.modalities, args.device)
        sources["video tokenizer"] = {"given": args.video_tokenizer, "sha256": video.tokenizer.digest}
    elif args.video_tokenizer is not None:
        warn(PROG, f"--video-tokenizer: {args.task} generates {target}, not video; it decodes nothing"
             if args.decode else "--video-tokenizer: batch inference reads tokens; add --decode to write mp4 clips")
    with tf32_on_cuda(args.device, enabled=not args.no_tf32):
        summary = generate_shards(
            model, args.data, args.task, args.out, dataset=args.dataset, batch_size=args.batch_size,
            steps=args.steps[0] if args.steps else None, overwrite=args.overwrite, new_root=args.new_root,
            sources=sources, signals=decoder, video=video, scheme=args.scheme, temperature=args.temp, top_k=args.top_k,
            top_p=args.top_p, cfg_scale=args.cfg, seed=args.seed,
        )  # fmt: skip
    root = Path(summary["out_root"])
    if root != args.out:
        print(f"{args.out} holds a run of {args.task} with other settings: writing to {root}")
    redone = f", {summary['redone']} damaged shards generated again" if summary["redone"] else ""
    print(f"{args.task}: {summary['samples']} samples in {summary['written']} new shards under {root} "
          f"({summary['skipped']} finished shards skipped{redone}, {summary['seconds']:.1f} s)")
    if decoder is not None and target in decoder:
        folder = signal_folder(model.modalities[target].folder, target)
        print(f"{target} {decoder.signal_name(target)}: beside the tokens in {root / folder}/, <key>.npy per sample")
    if video is not None:
        print(f"{target} clips: beside the tokens in {root / (model.modalities[target].folder + '_video')}/, "
              "<key>.mp4 per sample")
    if summary["written"] and not summary["samples"]:
        return fail(PROG, f"nothing generated: the shards of {args.data} hold no samples", 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `egom2p-generate`."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        _check_mode(args)
        options = signal_options(args)  # the install hint and option mistakes before any model loads
        return _generate_shards(args, options) if args.data is not None else _generate_files(args, options)

    return run_cli(PROG, run)


if __name__ == "__main__":
    raise SystemExit(main())
