"""``egom2p-tokenize``: camera and gaze signals to token shards and back, round trips and trajectory metrics.

Exit codes (the egom2p CLI style, :mod:`egom2p.core.cli`): 0 done; 1 nothing was encoded; 2 a usage or input
error (one line on stderr, never a traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from egom2p.core.atomic import write_atomic
from egom2p.core.cli import (
    CliParser,
    add_device_option,
    add_version_option,
    fail,
    positive_int,
    run_cli,
)
from egom2p.tokenizers import __version__
from egom2p.tokenizers.cli_options import (
    add_basis_option,
    add_compute_dtype_option,
    add_gaze_frame_options,
    add_tokenizer_option,
    gaze_frame_from_args,
)

if TYPE_CHECKING:
    from egom2p.tokenizers.codec import WindowCodec
    from egom2p.tokenizers.encode import EncodeSummary
    from egom2p.tokenizers.prepare import PrepareSummary

PROG = "egom2p-tokenize"
DESCRIPTION = """Camera and gaze signals to EgoM2P tokens and back, with the VQ-VAE tokenizers.

  encode   tracks or window arrays -> token shards ROOT/<cam|gaze>/<dataset>/shard-NNNNNN.tar (resumable)
  decode   token files or shards -> poses (N, 60, 4, 4) or gaze pixels (N, 60, 2) as .npy
  recon    the round trip of one track or window array, written in its layout, with its metrics
  metrics  camera (ATE, RTE, RRE) or gaze metrics of a prediction against the ground truth
  prepare  recordings (RGB video, depth, camera and gaze tracks) -> aligned shards of every modality
  cosmos-standin  a tiny stand-in of the Cosmos video tokenizer (the video path without the real weights)

Sample keys: <recording stem>_<start frame at 30 fps, 6 digits>, e.g. P01_000120 for the window starting 4 s
into P01.tum (egom2p.tokenizers.keys), so the shards of every modality of a clip line up.

exit codes: 0 done; 1 nothing was encoded; 2 a usage or input error (one line on stderr)."""

EPILOG = f"""examples:
  # HoloAssist camera tracks (TUM text) -> shards out/cam/holoassist/shard-*.tar; run it again to resume
  {PROG} encode --tokenizer tokenizers/cam --input tracks/ --basis holoassist --out out --dataset holoassist

  # gaze windows (N, 60, 2) of EgoExo4D pixels; a .npy gaze track (T, 2) at 10 Hz needs --fps
  {PROG} encode --tokenizer tokenizers/gaze --input gaze_windows.npy --gaze-frame egoexo --out out --dataset egoexo
  {PROG} encode --tokenizer tokenizers/gaze --input gaze_10hz.npy --fps 10 --gaze-frame egoexo --out out --dataset egoexo

  # tokens back to signals: a token file, or every sample of a set of shards (keys to poses.keys.txt)
  {PROG} decode --tokenizer tokenizers/cam --input clip_cam.npz --out poses.npy
  {PROG} decode --tokenizer tokenizers/gaze --input 'out/[gaze]/egoexo/shard-{{000000..000003}}.tar' \\
      --gaze-frame egoexo --out gaze.npy

  # how well does the tokenizer keep a recording? (the reconstruction, and one JSON line of metrics)
  {PROG} recon --tokenizer tokenizers/cam --input P01.tum --basis holoassist --out P01_recon.tum

  # recordings (folders with rgb.mp4 and optionally depth.npy, cam.tum, gaze.txt) -> aligned shards of each modality
  {PROG} prepare --input recordings/ --out data --dataset mine --video-tokenizer nvidia/Cosmos-0.1-Tokenizer-DV4x8x8 \\
      --cam-tokenizer tokenizers/cam --gaze-tokenizer tokenizers/gaze --gaze-frame holoassist

  # the original's example: its reconstruction is canonical 9-D (camera) / crop units (gaze)
  {PROG} metrics --pred token__cam-recon.npy --gt cam.npy
  {PROG} metrics --pred token__gaze-recon.npy --pred-space crop --gt gaze.npy \\
      --orig-res 896 504 --resize-res 896 504 --crop 480 480
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_model_options(parser: argparse.ArgumentParser, basis: bool = True) -> None:
    add_tokenizer_option(parser)
    if basis:
        add_basis_option(parser)
    add_gaze_frame_options(parser)
    parser.add_argument("--batch-size", type=positive_int, default=256, metavar="N", help="windows per forward pass")
    add_device_option(parser)
    add_compute_dtype_option(parser)


