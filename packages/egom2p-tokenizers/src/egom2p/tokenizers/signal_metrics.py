"""Metrics of a predicted signal array against the ground truth, whatever space the prediction is in.

Camera: either side is poses ``(..., T, 4, 4)`` (canonicalised to their first frame) or canonical 9-D vectors
``(..., T, 9)``; a prediction in the tokenizer's output space (``pred_space="model"``) is normalised 9-D.
Gaze: the ground truth is pixels of the original resolution ``(..., T, 2)`` (NaN where missing); the prediction is
pixels (``"signal"``), crop units (``"crop"``: [0, 1] inside the square crop, the original's decoded
``x * 0.5 + 0.5``, as ``token__gaze-recon.npy``) or the tokenizer's output in [-1, 1] (``"model"``).
The figures are :func:`~egom2p.tokenizers.metrics.camera_metrics` / :func:`~egom2p.tokenizers.metrics.gaze_metrics`.
"""

from __future__ import annotations

import math

import numpy as np
from egom2p.tokenizers.camera import check_poses, denormalize_9d
from egom2p.tokenizers.codec import FRAME_HELP
from egom2p.tokenizers.gaze import GazeFrame, crop_units_to_pixels, model_output_to_pixels
from egom2p.tokenizers.metrics import camera_metrics, gaze_metrics

__all__ = ["PRED_SPACES", "infer_kind", "json_ready", "signal_metrics"]

PRED_SPACES = ("signal", "crop", "model")


def infer_kind(array: np.ndarray, where: str) -> str:
    """``"cam"`` for poses (..., 4, 4) or 9-D vectors (..., 9), ``"gaze"`` for points (..., 2)."""
    if (array.ndim >= 3 and array.shape[-2:] == (4, 4)) or (array.ndim >= 2 and array.shape[-1] == 9):
        return "cam"
    if array.ndim >= 2 and array.shape[-1] == 2:
        return "gaze"
    raise ValueError(f"{where}: shape {array.shape} is neither camera poses (..., T, 4, 4) / 9-D vectors "
                     "(..., T, 9) nor gaze points (..., T, 2)")


def _camera(values: np.ndarray, space: str, where: str) -> np.ndarray:
    poses = values.ndim >= 3 and values.shape[-2:] == (4, 4)
    if space == "crop":
        raise ValueError("--pred-space crop applies to gaze; camera predictions are 'signal' or 'model'")
    if space == "model":
        if poses or values.shape[-1] != 9:
            raise ValueError(f"{where}: the camera tokenizer's output space is normalised 9-D (..., T, 9), got shape "
                             f"{values.shape}")
        return denormalize_9d(values)
    if poses:
        return check_poses(values, where=where)
    if values.ndim >= 2 and values.shape[-1] == 9:
        return values
    raise ValueError(f"{where}: expected camera poses (..., T, 4, 4) or 9-D vectors (..., T, 9), got {values.shape}")


def _frames(values: np.ndarray) -> tuple[int, ...]:
    """The (..., T) shape of a signal array: everything before the per-frame part."""
    return values.shape[:-2] if values.ndim >= 3 and values.shape[-2:] == (4, 4) else values.shape[:-1]


def _gaze_pixels(values: np.ndarray, space: str, frame: GazeFrame, where: str) -> np.ndarray:
    if values.ndim < 2 or values.shape[-1] != 2:
        raise ValueError(f"{where}: expected gaze points (..., T, 2), got shape {values.shape}")
    if space == "crop":
        return crop_units_to_pixels(values, frame)
    if space == "model":
        return model_output_to_pixels(values, frame)
    return values


def signal_metrics(pred: np.ndarray, gt: np.ndarray, *, kind: str | None = None, frame: GazeFrame | None = None,
                   pred_space: str = "signal", pred_name: str = "pred", gt_name: str = "gt") -> dict[str, float]:
    """The camera or gaze metrics of ``pred`` against ``gt`` (see the module docstring).

    ``kind``: ``"cam"`` / ``"gaze"`` (default: from the shapes); ``frame``: the gaze frame (gaze only);
    ``pred_name`` / ``gt_name``: what error messages call the two arrays (their files).
    """
    if pred_space not in PRED_SPACES:
        raise ValueError(f"unknown prediction space {pred_space!r}; known: {', '.join(PRED_SPACES)}")
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    kinds = {name: infer_kind(array, name) for name, array in ((gt_name, gt), (pred_name, pred))}
    kind = kind or kinds[gt_name]
    for name, found in kinds.items():
        if found != kind:
            raise ValueError(f"{name} holds {'camera' if found == 'cam' else 'gaze'} values, expected {kind}")
    if kind == "cam":
        if frame is not None:
            raise ValueError(f"the gaze frame options ({FRAME_HELP}) do not apply to camera metrics")
        pred, gt = _camera(pred, pred_space, pred_name), _camera(gt, "signal", gt_name)
    else:
        if frame is None:
            raise ValueError(f"gaze metrics need the frame of the gaze pixels: {FRAME_HELP}")
        pred, gt = _gaze_pixels(pred, pred_space, frame, pred_name), _gaze_pixels(gt, "signal", frame, gt_name)
    if _frames(pred) != _frames(gt):
        raise ValueError(f"{pred_name} has windows x frames {_frames(pred)}, {gt_name} has {_frames(gt)}")
    return camera_metrics(pred, gt) if kind == "cam" else gaze_metrics(pred, gt, frame)


def json_ready(metrics: dict[str, float]) -> dict[str, float | None]:
    """``metrics`` with NaN and infinities as None, so the JSON line stays valid JSON."""
    return {name: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for name, value in metrics.items()}
