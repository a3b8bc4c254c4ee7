"""Camera and gaze recordings: reading them, resampling them to the tokenizers' 30 fps, cutting 2 s windows.

A track is a sequence of timestamped samples (times in seconds, strictly increasing). Camera poses are OpenCV
camera-to-world 4x4 matrices; a missing pose is a frame of NaN. Gaze points are pixels (x, y) of the recording's
original resolution; a missing point (a blink, tracking loss) is NaN.

Files a track can be read from:

- ``.npy``: poses (N, 4, 4) or gaze (N, 2); they carry no times, so the caller gives the frame rate (``fps``);
- ``.npz``: an array ``poses`` (camera) or ``gaze``, plus ``times`` (N,) in seconds or a scalar ``fps``;
- text (``.txt``, ``.tum``): camera in the TUM format ``t tx ty tz qx qy qz qw`` (camera-to-world; the quaternion
  is normalised), gaze as ``t x y`` (``nan`` where missing); ``#`` starts a comment;
- a folder of such files: :func:`read_camera_tracks` / :func:`read_gaze_tracks` read each, sorted by name.

Rotations are interpolated by SLERP, translations and gaze points linearly. Resampling never bridges a gap: an
output frame whose two source neighbours are more than ``max_gap`` seconds apart (default 2.5 source frame
intervals), or one of which is missing, is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from egom2p.tokenizers.camera import check_poses

TOKENIZER_FPS = 30.0
WINDOW_LENGTH = 60  # 2 s at 30 fps
WINDOW_STRIDE = 10  # the original's training windows
MAX_GAP_FRAMES = 2.5  # default max_gap in source frame intervals
TEXT_SUFFIXES = (".txt", ".tum")
TRACK_SUFFIXES = (".npy", ".npz", *TEXT_SUFFIXES)


# --- rotations as unit quaternions (x, y, z, w), the TUM order ---------------------------------------------------

def matrix_to_quaternion(rotations: Any) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) ``(x, y, z, w)`` with w >= 0."""
    r = np.asarray(rotations, dtype=np.float64)
    r00, r11, r22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    # 4 q_i^2 for i = w, x, y, z; dividing by the largest one is the well-conditioned choice.
    squares = np.stack([1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22], -1)
    d21, d02, d10 = r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]
    s01, s02, s12 = r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1]
    candidates = np.stack([
        np.stack([d21, d02, d10, squares[..., 0]], -1),
        np.stack([squares[..., 1], s01, s02, d21], -1),
        np.stack([s01, squares[..., 2], s12, d02], -1),
        np.stack([s02, s12, squares[..., 3], d10], -1),
    ], -2)
    best = np.argmax(squares, axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., 3:] < 0, -q, q)