def _add_fps_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=_positive_float, metavar="F",
                        help="the frame rate of .npy tracks (T, 4, 4) / (T, 2), which carry no times; without it an "
                             "input .npy is an array of windows (N, 60, 4, 4) / (N, 60, 2) or one window")


def build_parser() -> CliParser:
    """The argparse parser of ``egom2p-tokenize`` (exposed for tests and docs)."""
    parser = CliParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    add_version_option(parser, __version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CliParser)

    e = sub.add_parser("encode", help="tracks or window arrays -> token shards (resumable)", epilog=EPILOG,
                       description="Encode camera or gaze recordings into token shards OUT/<folder>/<dataset>/"
                                   "shard-NNNNNN.tar, one <key>.npz (30 int64 token ids) per 2 s window. Tracks are "
                                   "resampled to 30 fps and cut every --stride frames; a window with a missing pose "
                                   "(camera) or without any gaze point is skipped and counted. Running the same "
                                   "command again resumes: finished shards are checked and kept. A dataset folder "
                                   "holding shards of another run is refused unless --overwrite or --append.")
    _add_model_options(e)
    e.add_argument("--input", required=True, nargs="+", metavar="PATH",
                   help="track files (.npz with poses|gaze + times|fps, TUM / 't x y' text, .npy with --fps), window "
                        "arrays (.npy), or folders of them (their files sorted by name)")
    e.add_argument("--out", required=True, metavar="ROOT", help="output root directory")
    e.add_argument("--dataset", required=True, metavar="NAME", help="dataset name (one folder name)")
    e.add_argument("--kind", choices=["cam", "gaze"],
                   help="what the inputs are (default: the tokenizer's kind; given, it must match the tokenizer)")
    _add_fps_option(e)
    e.add_argument("--stride", type=positive_int, default=60, metavar="N",
                   help="30 fps frames between window starts (60: back-to-back 2 s windows, as the EgoM2P shards; "
                        "10: the tokenizer's training windows); window i of a window array starts at frame i * N")
    e.add_argument("--samples-per-shard", type=positive_int, default=1000, metavar="N", help="windows per tar")
    e.add_argument("--keys", metavar="FILE",
                   help="a text file with the sample key of each window of the (one) window array, one per line: the "
                        "keys of existing samples, so a new modality's shards pair with them (default: <stem>_<frame>)")
    e.add_argument("--folder", metavar="NAME",
                   help="the modality folder to write (default: the tokenizer kind's, cam or gaze); e.g. hand for a "
                        "new modality tokenized by a gaze-kind tokenizer")
    mode = e.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the dataset folder's shards (of any run): everything is encoded again aside "
                           "(resumable there) and swapped in when complete; until then the old shards stay")
    mode.add_argument("--append", action="store_true",
                      help="add these recordings to the dataset folder: new shards numbered after its last one, "
                           "encoded aside (resumable there) and moved in when complete; a window key the dataset "
                           "already holds is refused")

    d = sub.add_parser("decode", help="token files or shards -> poses or gaze pixels (.npy)", epilog=EPILOG,
                       description="Decode token ids into signals: camera poses (N, 60, 4, 4), canonical to each "
                                   "window's first frame (in the --basis dataset's axes when given), or gaze pixels "
                                   "(N, 60, 2) of the frame's original resolution. A file of one window (30,) gives "
                                   "one window. With shards, the sample keys go to OUT's .keys.txt, one per row.")
    _add_model_options(d)
    d.add_argument("--input", required=True, metavar="FILE|PATTERN",
                   help="a token file (.npy / .npz arr_0; (N, 30) or (30,)) or a shard pattern, e.g. "
                        "'out/[cam]/ds/shard-{000000..000009}.tar' (local or s3://)")
    d.add_argument("--out", required=True, metavar="FILE", help="output .npy file")

    r = sub.add_parser("recon", help="round trip of one track or window array, with its metrics", epilog=EPILOG,
                       description="Encode and decode one recording and write the reconstruction in the layout it "
                                   "was given: a window array (N, 60, 4, 4) / (N, 60, 2) or one window as .npy with "
                                   "the same rows, a track as a track file at 30 fps (cut into back-to-back 2 s "
                                   "windows; frames no window covers are missing). Camera windows are put back at "
                                   "their place in the world. Prints the metrics as one JSON line.")
    _add_model_options(r)
    r.add_argument("--input", required=True, metavar="FILE", help="a track file or a window array (.npy)")
    r.add_argument("--out", required=True, metavar="FILE",
                   help="output: .npy for a window array; for a track .npy, .npz or text (.txt / .tum)")
    _add_fps_option(r)

    m = sub.add_parser("metrics", help="camera or gaze metrics of a prediction, as one JSON line", epilog=EPILOG,
                       description="Compare a prediction with the ground truth (.npy files, one window or a batch) "
                                   "and print one JSON line. Camera: poses (..., 60, 4, 4), canonicalised to their "
                                   "first frame, or canonical 9-D vectors (..., 60, 9) on either side; ATE as the "
                                   "original computes it, after SE(3) and Sim(3) alignment and unaligned, RTE, RRE "
                                   "(mean and median over windows). Gaze: pixels (..., 60, 2) of the original image "
                                   "(NaN where missing); the original's MSE in crop units, the error in crop pixels.")
    m.add_argument("--pred", required=True, metavar="FILE", help="the prediction (.npy)")
    m.add_argument("--gt", required=True, metavar="FILE", help="the ground truth (.npy)")
    m.add_argument("--kind", choices=["cam", "gaze"], help="camera or gaze (default: from the shapes)")
    m.add_argument("--pred-space", choices=["signal", "crop", "model"], default="signal",
                   help="what the prediction holds: signal = poses / canonical 9-D / gaze pixels; crop = gaze in "
                        "crop units ([0, 1] inside the crop, the original's decoded gaze); model = the tokenizer's "
                        "raw output (normalised 9-D; gaze in [-1, 1])")
    add_gaze_frame_options(m)

    p = sub.add_parser("prepare", help="recordings (video, depth, camera, gaze) -> aligned training shards",
                       epilog=EPILOG,
                       description="Turn recordings into the training shards of every modality they have: "
                                   "OUT/<rgb|depth|cam|gaze>/<dataset>/shard-NNNNNN.tar, one sample per 2 s clip with "
                                   "the same key in every folder. A recording is a folder: rgb.<mp4|mov|mkv|avi|webm>, "
                                   "optionally depth.npy | depth/ (PNG frames) | depth.<video> with one frame per RGB "
                                   "frame, cam.<tum|txt|npz|npy> and gaze.<txt|npz|npy>; all start at the same "
                                   "instant. The video is resampled to 8 fps, its centred square resized to 256, cut "
                                   "into back-to-back 16-frame clips and tokenized by the Cosmos tokenizer; the "
                                   "tracks by the camera / gaze tokenizers. A clip that a track does not cover is "
                                   "skipped and counted. Nothing shows in OUT until the run is complete; run the same "
                                   "command again to resume a killed run.")
    p.add_argument("--input", required=True, nargs="+", metavar="PATH",
                   help="recording folders, folders of recording folders, or .txt lists of recording folders")
    p.add_argument("--out", required=True, metavar="ROOT", help="output root directory")
    p.add_argument("--dataset", required=True, metavar="NAME", help="dataset name (one folder name)")
    p.add_argument("--video-tokenizer", required=True, metavar="SOURCE",
                   help="the Cosmos tokenizer: a folder with encoder.jit + decoder.jit, or the hub id "
                        "nvidia/Cosmos-0.1-Tokenizer-DV4x8x8 in the Hugging Face cache")
    p.add_argument("--cam-tokenizer", metavar="SOURCE", help="the camera VQ-VAE (needed when recordings have cam.*)")
    p.add_argument("--gaze-tokenizer", metavar="SOURCE", help="the gaze VQ-VAE (needed when recordings have gaze.*)")
    add_basis_option(p)
    add_gaze_frame_options(p)
    p.add_argument("--cam-fps", type=_positive_float, metavar="F", help="the frame rate of cam.npy tracks")
    p.add_argument("--gaze-fps", type=_positive_float, metavar="F", help="the frame rate of gaze.npy tracks")
    p.add_argument("--samples-per-shard", type=positive_int, default=1000, metavar="N",
                   help="samples per tar (a recording's samples fill shards of their own)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace the dataset's shards when the run is complete")
    mode.add_argument("--append", action="store_true", help="add these recordings to the dataset's shards")
    add_device_option(p)

    c = sub.add_parser("cosmos-standin", help="write a tiny stand-in of the Cosmos video tokenizer", epilog=EPILOG,
                       description="Write encoder.jit and decoder.jit of a tiny TorchScript stand-in with the interface "
                                   "of NVIDIA's Cosmos-0.1-Tokenizer-DV4x8x8 (16 frames of 256 x 256 -> 5 x 32 x 32 "
                                   "ids of 64,000): it keeps each 8 x 8 patch's mean colour. The video commands run "
                                   "on it without the real weights; its tokens mean nothing to a released model.")
    c.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    return parser


