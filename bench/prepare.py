"""``egom2p-tokenize prepare`` throughput: clips per second from recordings to aligned shards, and where the time goes.

Synthetic recordings (egom2p.tokenizers.synthetic_recording: 30 fps H.264 video with its depth, a 60 Hz camera
track, 10 Hz gaze) are prepared with the scripted Cosmos stand-in and tiny camera / gaze tokenizers, as a user runs
the command (``prepare_dataset``). Each stage is timed inside the same run by wrapping the functions the command
calls: decoding the video and picking its 8 fps frames (PyAV, one stream), centre crop + Lanczos resize (Pillow),
the video tokenizer (the stand-in here: a real Cosmos encoder costs far more, see ``bench/cosmos.py``), the camera /
gaze windows and shard writing (the rest). The in-run baseline is the decoding alone: the floor of any pipeline that reads the video.

usage (from the repository root):
  OMP_NUM_THREADS=2 python bench/prepare.py [--recordings 4] [--seconds 30] [--size 480 640]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import torch
from egom2p.tokenizers import prepare, video_io
from egom2p.tokenizers.codec import WindowCodec
from egom2p.tokenizers.cosmos import CosmosVideoTokenizer
from egom2p.tokenizers.cosmos_standin import write_standin
from egom2p.tokenizers.gaze import gaze_frame
from egom2p.tokenizers.synthetic_recording import write_synthetic_recording
from egom2p.tokenizers.vqvae import VQVAE


def timed(seconds: dict[str, float], name: str, function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start
    return wrapper


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.recordings):
            write_synthetic_recording(root / "recs" / f"R{i:02d}", args.seconds, seed=i, size=tuple(args.size))
        torch.manual_seed(0)
        cam = WindowCodec(VQVAE.from_preset("cam-tiny"))
        gaze = WindowCodec(VQVAE.from_preset("gaze-tiny"), frame=gaze_frame("holoassist"))
        tokenizer = CosmosVideoTokenizer.from_pretrained(write_standin(root / "cosmos"))
        seconds: dict[str, float] = defaultdict(float)
        # The video is decoded, resampled and resized in one stream: its resizes are timed apart and taken out.
        stream, rgb_resize, depth_resize = "read_video_resampled", "rgb resize", "depth resize"
        patches = [
            mock.patch.object(prepare, "read_video_resampled", timed(seconds, stream, video_io.read_video_resampled)),
            mock.patch.object(video_io, "square_resize", timed(seconds, rgb_resize, video_io.square_resize)),
            mock.patch.object(prepare, "square_resize", timed(seconds, depth_resize, video_io.square_resize)),
            mock.patch.object(tokenizer, "encode", timed(seconds, "video tokenizer (stand-in)", tokenizer.encode)),
        ]
        for patch in patches:
            patch.start()
        start = time.perf_counter()
        summary = prepare.prepare_dataset(prepare.find_recordings([root / "recs"]), root / "out", "bench",
                                          video_tokenizer=tokenizer, cam=cam, gaze=gaze, gaze_fps=10)
        total = time.perf_counter() - start
        for patch in patches:
            patch.stop()
    clips = summary.samples
    print(f"prepare: {args.recordings} recordings x {args.seconds:g} s of {args.size[1]}x{args.size[0]} video at "
          f"30 fps (rgb + depth + cam + gaze), {torch.get_num_threads()} threads")
    stages = {"decode video and pick the 8 fps frames (PyAV)": seconds.pop(stream) - seconds[rgb_resize],
              "centre crop + Lanczos 256 (Pillow; rgb and depth)": seconds.pop(rgb_resize) + seconds.pop(depth_resize),
              **seconds}
    print("| stage | seconds | share |\n|---|---|---|")
    for name, value in stages.items():
        print(f"| {name} | {value:.2f} | {value / total:.0%} |")
    rest = total - sum(stages.values())
    print(f"| tracks, windows, shard writing (the rest) | {rest:.2f} | {rest / total:.0%} |")
    print(f"| **total** | **{total:.2f}** | {clips} clips: **{clips / total:.1f} clips/s** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
