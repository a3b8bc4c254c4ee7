"""`egom2p-eval`: token accuracy of an EgoM2P checkpoint on rgb2cam / rgb2depth / rgb2gaze / depth2rgb, and with
``--tokenizer`` the camera and gaze errors of the decoded signals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from egom2p.core.cli import add_data_options, fail, positive_int, run_cli, warn
from egom2p.model import EgoM2P

from .cli_options import add_batch_size_option, add_decoding_options, generation_parser, steps_per, task_name
from .precision import tf32_on_cuda
from .signal_eval import GT_SOURCE, SignalScorer
from .signals import SignalDecoder, signal_options, warn_unused_tokenizers
from .tasks import TASKS, BatchCallback, run_eval_task, task_spec
from .video import VIDEO_MODALITIES, VideoCodec, VideoScorer

PROG = "egom2p-eval"

EXAMPLES = f"""examples:
  {PROG} --checkpoint runs/demo-cpu --task rgb2cam \\
      --data 'data/demo/val/[cam,depth,gaze,rgb]/synth_full/shard-000000.tar' --max-samples 64
  {PROG} --checkpoint ckpt/checkpoint-main.pth --task rgb2depth --data val_root --dataset holoassist --out out.json
  {PROG} --checkpoint org/egom2p-base --task rgb2cam --data 's3://bucket/[rgb,cam]/val/shard-{{000000..000009}}.tar' \\
      --save-figures figs/          # figs/rgb2cam/<sample key>.png: true vs generated tokens
  # the paper's camera and gaze metrics on decoded signals (the [tokenizers] extra)
  {PROG} --checkpoint ckpt_dir --task rgb2cam --task rgb2gaze --data 'val/[rgb,cam,gaze]/ds/shard-000000.tar' \\
      --tokenizer tok_cam=tokenizers/cam --tokenizer tok_gaze=tokenizers/gaze --gaze-frame holoassist