def _load_codec(args: argparse.Namespace, progress: bool = True) -> WindowCodec:
    """The tokenizer of ``--tokenizer`` with the conventions the options give (the model is imported here, not
    for ``--help``)."""
    from egom2p.tokenizers.codec import WindowCodec
    from egom2p.tokenizers.vqvae import VQVAE

    frame = gaze_frame_from_args(args)  # option mistakes before the model loads
    model = VQVAE.from_pretrained(args.tokenizer, device=args.device, compute_dtype=args.dtype)
    kind = getattr(args, "kind", None)
    if kind is not None and kind != model.kind:
        raise ValueError(f"--kind {kind}: {args.tokenizer} is a {model.kind} tokenizer")
    return WindowCodec(model, basis=getattr(args, "basis", None), frame=frame, batch_size=args.batch_size,
                       progress=progress)


def _shards_written(summary: EncodeSummary | PrepareSummary, done: str) -> int:
    """Print the shard pattern and the summary line, exit 0; a run that left no shard fails (exit 1) with
    ``nothing <done>`` and the summary."""
    if not summary.shards:
        return fail(PROG, f"nothing {done}: {summary.format()}", 1)
    print(summary.pattern())
    print(summary.format())
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    from egom2p.tokenizers.encode import encode_to_shards

    keys = None
    if args.keys:
        try:
            keys = Path(args.keys).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"--keys {args.keys}: not a readable text file ({err})") from None
    codec = _load_codec(args, progress=False)  # the bar is over recordings
    summary = encode_to_shards(codec, args.input, args.out, args.dataset, fps=args.fps, stride=args.stride,
                               samples_per_shard=args.samples_per_shard, overwrite=args.overwrite, append=args.append,
                               progress=True, keys=keys, folder=args.folder)
    if summary.leftovers_removed:
        print(f"{PROG}: removed {summary.leftovers_removed} unfinished temporary shard file(s) of an earlier run",
              file=sys.stderr)
    return _shards_written(summary, "encoded")