def quaternion_to_matrix(quaternions: Any) -> np.ndarray:
    """Quaternions (..., 4) ``(x, y, z, w)`` (normalised here) -> rotation matrices (..., 3, 3)."""
    q = np.asarray(quaternions, dtype=np.float64)
    x, y, z, w = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def slerp(q0: Any, q1: Any, fraction: Any) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (..., 4) along the shorter arc; fraction (...,) in [0, 1]."""
    a = np.asarray(q0, dtype=np.float64)
    b = np.asarray(q1, dtype=np.float64)
    b = np.where((a * b).sum(-1, keepdims=True) < 0, -b, b)  # q and -q are the same rotation
    f = np.asarray(fraction, dtype=np.float64)[..., None]
    # The angle between the two unit vectors, accurate also when they are nearly equal (unlike arccos).
    half = 2 * np.arctan2(np.linalg.norm(a - b, axis=-1, keepdims=True), np.linalg.norm(a + b, axis=-1, keepdims=True))
    small = half < 1e-9
    sin_half = np.where(small, 1.0, np.sin(half))
    weight0 = np.where(small, 1 - f, np.sin((1 - f) * half) / sin_half)
    weight1 = np.where(small, f, np.sin(f * half) / sin_half)
    q = weight0 * a + weight1 * b
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


# --- tracks --------------------------------------------------------------------------------------------------------

def _check_times(times: Any, count: int, source: str) -> np.ndarray:
    array = np.asarray(times, dtype=np.float64)
    if array.ndim != 1 or len(array) != count:
        raise ValueError(f"{source}: expected {count} times (one per frame), got shape {array.shape}")
    if count == 0:
        raise ValueError(f"{source}: the track has no frames")
    if not np.isfinite(array).all():
        raise ValueError(f"{source}: time of frame {int(np.flatnonzero(~np.isfinite(array))[0])} is not finite")
    steps = np.diff(array)
    if (steps <= 0).any():
        index = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise ValueError(f"{source}: times must be strictly increasing; frame {index} at {float(array[index])!r} s "
                         f"follows {float(array[index - 1])!r} s")
    return array


@dataclass(frozen=True, eq=False)
class CameraTrack:
    """Camera-to-world poses (N, 4, 4) float64 at ``times`` (N,) seconds; a frame of NaN is a missing pose.

    ``source`` names where the track came from (a file), for error messages.
    """

    times: np.ndarray
    poses: np.ndarray
    source: str = "camera track"

    def __post_init__(self) -> None:
        poses = np.asarray(self.poses, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ValueError(f"{self.source}: expected camera poses of shape (N, 4, 4), got {poses.shape}")
        object.__setattr__(self, "poses", poses)
        object.__setattr__(self, "times", _check_times(self.times, len(poses), self.source))
        # Missing frames stand in as identities so the error names the frame of the track.
        check_poses(np.where(self.missing[:, None, None], np.eye(4), poses), where=self.source)

    @property
    def missing(self) -> np.ndarray:
        """(N,) True where the pose is missing (all NaN)."""
        return np.isnan(self.poses).all(axis=(-2, -1))


@dataclass(frozen=True, eq=False)
class GazeTrack:
    """Gaze points (N, 2) float64 in pixels of the original resolution at ``times`` (N,) seconds; NaN = missing."""

    times: np.ndarray
    pixels: np.ndarray
    source: str = "gaze track"

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels, dtype=np.float64)
        if pixels.ndim != 2 or pixels.shape[1] != 2:
            raise ValueError(f"{self.source}: expected gaze pixels of shape (N, 2), got {pixels.shape}")
        if np.isinf(pixels).any():
            raise ValueError(f"{self.source}: gaze frame {int(np.flatnonzero(np.isinf(pixels).any(-1))[0])} is "
                             "infinite (use NaN for a missing point)")
        object.__setattr__(self, "pixels", pixels)
        object.__setattr__(self, "times", _check_times(self.times, len(pixels), self.source))

    @property
    def missing(self) -> np.ndarray:
        """(N,) True where the gaze point is missing (NaN)."""
        return np.isnan(self.pixels).any(axis=-1)


# --- reading and writing -------------------------------------------------------------------------------------------

def existing_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path; a one-line FileNotFoundError (IsADirectoryError for a folder) names it as ``what``."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{what} not found: {file}")
    if file.is_dir():
        raise IsADirectoryError(f"{file}: expected a {what}, got a folder")
    return file


def _frame_times(count: int, fps: Any, source: str) -> np.ndarray:
    if fps is None:
        raise ValueError(f"{source}: a .npy track carries no times; give its frame rate (fps)")
    rate = float(np.asarray(fps, dtype=np.float64).reshape(-1)[0]) if np.size(fps) == 1 else float("nan")
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"{source}: fps must be one positive number, got {fps!r}")
    return np.arange(count, dtype=np.float64) / rate


def load_npy(file: Path) -> np.ndarray:
    """The array of an ``.npy`` file, never unpickled; a one-line ValueError names an unreadable file."""
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{file}: not a readable .npy array ({' '.join(str(error).split())})") from None


def _load_npz(file: Path, key: str, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """The array ``key`` and its times from an .npz holding ``key`` plus ``times`` or ``fps``."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{file}: not a readable .npz archive ({' '.join(str(error).split())})") from None
    found = ", ".join(sorted(arrays)) or "none"
    if key not in arrays:
        raise ValueError(f"{file}: no array {key!r} ({shape}); found keys: {found}")
    values = arrays[key]
    if ("times" in arrays) == ("fps" in arrays):
        raise ValueError(f"{file}: needs exactly one of 'times' (seconds per frame) or 'fps' beside {key!r}; "
                         f"found keys: {found}")
    times = arrays["times"] if "times" in arrays else _frame_times(len(values), arrays["fps"], str(file))
    return values, times


