"""The tokenizer recipe's data: the sources of ``tokenizer_data.train`` / ``.val`` read into model inputs.

Each source gives 2 s windows of signals: a file or folder read as ``egom2p-tokenize`` reads its inputs
(:func:`egom2p.tokenizers.recordings.read_recording`: a ``.npy`` is an array of windows unless
``tokenizer_data.fps`` is set, then it is a track like ``.npz`` and text files; tracks are resampled to 30 fps
and cut every ``tokenizer_data.stride`` frames; camera windows with a missing pose are skipped), or
``{synthetic: {windows: N, seed: S}}`` (:mod:`egom2p.tokenizers.synthetic`). The windows become the
tokenizer's normalised inputs by the conventions' own functions (camera: the basis change, canonicalisation,
9-D, normalisation; gaze: ``[x, y, valid]`` in the crop of ``tokenizer_data.gaze_frame``), float32 in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from egom2p.tokenizers import camera, gaze
from egom2p.tokenizers.config import TokenizerConfig
from egom2p.tokenizers.recordings import input_files, read_recording
from egom2p.tokenizers.synthetic import synthetic_camera_windows, synthetic_gaze_windows
from egom2p.train.config import ConfigError, TokenizerDataConfig, gaze_frame_of

__all__ = ["read_windows"]


def _signal_windows(source: str | dict[str, Any], data: TokenizerDataConfig, tokenizer: TokenizerConfig) -> np.ndarray:
    """The signal windows of one source: poses (W, T, 4, 4) or gaze pixels (W, T, 2), float64."""
    kind = tokenizer.kind
    if isinstance(source, dict):
        spec = source["synthetic"]
        if kind == "cam":
            return synthetic_camera_windows(spec["windows"], spec["seed"])
        return synthetic_gaze_windows(spec["windows"], spec["seed"], gaze_frame_of(data))
    found = [read_recording(file, kind, fps=data.fps, stride=data.stride, num_frames=tokenizer.num_frames).windows
             for file in input_files([source])]
    return np.concatenate(found)


def _model_input(windows: np.ndarray, data: TokenizerDataConfig, tokenizer: TokenizerConfig, where: str) -> np.ndarray:
    if tokenizer.kind == "cam":
        return camera.poses_to_model_input(windows, data.basis, where=where)
    return gaze.pixels_to_model_input(windows, gaze_frame_of(data))


def read_windows(data: TokenizerDataConfig, split: str, tokenizer: TokenizerConfig) -> np.ndarray:
    """Every window of ``tokenizer_data.<split>`` as the tokenizer's float32 input (N, frames, channels).

    A source that cannot be read, or windows of another length than the tokenizer's, are a ``ConfigError``
    naming the key, the source and the problem in one line; so is a split without a single window.
    """
    key = f"config key 'tokenizer_data.{split}'"
    parts = []
    for index, source in enumerate(getattr(data, split)):
        where = f"{key}: source {index} ({source})"
        try:
            windows = _signal_windows(source, data, tokenizer)
            if windows.shape[1] != tokenizer.num_frames:
                raise ValueError(f"windows of {windows.shape[1]} frames, the tokenizer takes {tokenizer.num_frames}")
            parts.append(_model_input(windows, data, tokenizer, str(source)))
        except (ValueError, OSError) as err:  # FileNotFoundError is an OSError
            raise ConfigError(f"{where}: {' '.join(str(err).split())}", f"tokenizer_data.{split}") from None
    inputs = np.concatenate(parts) if parts else np.empty((0, tokenizer.num_frames, tokenizer.input_channels), np.float32)
    if not len(inputs):
        raise ConfigError(f"{key}: its sources hold no complete window of {tokenizer.num_frames} frames",
                          f"tokenizer_data.{split}")
    return inputs