def _cmd_decode(args: argparse.Namespace) -> int:
    from egom2p.tokenizers.signal_files import check_output, save_npy
    from egom2p.tokenizers.token_inputs import read_token_input

    check_output(args.out, (".npy",))  # before the model loads
    codec = _load_codec(args)
    source = read_token_input(args.input, codec)
    signals = codec.decode(source.tokens, dataset_axes=True)
    out = Path(args.out)
    save_npy(out, signals[0] if source.single else signals)
    what = "poses" if codec.kind == "cam" else "gaze pixels"
    print(f"{what} {signals.shape[1:] if source.single else signals.shape} -> {out}")
    if source.keys is not None:
        keys = out.with_suffix(".keys.txt")
        text = "\n".join(source.keys) + "\n"
        write_atomic(keys, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        print(f"sample keys -> {keys}")
    return 0


def _cmd_recon(args: argparse.Namespace) -> int:
    from egom2p.tokenizers.roundtrip import round_trip, write_round_trip
    from egom2p.tokenizers.signal_files import check_output, output_suffixes
    from egom2p.tokenizers.signal_metrics import json_ready

    check_output(args.out, output_suffixes(args.input, args.fps))  # before the model loads
    codec = _load_codec(args)
    result = round_trip(codec, args.input, fps=args.fps)
    write_round_trip(result, args.out)
    print(json.dumps(json_ready(result.metrics)))
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from egom2p.tokenizers.signal_files import read_npy
    from egom2p.tokenizers.signal_metrics import json_ready, signal_metrics

    pred = read_npy(args.pred, "prediction file")
    gt = read_npy(args.gt, "ground-truth file")
    metrics = signal_metrics(pred, gt, kind=args.kind, frame=gaze_frame_from_args(args), pred_space=args.pred_space,
                             pred_name=args.pred, gt_name=args.gt)
    print(json.dumps(json_ready(metrics)))
    return 0


def _codec(source: str | None, kind: str, args: argparse.Namespace) -> WindowCodec | None:
    from egom2p.tokenizers.codec import WindowCodec
    from egom2p.tokenizers.vqvae import VQVAE

    if source is None:
        return None
    model = VQVAE.from_pretrained(source, device=args.device)
    if model.kind != kind:
        raise ValueError(f"--{kind}-tokenizer {source}: a {model.kind} tokenizer, not a {kind} one")
    if kind == "cam":
        return WindowCodec(model, basis=args.basis)
    return WindowCodec(model, frame=gaze_frame_from_args(args))


def _cmd_prepare(args: argparse.Namespace) -> int:
    from egom2p.tokenizers.cosmos import CosmosVideoTokenizer
    from egom2p.tokenizers.prepare import find_recordings, prepare_dataset

    recordings = find_recordings(args.input)  # input mistakes before any model loads
    if args.gaze_tokenizer is None and gaze_frame_from_args(args) is not None:
        raise ValueError("the gaze frame options apply with --gaze-tokenizer")
    summary = prepare_dataset(
        recordings, args.out, args.dataset,
        video_tokenizer=CosmosVideoTokenizer.from_pretrained(args.video_tokenizer, device=args.device),
        cam=_codec(args.cam_tokenizer, "cam", args), gaze=_codec(args.gaze_tokenizer, "gaze", args),
        cam_fps=args.cam_fps, gaze_fps=args.gaze_fps, samples_per_shard=args.samples_per_shard,
        overwrite=args.overwrite, append=args.append, progress=True,
        on_resume=lambda n: print(f"{PROG}: resuming: {n} recording(s) of an earlier run are done", file=sys.stderr))
    return _shards_written(summary, "prepared")


def _cmd_cosmos_standin(args: argparse.Namespace) -> int:
    from egom2p.tokenizers.cosmos_standin import write_standin

    folder = write_standin(args.out)
    print(f"Cosmos stand-in (encoder.jit, decoder.jit) -> {folder}")
    return 0


COMMANDS = {"encode": _cmd_encode, "decode": _cmd_decode, "recon": _cmd_recon, "metrics": _cmd_metrics,
            "prepare": _cmd_prepare, "cosmos-standin": _cmd_cosmos_standin}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``egom2p-tokenize`` console script: 0 ok, 1 nothing encoded, 2 a usage or input mistake."""
    args = build_parser().parse_args(argv)

    def command() -> int:
        try:
            return COMMANDS[args.command](args)
        except OSError as exc:  # a full disk, an unreadable store: input/output errors are one line too
            return fail(PROG, exc)

    return run_cli(PROG, command)


if __name__ == "__main__":
    sys.exit(main())