defaults are the released eval scripts': ROAR, steps rgb2depth 3 / rgb2cam 3 / rgb2gaze 5 / depth2rgb 6,
temperature 0.01, top-p 0.8, CFG 2.0 with growing conditioning, seed 0. Metrics are token accuracy, and with
--tokenizer for rgb2cam: ATE (original alignment, SE(3), Sim(3), unaligned), RTE, RRE; for rgb2gaze: gaze MSE
(crop units) and gaze error in crop pixels; mean and median over samples. Their ground truth is the held-out
tokens decoded with the same tokenizer (gt: decoded tokens). With --save-figures, also
DIR/<task>/<key>_signals.png: the true and generated trajectories in 3-D, or the gaze traces.
With --video-tokenizer (the Cosmos tokenizer; the [video] extra), rgb2depth also reports AbsRel and delta < 1.25
of the decoded relative depth (least-squares scale and shift per clip, pixels at >= 10% of the clip's range) and
depth2rgb PSNR and SSIM of the decoded frames, against the held-out tokens decoded the same way.
Exit status 1 when a task evaluated no sample (the data lacks its modalities).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `egom2p-eval`."""
    parser = generation_parser(PROG, "Evaluation of an EgoM2P checkpoint: each task generates its target from "
                               "the conditioning\nof every sample and counts the tokens that match; with --tokenizer "
                               "it also decodes camera\nand gaze tokens and reports ATE / RTE / RRE and the gaze error.",
                               EXAMPLES)
    add_data_options(parser)
    parser.add_argument("--task", required=True, type=task_name, action="append", metavar="TASK",
                        help=f"task to run (repeat for several): {', '.join(sorted(TASKS))}, or <cond>2<target> between "
                             "any two of the checkpoint's modalities (rgb2hand: tok_rgb -> tok_hand)")
    parser.add_argument("--max-samples", type=positive_int, metavar="N", help="evaluate at most this many samples per task "
                        "(default: all)")
    add_batch_size_option(parser, default=1)
    parser.add_argument("--out", "--json", type=Path, metavar="FILE", help="also write the results as JSON here")
    parser.add_argument("--save-figures", type=Path, metavar="DIR",
                        help="draw true vs generated tokens of the first --max-figures samples of each task into "
                             "DIR/<task>/<key>.png (needs the [viz] extra: matplotlib)")
    parser.add_argument("--max-figures", type=positive_int, default=8, metavar="N", help="figures per task with --save-figures")
    add_decoding_options(parser, steps_for="--task", decode_video=False)
    return parser


def format_table(results: list[dict[str, Any]]) -> str:
    """A small fixed-width table of eval results (accuracy ``-`` where nothing was evaluated)."""
    header = f"{'task':<10} {'accuracy':>9} {'tokens':>9} {'samples':>8} {'skipped':>8} {'seconds':>8}"
    rows = [
        f"{r['task']:<10} {'-' if r['accuracy'] is None else format(r['accuracy'], '.4f'):>9} {r['n_tokens']:>9} "
        f"{r['n_samples']:>8} {r['n_skipped']:>8} {r['seconds']:>8.1f}"
        for r in results
    ]
    return "\n".join([header, *rows])


def format_signal_table(results: list[dict[str, Any]]) -> str:
    """The signal metrics of the tasks that have them, one row per metric (``-`` where no sample had a value)."""
    show = lambda value: "-" if value is None else format(value, ".4g")  # noqa: E731
    header = f"{'task':<10} {'metric':<20} {'mean':>11} {'median':>11} {'samples':>8}"
    rows = [f"{r['task']:<10} {name:<20} {show(mean):>11} {show(r['signals']['median'][name]):>11} "
            f"{r['signals']['n_samples']:>8}"
            for r in results if "signals" in r for name, mean in r["signals"]["mean"].items()]
    sources = ", ".join(r["signals"]["tokenizer"] for r in results if "signals" in r)
    return "\n".join([f"signal metrics (gt: {GT_SOURCE}; tokenizer {sources})", header, *rows])


def _chain(*callbacks: BatchCallback | None) -> BatchCallback | None:
    """One ``on_batch`` callback calling each given one in turn (None when none is given)."""
    given = [callback for callback in callbacks if callback is not None]
    if not given:
        return None

    def each(keys: list[str], truth: Any, generated: Any) -> None:
        for callback in given:
            callback(keys, truth, generated)

    return each


def figure_writer(directory: Path, task: str, model: EgoM2P, limit: int) -> BatchCallback:
    """An ``on_batch`` callback drawing the first ``limit`` samples of ``task`` into ``directory/task/``."""
    from .figures import save_token_figure

    spec = model.modalities[task_spec(task).target]
    drawn: list[Path] = []

    def draw(keys: list[str], truth: Any, generated: Any) -> None:
        for key, true_tokens, tokens in zip(keys, truth, generated):
            if len(drawn) < limit:
                drawn.append(save_token_figure(directory / task / f"{key}.png", spec, true_tokens, tokens, title=task))

    return draw


def _evaluate(args: argparse.Namespace) -> int:
    if args.save_figures is not None:
        from .figures import require_matplotlib  # the [viz] extra: fail before the run, not after

        require_matplotlib()
    options = signal_options(args)  # the install hint and option mistakes before any model loads
    steps = steps_per(args.steps, args.task, "--task")
    model = EgoM2P.from_pretrained(args.checkpoint, device=args.device)
    video = None if args.video_tokenizer is None else VideoCodec.load(args.video_tokenizer, model.modalities, args.device)
    if video is not None and not {task_spec(task).target for task in args.task} & set(VIDEO_MODALITIES):
        warn(PROG, "--video-tokenizer: no task generates video (rgb2depth, depth2rgb), so it scores nothing")
    decoder = None
    if options is not None:
        decoder = SignalDecoder.load(options, model.modalities, args.device)
        warn_unused_tokenizers(PROG, decoder, [task_spec(task).target for task in args.task])
    results = []
    with tf32_on_cuda(args.device, enabled=not args.no_tf32):
        for task, task_steps in zip(args.task, steps):
            draw = figure_writer(args.save_figures, task, model, args.max_figures) if args.save_figures else None
            target = task_spec(task).target
            scorer = (SignalScorer(decoder, target, task, args.save_figures, args.max_figures)
                      if decoder is not None and target in decoder else
                      VideoScorer(video, target, task) if video is not None and target in VIDEO_MODALITIES else None)
            result = run_eval_task(
                model, args.data, task, max_samples=args.max_samples, dataset=args.dataset,
                batch_size=args.batch_size, steps=task_steps, on_batch=_chain(draw, scorer), scheme=args.scheme,
                temperature=args.temp, top_k=args.top_k, top_p=args.top_p, cfg_scale=args.cfg, seed=args.seed,
            )  # fmt: skip
            results.append(result if scorer is None else {**result, "signals": scorer.summary()})
    print(format_table(results))
    if any("signals" in r for r in results):
        print(format_signal_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    if args.save_figures:
        signals = ", <sample key>_signals.png" if any("signals" in r for r in results) else ""
        print(f"figures: {args.save_figures}/<task>/<sample key>.png{signals}")
    empty = [r for r in results if not r["n_samples"]]
    if empty:
        names = ", ".join(f"{r['task']} ({r['n_skipped']} samples lack {task_spec(r['task']).cond} or "
                          f"{task_spec(r['task']).target})" for r in empty)
        return fail(PROG, f"nothing evaluated for {names} in {args.data}", 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `egom2p-eval`."""
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _evaluate(args))


if __name__ == "__main__":
    raise SystemExit(main())