def _read_text(file: Path, columns: int, layout: str) -> np.ndarray:
    rows = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.replace(",", " ").split()
        try:
            if len(fields) != columns:
                raise ValueError
            rows.append([float(field) for field in fields])
        except ValueError:
            raise ValueError(f"{file}:{number}: expected {columns} numbers '{layout}', got {text[:60]!r}") from None
    if not rows:
        raise ValueError(f"{file}: no samples (expected lines '{layout}')")
    return np.array(rows, dtype=np.float64)


def _tum_to_poses(rows: np.ndarray, file: Path) -> np.ndarray:
    norms = np.linalg.norm(rows[:, 4:8], axis=-1)
    if not (norms > 1e-6).all():
        raise ValueError(f"{file}: the quaternion of sample {int(np.flatnonzero(~(norms > 1e-6))[0])} is zero or NaN")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :3] = quaternion_to_matrix(rows[:, 4:8])
    poses[:, :3, 3] = rows[:, 1:4]
    return poses


@dataclass(frozen=True)
class _TrackFiles:
    """How one kind of track is stored in the files of the module docstring."""

    what: str  # "camera track", in messages; read_<what>s reads a folder of them
    key: str  # the array of an .npz
    frames: str  # what the frames hold, in messages
    frame_shape: tuple[int, ...]
    layout: str  # the numbers of a text line, the time first
    from_text: Callable[[np.ndarray, Path], np.ndarray]  # text rows -> frames

    def read(self, path: str | os.PathLike, fps: float | None) -> tuple[Path, np.ndarray, np.ndarray]:
        """``(file, frames, times)`` of one track file; ``fps`` only for .npy. One-line errors name the file."""
        file = Path(path)
        if file.is_dir():
            raise ValueError(f"{file}: is a folder; read its files with read_{self.what.replace(' ', '_')}s")
        file = existing_file(file, self.what)
        suffix = file.suffix.lower()
        if suffix not in TRACK_SUFFIXES:
            raise ValueError(f"{file}: unsupported {self.what} file type {file.suffix!r}; use one of "
                             f"{', '.join(TRACK_SUFFIXES)}")
        if suffix in TEXT_SUFFIXES:
            rows = _read_text(file, len(self.layout.split()), self.layout)
            return file, self.from_text(rows, file), rows[:, 0]
        shape = f"(N, {', '.join(map(str, self.frame_shape))})"
        if suffix == ".npz":
            frames, times = _load_npz(file, self.key, f"{self.frames} {shape}")
        else:  # .npy: a wrong shape is named before a missing fps
            frames, times = load_npy(file), None
        if frames.shape[1:] != self.frame_shape:
            raise ValueError(f"{file}: expected {self.frames} of shape {shape}, got {frames.shape}")
        return file, frames, _frame_times(len(frames), fps, str(file)) if times is None else times


_CAMERA_FILES = _TrackFiles("camera track", "poses", "camera poses", (4, 4), "t tx ty tz qx qy qz qw", _tum_to_poses)
_GAZE_FILES = _TrackFiles("gaze track", "gaze", "gaze pixels", (2,), "t x y", lambda rows, file: rows[:, 1:3])


def read_camera_track(path: str | os.PathLike, fps: float | None = None) -> CameraTrack:
    """Read a camera track from an .npy (needs ``fps``), .npz or TUM text file (see the module docstring).

    ``fps`` is used only by .npy files, which carry no times.
    """
    file, poses, times = _CAMERA_FILES.read(path, fps)
    return CameraTrack(times=times, poses=poses, source=str(file))


def read_gaze_track(path: str | os.PathLike, fps: float | None = None) -> GazeTrack:
    """Read a gaze track from an .npy (needs ``fps``), .npz (key ``gaze``) or ``t x y`` text file.

    ``fps`` is used only by .npy files, which carry no times.
    """
    file, pixels, times = _GAZE_FILES.read(path, fps)
    return GazeTrack(times=times, pixels=pixels, source=str(file))


