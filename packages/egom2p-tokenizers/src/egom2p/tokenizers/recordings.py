"""Input recordings of ``egom2p-tokenize`` cut into keyed 2 s windows, with what was skipped and why.

An input is a track (resampled to 30 fps and cut every ``stride`` frames by :mod:`egom2p.tokenizers.tracks`) or an
array of windows (see :mod:`egom2p.tokenizers.signal_files`; window ``i`` is taken to start at frame
``i * stride`` of its recording). Each window gets the key of :func:`egom2p.tokenizers.keys.window_key`.

Skipped, and counted by reason: camera windows with a missing pose, gaze windows without a single gaze point, and
recordings shorter than one window. Anything else wrong with an input (a non-rigid pose, a bad shape, unsorted
times) is an error naming the file.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from egom2p.tokenizers.camera import check_poses
from egom2p.tokenizers.keys import recording_stem, window_key
from egom2p.tokenizers.signal_files import is_window_file, read_track, read_windows
from egom2p.tokenizers.tracks import (
    TRACK_SUFFIXES,
    WINDOW_LENGTH,
    CameraTrack,
    GazeTrack,
    camera_windows,
    gaze_windows,
    resample_camera,
    resample_gaze,
)

__all__ = ["SKIP_REASONS", "TOO_SHORT", "RecordingWindows", "counted", "describe_skipped", "input_files",
           "read_recording"]

# Why windows are skipped, per kind (the keys of RecordingWindows.skipped).
SKIP_REASONS = {"cam": "window with missing poses", "gaze": "window without any gaze point"}
TOO_SHORT = "recording shorter than one window"


def counted(count: int, phrase: str) -> str:
    """``3 windows with missing poses`` from ``window with missing poses`` (the first word is the noun)."""
    head, _, rest = phrase.partition(" ")
    return f"{count} {head if count == 1 else head + 's'}{' ' + rest if rest else ''}"


def describe_skipped(skipped: Counter[str]) -> str:
    """``2 windows with missing poses, 1 recording shorter than one window``, or ``none``."""
    return ", ".join(counted(n, reason) for reason, n in sorted(skipped.items()) if n) or "none"


@dataclass(eq=False)
class RecordingWindows:
    """The windows of one input file: ``windows`` (W, frames, ...) float64 starting at 30 fps frames ``starts``.

    ``track``: the 30 fps track the windows were cut from (None for a window array). For a window array: ``rows``,
    each window's row in the file, ``file_windows``, the rows of the file (kept or skipped), and ``single``, the file
    held one window without a batch dimension. ``skipped``: reason -> count.
    """

    path: Path
    stem: str
    windows: np.ndarray
    starts: np.ndarray
    track: CameraTrack | GazeTrack | None = None
    rows: np.ndarray | None = None
    file_windows: int | None = None
    single: bool = False
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def keys(self) -> list[str]:
        """The sample key of each window."""
        return [window_key(self.stem, int(start)) for start in self.starts]


def input_files(paths: list[str | os.PathLike]) -> list[Path]:
    """The files of ``paths`` in the order given, a folder standing for its track files sorted by name.

    Raises ``FileNotFoundError`` for a missing path or a folder without track files, and ``ValueError`` when a file
    is given twice or two files share a recording stem (their windows would share keys).
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TRACK_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"--input {path}: no track or window files ({', '.join(TRACK_SUFFIXES)})")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"--input {path}: no such file or folder")
    stems: dict[str, Path] = {}
    for file in files:
        stem = recording_stem(file)
        if stem in stems:
            if stems[stem].resolve() == file.resolve():
                raise ValueError(f"--input {file} is given twice")
            raise ValueError(f"--input {file} and {stems[stem]} share the recording stem {stem!r}, so their windows "
                             "would share sample keys; rename one")
        stems[stem] = file
    return files


def _window_array(path: Path, kind: str, stride: int, num_frames: int) -> RecordingWindows:
    windows, single = read_windows(path, kind, num_frames)
    frames = np.arange(len(windows), dtype=np.int64) * stride
    if kind == "cam":
        missing = ~np.isfinite(windows).all(axis=(1, 2, 3))
        # Missing windows stand in as identities so an error names the window's index in the file.
        check_poses(np.where(missing[:, None, None, None], np.eye(4), windows), where=str(path))
    else:
        infinite = np.isinf(windows).any(axis=-1)
        if infinite.any():
            index = tuple(int(i) for i in np.argwhere(infinite)[0])
            raise ValueError(f"{path}: gaze point {index} is infinite (use NaN for a missing point)")
        missing = np.isnan(windows).any(axis=-1).all(axis=-1)
    skipped = Counter({SKIP_REASONS[kind]: int(missing.sum())}) if missing.any() else Counter()
    return RecordingWindows(path, recording_stem(path), windows[~missing], frames[~missing],
                            rows=np.flatnonzero(~missing), file_windows=len(windows), single=single, skipped=skipped)


def read_recording(path: str | os.PathLike, kind: str, *, fps: float | None = None, stride: int = WINDOW_LENGTH,
                   num_frames: int = WINDOW_LENGTH) -> RecordingWindows:
    """The keyed windows of one input file of ``kind`` (``"cam"`` or ``"gaze"``).

    ``fps``: the frame rate of ``.npy`` tracks (an ``.npy`` without it is an array of windows); ``stride``: frames
    between window starts; ``num_frames``: the window length (the tokenizer's).
    """
    path = Path(path)
    if is_window_file(path, fps):
        return _window_array(path, kind, stride, num_frames)
    track = read_track(path, kind, fps)
    resampled = resample_camera(track) if kind == "cam" else resample_gaze(track)
    cut = camera_windows if kind == "cam" else gaze_windows
    windows, starts, skipped = cut(resampled, length=num_frames, stride=stride)
    reasons = Counter({SKIP_REASONS[kind]: skipped}) if skipped else Counter()
    if len(resampled.times) < num_frames:
        reasons[TOO_SHORT] += 1
    return RecordingWindows(path, recording_stem(path), windows, starts.frames, track=resampled, skipped=reasons)
