"""Video clip conventions of EgoM2P's RGB and depth tokens (NVIDIA Cosmos-0.1-Tokenizer-DV4x8x8).

A clip is 2 s of video at 8 fps: 16 frames of 256 x 256 RGB, uint8, layout (T, H, W, 3). The Cosmos discrete video
tokenizer turns it into (5, 32, 32) ids of a 64,000-entry FSQ codebook (levels 8 x 8 x 8 x 5 x 5 x 5): 8 x 8 pixels
per id, and 1 + 4 k frames per 1 + k latent frames (the first frame alone, then 4 frames per latent frame).

The processing around the tokenizer, exactly as the original runs it:

- in: frames / 255 (computed in float64) * 2 - 1, cast to the model's dtype (bf16 on a GPU, fp32 on the CPU),
  layout (B, 3, T, H, W);
- padding: height and width zero-padded to a multiple of 16 (half before, the rest after), then the frame count
  padded to 1 + a multiple of 8 by repeating edge frames (half before, the rest after: 16 frames get one copy of
  the last frame at the end, 17 frames);
- out: the decoder's (B, 3, T', H', W') in [-1, 1] -> (x + 1) / 2 clamped to [0, 1] -> * 255 + 0.5 truncated to
  uint8 (rounding), the padding cropped away.

Depth clips go through the same tokenizer as grey video: each clip is min-max normalised to [0, 1], scaled to
uint8 and replicated to 3 channels; decoded depth is read back as the mean of the 3 channels, in [0, 1], or in the
clip's own units when its (min, max) is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CLIP_FRAMES",
    "CLIP_SECONDS",
    "FRAME_SIZE",
    "SPATIAL_ALIGN",
    "TEMPORAL_ALIGN",
    "TOKEN_SHAPE",
    "VIDEO_FPS",
    "VIDEO_SUFFIXES",
    "VIDEO_VOCAB_SIZE",
    "ClipPadding",
    "check_frames",
    "clip_padding",
    "depth_from_frames",
    "depth_to_frames",
    "frames_from_tensor",
    "frames_to_tensor",
    "latent_frames",
    "pad_clips",
]

VIDEO_FPS = 8
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")  # the containers read as video (any FFmpeg reads)
CLIP_SECONDS = 2
CLIP_FRAMES = VIDEO_FPS * CLIP_SECONDS  # 16
FRAME_SIZE = 256
TOKEN_SHAPE = (5, 32, 32)  # latent frames, rows, columns of one clip
VIDEO_VOCAB_SIZE = 64_000  # 8 * 8 * 8 * 5 * 5 * 5
SPATIAL_ALIGN = 16
TEMPORAL_ALIGN = 8  # frames per latent step after the first: inputs have 1 + 8 k frames
_UINT8_MAX = 255.0


def latent_frames(num_frames: int) -> int:
    """How many latent frames Cosmos DV4x8x8 gives for ``num_frames`` input frames (after padding): 16 -> 5."""
    padded = num_frames + (-(num_frames - 1)) % TEMPORAL_ALIGN
    return 1 + (padded - 1) // 4


def check_frames(frames: np.ndarray, where: str = "frames") -> np.ndarray:
    """``frames`` as a uint8 (B, T, H, W, 3) batch; a single clip (T, H, W, 3) gets a batch axis.

    Raises ValueError naming ``where`` for another dtype, rank or channel count.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"{where}: expected uint8 video frames (0-255), got dtype {frames.dtype}")
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] != 3 or min(frames.shape[1:4]) < 1:
        raise ValueError(f"{where}: expected RGB frames of shape (T, H, W, 3) or (B, T, H, W, 3), "
                         f"got {tuple(frames.shape)}")
    return frames


@dataclass(frozen=True)
class ClipPadding:
    """How a batch was padded: frames, rows and columns added before and after. ``crop`` undoes it."""

    frames: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """The un-padded part of (B, T, H, W, C) ``frames`` (decoder output of the padded batch)."""
        (f0, f1), (r0, r1), (c0, c1) = self.frames, self.rows, self.cols
        t, h, w = frames.shape[1:4]
        return frames[:, f0:t - f1, r0:h - r1, c0:w - c1]


def _split(total: int) -> tuple[int, int]:
    return total >> 1, total - (total >> 1)


def clip_padding(num_frames: int, height: int, width: int) -> ClipPadding:
    """The padding that a clip of this shape gets before the tokenizer (module docstring)."""
    return ClipPadding(frames=_split((-(num_frames - 1)) % TEMPORAL_ALIGN), rows=_split((-height) % SPATIAL_ALIGN),
                       cols=_split((-width) % SPATIAL_ALIGN))


def pad_clips(frames: np.ndarray) -> tuple[np.ndarray, ClipPadding]:
    """Pad (B, T, H, W, 3) frames as the tokenizer needs and say how, to crop the decoded clips back."""
    padding = clip_padding(*frames.shape[1:4])
    out = np.pad(frames, ((0, 0), (0, 0), padding.rows, padding.cols, (0, 0)), mode="constant")
    out = np.pad(out, ((0, 0), padding.frames, (0, 0), (0, 0), (0, 0)), mode="edge")
    return out, padding


def frames_to_tensor(frames: np.ndarray, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> (B, 3, T, H, W) in [-1, 1] of ``dtype`` (scaled in float64, then cast)."""
    scaled = frames.transpose(0, 4, 1, 2, 3) / _UINT8_MAX * 2.0 - 1.0
    return torch.from_numpy(np.ascontiguousarray(scaled)).to(dtype).to(device)


def frames_from_tensor(video: torch.Tensor) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] (any float dtype) -> uint8 (B, T, H, W, 3), rounded, out-of-range clamped."""
    unit = ((video.float() + 1.0) / 2.0).clamp(0, 1).cpu().numpy()
    return (unit.transpose(0, 2, 3, 4, 1) * _UINT8_MAX + 0.5).astype(np.uint8)


def depth_to_frames(depth: np.ndarray, where: str = "depth") -> tuple[np.ndarray, tuple[float, float]]:
    """One depth clip (T, H, W), any units -> grey uint8 frames (T, H, W, 3) and the clip's (min, max).

    Min-max normalised per clip (a constant clip becomes 0). NaN or infinite depth is refused: mark missing
    depth before tokenising, the tokenizer has no "unknown" value.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 3 or min(depth.shape) < 1:
        raise ValueError(f"{where}: expected a depth clip of shape (T, H, W), got {tuple(depth.shape)}")
    if not np.isfinite(depth).all():
        raise ValueError(f"{where}: {int((~np.isfinite(depth)).sum())} depth values are NaN or infinite")
    low, high = float(depth.min()), float(depth.max())
    unit = (depth - low) / (high - low) if high > low else np.zeros_like(depth)
    grey = (unit * _UINT8_MAX + 0.5).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1), (low, high)


def depth_from_frames(frames: np.ndarray, depth_range: tuple[float, float] | None = None) -> np.ndarray:
    """Decoded grey frames (..., H, W, 3) uint8 -> depth (..., H, W) float32: the channel mean in [0, 1], mapped
    to ``depth_range`` = the clip's (min, max) when it is known."""
    unit = np.asarray(frames, dtype=np.float32).mean(axis=-1) / _UINT8_MAX
    if depth_range is None:
        return unit
    low, high = depth_range
    return (low + unit * (high - low)).astype(np.float32)
