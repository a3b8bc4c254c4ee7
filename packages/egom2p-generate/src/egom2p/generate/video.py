"""Video in and out of ``egom2p-generate``: ``--video-tokenizer SOURCE`` (the Cosmos tokenizer of
``egom2p-tokenizers[video]``; ``pip install 'egom2p-generate[video]'``) turns a ``--cond tok_rgb=clip.mp4`` (or ``tok_depth=depth.mp4``) into tokens, and
``--decode`` writes the generated RGB or depth tokens as ``<out stem>_<target>.mp4``.

A video condition is read as ``egom2p-tokenize prepare`` reads a recording: 8 fps, the centred square of the short
side at 256, every whole 2 s clip one sample of the batch. A depth video is read as grey (the channel mean) and
normalised per clip, as depth is tokenized. Decoded clips are written one after the other at 8 fps; decoded depth
is grey (each clip in [0, 255] of its own range: the range of a generated clip is unknown).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from egom2p.core.cli import one_line
from egom2p.core.modalities import ModalitySpec

from .signals import require_tokenizers

__all__ = ["VIDEO_MODALITIES", "VideoCodec", "VideoScorer", "add_video_options", "save_frames_figure", "video_file"]

VIDEO_MODALITIES = ("tok_rgb", "tok_depth")


def add_video_options(parser: argparse.ArgumentParser, decode: bool = True) -> None:
    """``--video-tokenizer SOURCE`` and (``decode``) ``--decode``."""
    group = parser.add_argument_group("video (pip install 'egom2p-generate[video]')")
    what = ("--cond tok_rgb / tok_depth may then be a video, every whole 2 s clip one sample" if decode else
            "rgb2depth then reports AbsRel and delta < 1.25 of the decoded depth, depth2rgb PSNR and SSIM of the "
            "decoded frames")
    group.add_argument("--video-tokenizer", metavar="SOURCE",
                       help="the Cosmos tokenizer (a folder with encoder.jit + decoder.jit, or the hub id "
                            f"nvidia/Cosmos-0.1-Tokenizer-DV4x8x8 in the Hugging Face cache): {what}")
    if decode:
        group.add_argument("--decode", action="store_true",
                           help="with --video-tokenizer: write generated tok_rgb / tok_depth as OUT-STEM_<target>.mp4")
        group.add_argument("--save-figures", type=Path, metavar="DIR",
                           help="with --decode: DIR/OUT-STEM_<target>.png, frames 0, 5, 10 and 15 of the first clip of "
                                "each video condition above those of the prediction")


def video_file(out: Path, modality: str) -> Path:
    """Where file mode writes ``modality``'s decoded clips: ``<out stem>_<modality>.mp4`` beside ``out``."""
    return out.with_name(f"{out.name.removesuffix('.npz')}_{modality}.mp4")


