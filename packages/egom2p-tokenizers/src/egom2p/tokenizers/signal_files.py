"""The files ``egom2p-tokenize`` reads and writes: arrays of windows, token files, and tracks written back.

What a path holds is decided by its suffix and by ``fps``:

- ``.npy`` without ``fps``: an array of windows, poses ``(N, 60, 4, 4)`` / gaze pixels ``(N, 60, 2)``, or one
  window ``(60, 4, 4)`` / ``(60, 2)``;
- ``.npy`` with ``fps``, ``.npz``, ``.txt`` / ``.tum``: a track (:mod:`egom2p.tokenizers.tracks` reads it);
- token files: ``.npy`` / ``.npz`` (``arr_0``) of integer ids ``(N, tokens)`` or ``(tokens,)``
  (:func:`egom2p.core.shards.decode_tokens` reads them).

Every write is atomic (:func:`egom2p.core.atomic.write_atomic`): a reader sees the old file or the new one.
Nothing is unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from egom2p.core.atomic import write_atomic
from egom2p.core.shards import decode_tokens
from egom2p.tokenizers.tracks import (
    TEXT_SUFFIXES,
    TRACK_SUFFIXES,
    CameraTrack,
    GazeTrack,
    existing_file,
    load_npy,
    read_camera_track,
    read_gaze_track,
    write_camera_track_tum,
)

__all__ = [
    "SIGNAL_TAILS",
    "check_output",
    "is_window_file",
    "output_suffixes",
    "read_npy",
    "read_token_file",
    "read_track",
    "read_windows",
    "save_npy",
    "write_track",
]

# The trailing shape of one frame of each kind of signal.
SIGNAL_TAILS = {"cam": (4, 4), "gaze": (2,)}
_WHAT = {"cam": "camera poses", "gaze": "gaze pixels"}


def read_npy(path: str | os.PathLike, what: str = "array file") -> np.ndarray:
    """The array of an ``.npy`` file (never unpickled); one-line errors name the file."""
    file = existing_file(path, what)
    if file.suffix.lower() != ".npy":
        raise ValueError(f"{file}: expected a .npy {what}, got {file.suffix or 'no suffix'!r}")
    return load_npy(file)


def read_token_file(path: str | os.PathLike) -> np.ndarray:
    """The int64 token ids of an ``.npy`` or ``.npz`` (``arr_0``) token file, in its stored shape."""
    file = existing_file(path, "token file")
    return decode_tokens(str(file), file.read_bytes())


def is_window_file(path: str | os.PathLike, fps: float | None) -> bool:
    """Whether ``path`` is read as an array of windows (an ``.npy`` without ``fps``) rather than as a track."""
    return Path(path).suffix.lower() == ".npy" and fps is None


def read_windows(path: str | os.PathLike, kind: str, num_frames: int = 60) -> tuple[np.ndarray, bool]:
    """``(windows (N, num_frames, ...), single)`` of a window array of ``kind`` (``"cam"`` or ``"gaze"``).

    ``single`` is True for a file holding one window without the batch dimension. Values are float64 and not
    checked here (missing frames stay NaN).
    """
    tail = SIGNAL_TAILS[kind]
    array = read_npy(path, f"{_WHAT[kind]} file")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{path}: {_WHAT[kind]} must be real numbers, got dtype {array.dtype}")
    one = (num_frames, *tail)
    if array.shape == one:
        return array[None].astype(np.float64), True
    if array.ndim == len(one) + 1 and array.shape[1:] == one:
        return array.astype(np.float64), False
    shape = ", ".join(map(str, one))
    raise ValueError(f"{path}: expected {_WHAT[kind]} windows (N, {shape}) or one window ({shape}), got shape "
                     f"{array.shape}; a track (T, {', '.join(map(str, tail))}) needs --fps")


def read_track(path: str | os.PathLike, kind: str, fps: float | None = None) -> CameraTrack | GazeTrack:
    """The camera or gaze track in ``path`` (``fps``: the frame rate of an ``.npy`` track, which has no times)."""
    return read_camera_track(path, fps) if kind == "cam" else read_gaze_track(path, fps)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` at ``path`` atomically, creating its folder."""
    file = _output(path, (".npy",))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a handle: np.save would append .npy to the temporary name
            np.save(f, np.asarray(array), allow_pickle=False)

    write_atomic(file, write)


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...]) -> Path:
    """``path`` as an output file with one of ``suffixes``; ``ValueError`` / ``IsADirectoryError`` naming it."""
    file = Path(path)
    if file.suffix.lower() not in suffixes:
        raise ValueError(f"--out {file}: expected a {' / '.join(suffixes)} file")
    if file.is_dir():
        raise IsADirectoryError(f"--out {file} is a folder; give a file name")
    return file


def output_suffixes(input_path: str | os.PathLike, fps: float | None) -> tuple[str, ...]:
    """The output types a reconstruction of ``input_path`` can be written as: ``.npy`` for a window array, any
    track type for a track."""
    return (".npy",) if is_window_file(input_path, fps) else TRACK_SUFFIXES


def _output(path: str | os.PathLike, suffixes: tuple[str, ...]) -> Path:
    file = check_output(path, suffixes)
    file.parent.mkdir(parents=True, exist_ok=True)
    return file


def _write_gaze_text(path: str, track: GazeTrack) -> None:
    """``t x y`` lines, ``nan`` where the point is missing (the layout :func:`read_gaze_track` reads)."""
    lines = ["# t x y (gaze pixels of the original resolution; nan = missing)"]
    lines += [" ".join(f"{value:.17g}" for value in row) for row in np.column_stack([track.times, track.pixels])]
    Path(path).write_text("\n".join(lines) + "\n")


def write_track(path: str | os.PathLike, track: CameraTrack | GazeTrack) -> None:
    """Write a track atomically in the layout its suffix names.

    ``.npy``: the poses / pixels alone (one row per frame, NaN where missing; the times are dropped);
    ``.npz``: ``poses`` or ``gaze`` plus ``times``; text: TUM for camera (missing frames left out), ``t x y`` for
    gaze.
    """
    file = _output(path, TRACK_SUFFIXES)
    suffix = file.suffix.lower()
    camera = isinstance(track, CameraTrack)
    values = track.poses if camera else track.pixels
    if suffix == ".npy":
        save_npy(file, values)
        return
    if suffix in TEXT_SUFFIXES:
        write_atomic(file, lambda tmp: (write_camera_track_tum if camera else _write_gaze_text)(tmp, track))
        return

    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **{"poses" if camera else "gaze": values, "times": track.times})

    write_atomic(file, write_npz)