def _track_files(path: str | os.PathLike, what: str) -> list[Path]:
    folder = Path(path)
    if not folder.is_dir():
        return [folder]
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TRACK_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no {what} files ({', '.join(TRACK_SUFFIXES)}) in {folder}")
    return files


def read_camera_tracks(path: str | os.PathLike, fps: float | None = None) -> list[CameraTrack]:
    """The camera tracks of a file (one) or of every track file in a folder (sorted by name)."""
    return [read_camera_track(file, fps) for file in _track_files(path, _CAMERA_FILES.what)]


def read_gaze_tracks(path: str | os.PathLike, fps: float | None = None) -> list[GazeTrack]:
    """The gaze tracks of a file (one) or of every track file in a folder (sorted by name)."""
    return [read_gaze_track(file, fps) for file in _track_files(path, _GAZE_FILES.what)]


def write_camera_track_tum(path: str | os.PathLike, track: CameraTrack) -> None:
    """Write the track's present poses as TUM text ``t tx ty tz qx qy qz qw`` (missing frames are left out)."""
    present = ~track.missing
    quaternions = matrix_to_quaternion(track.poses[present, :3, :3])
    rows = np.concatenate([track.times[present, None], track.poses[present, :3, 3], quaternions], axis=-1)
    lines = ["# t tx ty tz qx qy qz qw (OpenCV camera-to-world)"]
    lines += [" ".join(f"{value:.17g}" for value in row) for row in rows]
    Path(path).write_text("\n".join(lines) + "\n")


# --- resampling ----------------------------------------------------------------------------------------------------

class _Brackets(NamedTuple):
    times: np.ndarray  # (M,) output times
    left: np.ndarray  # (M,) index of the source sample at or before each output time
    fraction: np.ndarray  # (M,) position between left and left + 1, in [0, 1)
    bridged: np.ndarray  # (M,) True where the output lies strictly inside a gap longer than max_gap


def _brackets(times: np.ndarray, fps: float, max_gap: float | None, source: str) -> _Brackets:
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"{source}: fps must be positive, got {fps!r}")
    count = int(np.floor((times[-1] - times[0]) * fps + 1e-9)) + 1
    grid = times[0] + np.arange(count, dtype=np.float64) / fps
    if len(times) < 2:
        return _Brackets(grid, np.zeros(count, int), np.zeros(count), np.zeros(count, bool))
    if max_gap is None:
        max_gap = MAX_GAP_FRAMES * float(np.median(np.diff(times)))
    elif not max_gap > 0:
        raise ValueError(f"{source}: max_gap must be a positive number of seconds, got {max_gap!r}")
    left = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, len(times) - 2)
    span = times[left + 1] - times[left]
    fraction = np.clip((grid - times[left]) / span, 0.0, 1.0)
    # The last output time can round onto the last source sample: take it as that sample, not a blend.
    at_right = fraction >= 1.0
    left = np.where(at_right, left + 1, left)
    fraction = np.where(at_right, 0.0, fraction)
    bridged = (fraction > 0) & (span > max_gap)
    return _Brackets(grid, left, fraction, bridged)


def _blend_missing(missing: np.ndarray, brackets: _Brackets) -> np.ndarray:
    right = np.minimum(brackets.left + 1, len(missing) - 1)
    uses_right = brackets.fraction > 0
    return missing[brackets.left] | (uses_right & missing[right]) | brackets.bridged


def resample_camera(track: CameraTrack, fps: float = TOKENIZER_FPS, max_gap: float | None = None) -> CameraTrack:
    """The track at ``fps`` from its first time on: rotations by SLERP, translations linearly.

    ``max_gap`` (seconds; default 2.5 median source frame intervals): output frames between two source samples
    further apart than this are missing (NaN), as are those next to a missing source pose.
    """
    brackets = _brackets(track.times, fps, max_gap, track.source)
    right = np.minimum(brackets.left + 1, len(track.times) - 1)
    start, end = track.poses[brackets.left], track.poses[right]
    weight = brackets.fraction[:, None]
    with np.errstate(invalid="ignore"):
        rotations = quaternion_to_matrix(slerp(matrix_to_quaternion(start[:, :3, :3]),
                                               matrix_to_quaternion(end[:, :3, :3]), brackets.fraction))
    poses = np.tile(np.eye(4), (len(brackets.times), 1, 1))
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = (1 - weight) * start[:, :3, 3] + weight * end[:, :3, 3]
    exact = brackets.fraction == 0  # on a source sample: keep it bit for bit
    poses[exact] = start[exact]
    poses[_blend_missing(track.missing, brackets)] = np.nan
    return CameraTrack(times=brackets.times, poses=poses, source=track.source)