class VideoCodec:
    """The Cosmos tokenizer, checked against a checkpoint's video modalities."""

    def __init__(self, tokenizer: Any, source: str) -> None:
        self.tokenizer, self.source = tokenizer, source
        self.token_shape = require_tokenizers("video").TOKEN_SHAPE  # (5, 32, 32): one clip's ids

    @classmethod
    def load(cls, source: str, modalities: Mapping[str, ModalitySpec], device: Any = None) -> VideoCodec:
        """Open the tokenizer; ValueError naming the modality when the checkpoint's video tokens are not
        Cosmos DV4x8x8's (64,000 ids on a 5 x 32 x 32 grid)."""
        video = require_tokenizers("video")
        for name in VIDEO_MODALITIES:
            spec = modalities.get(name)
            if spec is not None and (spec.vocab_size != video.VIDEO_VOCAB_SIZE or tuple(spec.shape) != video.TOKEN_SHAPE):
                raise ValueError(f"--video-tokenizer: the checkpoint's {name} has {spec.vocab_size} ids on a "
                                 f"{tuple(spec.shape)} grid; the Cosmos tokenizer makes {video.VIDEO_VOCAB_SIZE} on "
                                 f"{video.TOKEN_SHAPE}")
        cosmos = require_tokenizers("cosmos")
        try:
            tokenizer = cosmos.CosmosVideoTokenizer.from_pretrained(source, device=device or "cpu")
        except (ValueError, FileNotFoundError) as err:
            error = FileNotFoundError if isinstance(err, FileNotFoundError) else ValueError
            raise error(f"--video-tokenizer: {one_line(err)}") from None
        return cls(tokenizer, source)

    @staticmethod
    def is_video(path: str | Path) -> bool:
        """Whether a ``--cond`` file is a video (by its suffix, egom2p.tokenizers.video's list) or a token file."""
        return Path(path).suffix.lower() in require_tokenizers("video").VIDEO_SUFFIXES

    def condition(self, modality: str, path: str | Path) -> np.ndarray:
        """Token ids (B, 5, 32, 32) of every whole 2 s clip of the video at ``path``."""
        if modality not in VIDEO_MODALITIES:
            raise ValueError(f"--cond {modality}={path}: a video conditions tok_rgb or tok_depth, not {modality}")
        io = require_tokenizers("video_io")
        video_mod = require_tokenizers("video")
        if modality == "tok_depth":  # grey depth video: its channel mean, normalised per clip like tokenized depth
            recording = io.resample(io.read_video(path))
            clips = io.cut_clips(io.square_resize(recording.frames.astype(np.float32).mean(axis=-1)))
            frames_per_clip = [video_mod.depth_to_frames(clip, str(path))[0] for clip in clips]
            clips = np.stack(frames_per_clip) if frames_per_clip else clips
        else:  # streamed, as egom2p-tokenize prepare reads a recording
            recording = io.read_video_resampled(path)
            clips = io.cut_clips(recording.frames)
        if len(clips) == 0:
            raise ValueError(f"--cond {modality}={path}: {len(recording.frames)} frames at 8 fps, shorter than one "
                             f"2 s clip of {video_mod.CLIP_FRAMES}")
        return self.tokenizer.encode(clips)

    def frames(self, modality: str, tokens: np.ndarray) -> np.ndarray:
        """Decoded clips (B, 16, 256, 256, 3) uint8 of ids (B, 5, 32, 32) or (5, 32, 32); depth as grey."""
        frames = self.tokenizer.decode(np.asarray(tokens).reshape((-1, *self.token_shape)))
        if modality == "tok_depth":  # grey, as depth is tokenized: the channel mean on all three channels
            grey = np.rint(frames.astype(np.float32).mean(axis=-1)).astype(np.uint8)
            frames = np.repeat(grey[..., None], 3, axis=-1)
        return frames

    def mp4_bytes(self, modality: str, tokens: np.ndarray) -> bytes:
        """The mp4 file (bytes) of one clip's decoded frames, for a shard member."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return self.write(modality, tokens, Path(tmp) / "clip.mp4").read_bytes()

    def write(self, modality: str, tokens: np.ndarray, path: Path) -> Path:
        """Decode ids (B, 5, 32, 32) or (5, 32, 32) and write the clips one after the other as an 8 fps mp4."""
        frames = self.frames(modality, tokens)
        return require_tokenizers("video_io").write_video(path, frames.reshape((-1, *frames.shape[-3:])))


def save_frames_figure(path: Path, rows: Mapping[str, np.ndarray], frames: tuple[int, ...] = (0, 5, 10, 15),
                       size: int = 128) -> Path:
    """A PNG of one row per clip (label -> uint8 frames (T, H, W, 3)), ``frames`` side by side at ``size`` pixels,
    the label written above each row (Pillow, of the [video] extra); written atomically, returns ``path``."""
    from egom2p.core.atomic import write_atomic
    from PIL import Image, ImageDraw

    label_height, gap = 14, 4
    width = len(frames) * (size + gap) - gap
    sheet = Image.new("RGB", (width, len(rows) * (size + label_height + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, clip) in enumerate(rows.items()):
        top = r * (size + label_height + gap)
        draw.text((2, top), label, fill="black")
        for c, index in enumerate(frames):
            tile = Image.fromarray(clip[min(index, len(clip) - 1)]).resize((size, size), Image.Resampling.LANCZOS)
            sheet.paste(tile, (c * (size + gap), top + label_height))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return path


class VideoScorer:
    """An ``on_batch`` callback of ``egom2p-eval``: decodes the generated and the true clips of every batch and keeps
    each sample's metrics (:mod:`egom2p.tokenizers.video_metrics`): relative depth ``abs_rel`` and ``delta_1_25``
    for ``tok_depth``, ``psnr_db`` and ``ssim`` for ``tok_rgb``. As for the signals, the truth is the held-out
    tokens decoded by the same tokenizer."""

    def __init__(self, codec: VideoCodec, modality: str, task: str) -> None:
        self.codec, self.modality, self.task = codec, modality, task
        self.metrics = require_tokenizers("video_metrics")
        self.per_sample: list[dict[str, float]] = []

    def __call__(self, keys: list[str], truth: np.ndarray, generated: np.ndarray) -> None:
        ids = np.concatenate([generated, truth]).reshape((-1, *self.codec.token_shape))  # the rows come flat
        frames = self.codec.tokenizer.decode(ids)
        for pred, true in zip(frames[: len(generated)], frames[len(generated):]):
            if self.modality == "tok_depth":
                unit = lambda clip: clip.astype(np.float64).mean(axis=-1) / 255.0  # noqa: E731
                self.per_sample.append(self.metrics.depth_metrics(unit(pred), unit(true)))
            else:
                self.per_sample.append({"psnr_db": self.metrics.psnr(pred, true), "ssim": self.metrics.ssim(pred, true)})

    def summary(self) -> dict[str, Any]:
        """``{gt, tokenizer, n_samples, mean, median}``, as the signal metrics."""
        from .signal_eval import GT_SOURCE, aggregate_metrics

        return {"gt": GT_SOURCE, "tokenizer": f"{self.modality}={self.codec.source}",
                "n_samples": len(self.per_sample), **aggregate_metrics(self.per_sample)}
