"""Round trip of one recording through a tokenizer: its windows -> tokens -> signals again, with the metrics.

A track is cut into back-to-back windows (stride = the window length) so the reconstruction is one track again:
frames of the 30 fps track that no window covers stay missing (NaN). An array of windows comes back with the
same rows (a skipped window's row is NaN). Camera reconstructions go back to each window's place in the world
(:meth:`~egom2p.tokenizers.codec.WindowCodec.decode_like`), so the output lies on top of the input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from egom2p.tokenizers.codec import WindowCodec
from egom2p.tokenizers.recordings import RecordingWindows, describe_skipped, read_recording
from egom2p.tokenizers.signal_files import save_npy, write_track
from egom2p.tokenizers.signal_metrics import signal_metrics
from egom2p.tokenizers.tracks import CameraTrack, GazeTrack

__all__ = ["RoundTrip", "round_trip", "write_round_trip"]


@dataclass(eq=False)
class RoundTrip:
    """The input's windows (``recording``), their ``tokens`` (W, tokens), the reconstructed windows
    ``reconstruction`` (W, frames, ...) in the input's space, and their ``metrics``."""

    recording: RecordingWindows
    tokens: np.ndarray
    reconstruction: np.ndarray
    metrics: dict[str, float]


def round_trip(codec: WindowCodec, path: str | os.PathLike, *, fps: float | None = None) -> RoundTrip:
    """Encode and decode the windows of the track or window array at ``path`` (``fps``: an ``.npy`` track's rate).

    Raises ``ValueError`` naming the file when it holds no complete window.
    """
    frames = codec.num_frames
    recording = read_recording(path, codec.kind, fps=fps, stride=frames, num_frames=frames)
    if not len(recording.windows):
        raise ValueError(f"{path}: no window of {frames} frames to reconstruct (skipped "
                         f"{describe_skipped(recording.skipped)})")
    tokens = codec.encode(recording.windows)
    reconstruction = codec.decode_like(tokens, recording.windows)
    metrics = signal_metrics(reconstruction, recording.windows, kind=codec.kind, frame=codec.frame,
                             pred_name="reconstruction", gt_name=str(path))
    return RoundTrip(recording, tokens, reconstruction, metrics)


def write_round_trip(result: RoundTrip, out: str | os.PathLike) -> None:
    """Write the reconstruction in the layout of the input: a window array as ``.npy`` (same rows, or one window),
    a track as a track file of ``out``'s type (:func:`~egom2p.tokenizers.signal_files.write_track`) at 30 fps."""
    recording, windows = result.recording, result.reconstruction
    track = recording.track
    if track is None:
        assert recording.rows is not None and recording.file_windows is not None  # set for every window array
        rows = np.full((recording.file_windows, *windows.shape[1:]), np.nan)
        rows[recording.rows] = windows
        save_npy(out, rows[0] if recording.single else rows)
        return
    values = np.full((len(track.times), *windows.shape[2:]), np.nan)
    for start, window in zip(recording.starts, windows):
        values[start:start + len(window)] = window
    if isinstance(track, CameraTrack):
        write_track(out, CameraTrack(track.times, values, source=f"reconstruction of {track.source}"))
    else:
        write_track(out, GazeTrack(track.times, values, source=f"reconstruction of {track.source}"))