def resample_gaze(track: GazeTrack, fps: float = TOKENIZER_FPS, max_gap: float | None = None) -> GazeTrack:
    """The track at ``fps`` from its first time on, linearly interpolated; gaps as in :func:`resample_camera`
    (a missing source point makes its neighbouring output frames missing)."""
    brackets = _brackets(track.times, fps, max_gap, track.source)
    right = np.minimum(brackets.left + 1, len(track.times) - 1)
    weight = brackets.fraction[:, None]
    start, end = track.pixels[brackets.left], track.pixels[right]
    pixels = np.where(weight > 0, (1 - weight) * start + weight * end, start)
    pixels[_blend_missing(track.missing, brackets)] = np.nan
    return GazeTrack(times=brackets.times, pixels=pixels, source=track.source)


# --- windows -------------------------------------------------------------------------------------------------------

class WindowStarts(NamedTuple):
    """Where each window starts in its track: frame index and time in seconds (to line keys up across modalities)."""

    frames: np.ndarray  # (W,) int64
    times: np.ndarray  # (W,) float64


def _window_starts(times: np.ndarray, length: int, stride: int, fps: float, source: str) -> np.ndarray:
    for name, value in (("length", length), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"window {name} must be a positive integer, got {value!r}")
    steps = np.diff(times)
    off = np.abs(steps * fps - 1.0) > 1e-3
    if off.any():
        index = int(np.flatnonzero(off)[0]) + 1
        raise ValueError(f"{source}: windows need a track at {fps:g} fps (resample it first); frame {index} is "
                         f"{steps[index - 1] * 1000:.3f} ms after the previous one")
    return np.arange(0, len(times) - length + 1, stride, dtype=np.int64)


def _cut(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return values[starts[:, None] + np.arange(length)] if len(starts) else np.empty((0, length, *values.shape[1:]))


def camera_windows(track: CameraTrack, length: int = WINDOW_LENGTH, stride: int = WINDOW_STRIDE,
                   fps: float = TOKENIZER_FPS) -> tuple[np.ndarray, WindowStarts, int]:
    """Cut a track at ``fps`` (see :func:`resample_camera`) into windows of ``length`` frames every ``stride``.

    A window with any missing pose is skipped (the tokenizer needs every pose). Returns the windows
    (W, length, 4, 4), their starts and the number of skipped windows.
    """
    starts = _window_starts(track.times, length, stride, fps, track.source)
    complete = ~_cut(track.missing, starts, length).any(axis=-1)
    kept = starts[complete]
    return _cut(track.poses, kept, length), WindowStarts(kept, track.times[kept]), int((~complete).sum())


def gaze_windows(track: GazeTrack, length: int = WINDOW_LENGTH, stride: int = WINDOW_STRIDE,
                 fps: float = TOKENIZER_FPS) -> tuple[np.ndarray, WindowStarts, int]:
    """Cut a track at ``fps`` (see :func:`resample_gaze`) into windows of ``length`` frames every ``stride``.

    Unlike camera windows, a gaze window with missing frames is KEPT: its missing points stay NaN and become
    invalid frames of the tokenizer's input (the model is trained with blinks). Only a window whose every frame is
    missing is skipped. Returns the windows (W, length, 2), their starts and the number of skipped windows.
    """
    starts = _window_starts(track.times, length, stride, fps, track.source)
    usable = ~_cut(track.missing, starts, length).all(axis=-1)
    kept = starts[usable]
    return _cut(track.pixels, kept, length), WindowStarts(kept, track.times[kept]), int((~usable).sum())
