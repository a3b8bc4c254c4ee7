"""Reading and writing video for the Cosmos tokenizer (the ``[video]`` extra: PyAV, whose wheels bundle FFmpeg,
and Pillow for the Lanczos resize).

From a recording to clips, as the original prepared its data: frames resampled to 8 fps (for each output time the
nearest source frame, like FFmpeg's ``fps=8`` filter), the centred square of the short side cropped, resized to
256 x 256 with Lanczos, and cut into 2 s clips of 16 frames. Predictions are written as H.264 mp4 at 8 fps.
Depth comes as a video, an ``.npy`` stack (T, H, W) or a folder of (16-bit) PNG frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from egom2p.core.atomic import write_atomic
from egom2p.core.errors import MissingExtraError

from .video import CLIP_FRAMES, FRAME_SIZE, VIDEO_FPS

__all__ = ["ResampledVideo", "Video", "clip_starts", "cut_clips", "read_depth", "read_video", "read_video_resampled",
           "resample", "resample_indices", "square_resize", "write_video"]

_INSTALL_HINT = "pip install 'egom2p-tokenizers[video]'"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise MissingExtraError(f"reading and writing video needs PyAV and Pillow: {_INSTALL_HINT}") from None


@dataclass
class Video:
    """Decoded frames (T, H, W, 3) uint8 and their presentation times in seconds (T,), increasing."""

    frames: np.ndarray
    times: np.ndarray

    @property
    def fps(self) -> float:
        """The mean frame rate (frames over their time span)."""
        span = float(self.times[-1] - self.times[0]) if len(self.times) > 1 else 0.0
        return (len(self.times) - 1) / span if span > 0 else 0.0


def _decoded_frames(path: str | os.PathLike) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(index, time in seconds, RGB frame)`` of every frame of the first video stream of ``path``, in the order
    FFmpeg outputs them. Raises ValueError naming the file when it is not a readable video, has no video stream, a
    frame without a timestamp or no frame; a truncated file gives the frames before the damage only if FFmpeg can
    decode them, else ValueError."""
    av = _require("av")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: has no video stream")
            for count, frame in enumerate(container.decode(container.streams.video[0]), start=1):
                if frame.pts is None:
                    raise ValueError(f"{path}: frame {count - 1} has no timestamp")
                yield count - 1, float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as err:
        raise ValueError(f"{path}: not a readable video ({type(err).__name__}: {err})") from None
    if not count:
        raise ValueError(f"{path}: holds no decodable video frame")


def read_video(path: str | os.PathLike) -> Video:
    """Every frame of the first video stream of ``path`` as RGB, with its time in seconds, in presentation order
    (errors as :func:`_decoded_frames`)."""
    _, times, frames = zip(*_decoded_frames(path))
    times = np.asarray(times)
    order = np.argsort(times, kind="stable")  # decode order can differ from presentation order
    return Video(np.stack(frames)[order], times[order])


def resample_indices(times: np.ndarray, fps: float = VIDEO_FPS) -> tuple[np.ndarray, np.ndarray]:
    """Which source frame (by index into increasing ``times``, seconds) each output frame at ``fps`` shows, and the
    output times: output time k / fps after the first frame takes the nearest source frame, for every output time
    within the source's span (its last frame lasting one frame: 2 s at 30 fps give 16 frames at 8 fps)."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 1:
        return np.zeros(1, dtype=np.int64), times.copy()
    span = float(times[-1] - times[0]) + float(np.median(np.diff(times)))
    count = max(1, int(np.floor(span * fps + 1e-6)))
    out_times = times[0] + np.arange(count) / fps
    right = np.clip(np.searchsorted(times, out_times), 1, len(times) - 1)
    nearer_left = (out_times - times[right - 1]) <= (times[right] - out_times)
    return np.where(nearer_left, right - 1, right).astype(np.int64), out_times


def resample(video: Video, fps: float = VIDEO_FPS) -> Video:
    """The video at ``fps`` (see :func:`resample_indices`), like FFmpeg's ``fps`` filter."""
    index, times = resample_indices(video.times, fps)
    return Video(video.frames[index], times)


@dataclass
class ResampledVideo:
    """A video read at a new rate: ``frames`` (N, size, size, 3) uint8, each the ``source_index`` -th decoded frame
    (N,), of ``source_frames`` in all; ``times`` (N,) the output times in seconds."""

    frames: np.ndarray
    source_index: np.ndarray
    source_frames: int
    times: np.ndarray


def read_video_resampled(path: str | os.PathLike, fps: float = VIDEO_FPS, size: int = FRAME_SIZE) -> ResampledVideo:
    """``square_resize(resample(read_video(path), fps).frames, size)`` without holding the whole video: each
    decoded frame is kept only until the next one arrives, and each chosen frame is resized at once, so memory
    grows with the output (256 x 256 at 8 fps), not with the source. The same frames and indices as that
    composition (tested). Raises ValueError naming the file as :func:`read_video` does, and for timestamps that
    do not increase."""
    out, chosen, times = [], [], []
    previous: tuple[int, float, np.ndarray] | None = None
    wanted = 0  # the next output frame; its time is times[0] + wanted / fps

    def emit(index: int, image: np.ndarray) -> None:
        out.append(square_resize(image[None], size)[0])
        chosen.append(index)

    for index, time, image in _decoded_frames(path):
        if times and time <= times[-1]:
            raise ValueError(f"{path}: frame {index} at {time:.4f} s does not follow {times[-1]:.4f} s")
        times.append(time)
        while times[0] + wanted / fps <= time:  # this output time lies between the previous frame and this one
            target = times[0] + wanted / fps
            if previous is not None and target - previous[1] <= time - target:
                emit(previous[0], previous[2])
            else:
                emit(index, image)
            wanted += 1
        previous = (index, time, image)
    _, out_times = resample_indices(np.asarray(times), fps)  # the output frames that fit the source's span
    while wanted < len(out_times):  # output times after the last frame (it lasts one frame): the last frame
        emit(previous[0], previous[2])
        wanted += 1
    count = len(out_times)  # an output time before the last frame but past the span's last whole output frame: cut
    return ResampledVideo(np.stack(out[:count]), np.asarray(chosen[:count], dtype=np.int64), len(times), out_times)


def square_resize(frames: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """(T, H, W, C) -> (T, size, size, C): the centred square of the short side, resized with Lanczos.

    uint8 frames stay uint8; float frames (depth) are resized in float32.
    """
    image_module = _require("PIL.Image")
    image_lib = image_module.Image
    t, h, w = frames.shape[:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frames[:, top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    out = []
    for frame in square:
        if frame.dtype == np.uint8:
            out.append(np.asarray(image_lib.fromarray(frame).resize((size, size), image_lib.Resampling.LANCZOS)))
        else:  # one float channel at a time ("F" mode)
            channels = frame if frame.ndim == 3 else frame[..., None]
            resized = [np.asarray(image_lib.fromarray(channels[..., c].astype(np.float32), mode="F")
                                  .resize((size, size), image_lib.Resampling.LANCZOS)) for c in range(channels.shape[-1])]
            out.append(np.stack(resized, axis=-1) if frame.ndim == 3 else resized[0])
    return np.stack(out)


def clip_starts(num_frames: int, clip_frames: int = CLIP_FRAMES, stride: int = CLIP_FRAMES) -> list[int]:
    """The first frame of every whole clip of ``clip_frames`` frames, ``stride`` frames apart."""
    return list(range(0, num_frames - clip_frames + 1, stride))


def cut_clips(frames: np.ndarray, clip_frames: int = CLIP_FRAMES, stride: int = CLIP_FRAMES) -> np.ndarray:
    """(T, ...) -> (N, clip_frames, ...): every whole clip, ``stride`` frames apart (a shorter tail is dropped)."""
    starts = clip_starts(len(frames), clip_frames, stride)
    if not starts:
        return np.empty((0, clip_frames, *frames.shape[1:]), frames.dtype)
    return np.stack([frames[s:s + clip_frames] for s in starts])


def read_depth(path: str | os.PathLike) -> np.ndarray:
    """A depth recording (T, H, W): an ``.npy`` stack (memory-mapped in its own dtype: only the frames a caller
    indexes are read), a folder of PNG frames (8 or 16 bit, sorted by name) or a video (the mean of its channels),
    both as float32. Raises ValueError naming the file for anything else."""
    path = Path(path)
    if path.is_dir():
        names = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        if not names:
            raise ValueError(f"{path}: a depth folder must hold PNG frames; found none")
        image_lib = _require("PIL.Image").Image
        frames = []
        for name in names:
            with image_lib.open(name) as image:
                frame = np.asarray(image)
            if frame.ndim == 3:
                frame = frame[..., :3].mean(axis=-1)
            frames.append(frame.astype(np.float32))
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise ValueError(f"{path}: the depth frames differ in size: {sorted(shapes)}")
        return np.stack(frames)
    if path.suffix == ".npy":
        try:
            depth = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:  # an object array, or not an .npy file
            raise ValueError(f"{path}: not a numeric .npy depth stack ({err})") from None
        if depth.ndim != 3 or not np.issubdtype(depth.dtype, np.number):
            raise ValueError(f"{path}: expected a numeric depth stack of shape (T, H, W), got "
                             f"{depth.dtype} {tuple(depth.shape)}")
        return depth
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such depth file or folder")
    return read_video(path).frames.astype(np.float32).mean(axis=-1)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = VIDEO_FPS) -> Path:
    """Write uint8 frames (T, H, W, 3) (even H and W) as H.264 mp4 at ``fps``, atomically; returns the path."""
    av = _require("av")
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: expected uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    path = Path(path)

    def encode(tmp: str) -> None:  # the temporary name has no .mp4 suffix: the format is named
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "17"}  # visually lossless: the decoded clips are results to look at
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    write_atomic(path, encode)
    return path
