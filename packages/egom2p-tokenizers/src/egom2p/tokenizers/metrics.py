"""Trajectory and gaze metrics, each named for its alignment.

Camera metrics take predicted and ground-truth trajectories of camera-to-world poses (..., T, 4, 4) in the same
frame (:func:`camera_metrics` puts them there) and return one value per trajectory (a float for a single one):

- :func:`ate_original`: the original EgoM2P's "ATE" (``example_data/tok_cam_example.py``): the Kabsch rotation
  fitted on the centred translations rotates the predicted translations about the origin, with no translation and
  no scale; then the RMSE of the translation differences. It relies on both trajectories starting at the origin
  (canonicalised to their first frame).
- :func:`ate_se3`: the standard ATE after the Umeyama rotation and translation (SE(3)).
- :func:`ate_sim3`: the same with a scale as well (Sim(3)).
- :func:`ate_unaligned`: the RMSE of the translation differences as they are.
- :func:`rte` / :func:`rre_deg`: RMSE over consecutive frames of the translation / rotation angle (degrees) of
  ``inv(gt_rel) @ pred_rel``, the relative motions ``inv(P[t]) @ P[t + 1]``; they need no alignment.

Gaze metrics work in crop units ([0, 1] inside the tokenizer's square crop) or crop pixels; see :mod:`.gaze`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from egom2p.tokenizers.camera import canonicalize, check_poses, nine_d_to_poses
from egom2p.tokenizers.gaze import GazeFrame, gaze_frame, pixels_to_crop_units, pixels_to_model_input, valid_gaze

CAMERA_METRICS = ("ate_original_m", "ate_se3_m", "ate_sim3_m", "ate_unaligned_m", "rte_m", "rre_deg")


def _same_shape(pred: Any, gt: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"{what}: prediction and ground truth shapes differ: pred {pred.shape}, gt {gt.shape}")
    return pred, gt


def _trajectories(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _same_shape(pred, gt, "camera trajectories")
    if pred.ndim < 3 or pred.shape[-2:] != (4, 4) or pred.shape[-3] < 2:
        raise ValueError(f"camera trajectories: expected poses (..., T >= 2, 4, 4), got pred {pred.shape}, "
                         f"gt {gt.shape}")
    return pred, gt


def _scalar_or_array(values: np.ndarray) -> np.ndarray | np.float64:
    return values[()] if values.ndim == 0 else values


def _rmse(differences: np.ndarray) -> np.ndarray:
    """RMSE over frames of (..., T, 3) vector differences -> (...)."""
    return np.sqrt((differences**2).sum(axis=-1).mean(axis=-1))


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``target ~ s R source + t`` for point sets (..., N, 3) (Umeyama 1991).

    Returns scale (...), rotation (..., 3, 3) (a proper rotation) and translation (..., 3); the scale is 1 unless
    ``with_scale``.
    """
    mean_source = source.mean(axis=-2, keepdims=True)
    mean_target = target.mean(axis=-2, keepdims=True)
    centred_source = source - mean_source
    centred_target = target - mean_target
    covariance = np.swapaxes(centred_target, -1, -2) @ centred_source / source.shape[-2]
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.ones_like(singular)
    signs[..., 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))  # no reflections
    signs[..., 2] = np.where(signs[..., 2] == 0, 1.0, signs[..., 2])
    rotation = u @ (signs[..., :, None] * vt)
    if with_scale:
        variance = (centred_source**2).sum(axis=-1).mean(axis=-1)
        # A trajectory that does not move has no scale to fit.
        scale = np.where(variance > 0, (singular * signs).sum(axis=-1) / np.where(variance > 0, variance, 1.0), 1.0)
    else:
        scale = np.ones(source.shape[:-2])
    rotated_mean = (rotation @ np.swapaxes(mean_source, -1, -2))[..., 0]
    translation = mean_target[..., 0, :] - scale[..., None] * rotated_mean
    return scale, rotation, translation


def _apply(scale: np.ndarray, rotation: np.ndarray, translation: np.ndarray, points: np.ndarray) -> np.ndarray:
    return scale[..., None, None] * points @ np.swapaxes(rotation, -1, -2) + translation[..., None, :]


def ate_original(pred: Any, gt: Any) -> np.ndarray | np.float64:
    """The original EgoM2P's ATE in metres: Kabsch rotation of the centred translations, applied to the predicted
    translations about the origin (no translation, no scale), then the RMSE of the translation differences.

    Meant for trajectories canonicalised to their first frame (see :func:`camera_metrics`).
    """
    pred, gt = _trajectories(pred, gt)
    _, rotation, _ = umeyama(pred[..., :3, 3], gt[..., :3, 3], with_scale=False)
    aligned = pred[..., :3, 3] @ np.swapaxes(rotation, -1, -2)
    return _scalar_or_array(_rmse(aligned - gt[..., :3, 3]))


def _aligned_ate(pred: Any, gt: Any, with_scale: bool) -> np.ndarray | np.float64:
    pred, gt = _trajectories(pred, gt)
    transform = umeyama(pred[..., :3, 3], gt[..., :3, 3], with_scale=with_scale)
    return _scalar_or_array(_rmse(_apply(*transform, pred[..., :3, 3]) - gt[..., :3, 3]))


def ate_se3(pred: Any, gt: Any) -> np.ndarray | np.float64:
    """ATE in metres after the least-squares rotation and translation (Umeyama SE(3)) of the predicted
    translations onto the ground truth's."""
    return _aligned_ate(pred, gt, with_scale=False)


def ate_sim3(pred: Any, gt: Any) -> np.ndarray | np.float64:
    """ATE in metres after the least-squares rotation, translation and scale (Umeyama Sim(3))."""
    return _aligned_ate(pred, gt, with_scale=True)


def ate_unaligned(pred: Any, gt: Any) -> np.ndarray | np.float64:
    """RMSE in metres of the translation differences with no alignment at all."""
    pred, gt = _trajectories(pred, gt)
    return _scalar_or_array(_rmse(pred[..., :3, 3] - gt[..., :3, 3]))


def _relative_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``inv(gt_rel) @ pred_rel`` for the consecutive relative motions ``inv(P[t]) @ P[t + 1]``: (..., T - 1, 4, 4)."""
    pred_rel = np.linalg.inv(pred[..., :-1, :, :]) @ pred[..., 1:, :, :]
    gt_rel = np.linalg.inv(gt[..., :-1, :, :]) @ gt[..., 1:, :, :]
    return np.linalg.inv(gt_rel) @ pred_rel


def rotation_angle(rotations: np.ndarray) -> np.ndarray:
    """Angle in radians of rotation matrices (..., 3, 3), accurate also for small angles (atan2, not arccos)."""
    axis = np.stack([rotations[..., 2, 1] - rotations[..., 1, 2], rotations[..., 0, 2] - rotations[..., 2, 0],
                     rotations[..., 1, 0] - rotations[..., 0, 1]], axis=-1)
    trace = np.trace(rotations, axis1=-2, axis2=-1)
    return np.arctan2(0.5 * np.linalg.norm(axis, axis=-1), 0.5 * (trace - 1.0))


def rte(pred: Any, gt: Any) -> np.ndarray | np.float64:
    """Relative translation error in metres: RMSE over consecutive frames of the translation of
    ``inv(gt_rel) @ pred_rel`` (no alignment needed)."""
    pred, gt = _trajectories(pred, gt)
    return _scalar_or_array(_rmse(_relative_errors(pred, gt)[..., :3, 3]))


def rre_deg(pred: Any, gt: Any) -> np.ndarray | np.float64:
    """Relative rotation error in degrees: RMSE over consecutive frames of the rotation angle of
    ``inv(gt_rel) @ pred_rel`` (no alignment needed)."""
    pred, gt = _trajectories(pred, gt)
    angles = rotation_angle(_relative_errors(pred, gt)[..., :3, :3])
    return _scalar_or_array(np.degrees(np.sqrt((angles**2).mean(axis=-1))))


def _canonical_poses(values: np.ndarray, where: str) -> np.ndarray:
    if values.shape[-2:] == (4, 4):
        return canonicalize(check_poses(values, where=where))
    if values.shape[-1] == 9:
        # 9-D vectors are canonical by construction; like the original, they are not canonicalised again.
        return nine_d_to_poses(values)
    raise ValueError(f"{where}: expected poses (..., T, 4, 4) or 9-D vectors (..., T, 9), got {values.shape}")


def camera_metrics_per_window(pred: Any, gt: Any) -> dict[str, np.ndarray]:
    """Every camera metric per window, as arrays of the leading (batch) shape.

    ``pred`` and ``gt`` are each camera-to-world poses (..., T, 4, 4), which are canonicalised to their first frame,
    or un-normalised canonical 9-D vectors (..., T, 9) (e.g. a tokenizer's reconstruction), which become poses by
    Gram-Schmidt as they are (the original's recipe: its reported figures come from the 9-D reconstruction).
    """
    pred_array = np.asarray(pred, dtype=np.float64)
    gt_array = np.asarray(gt, dtype=np.float64)
    pred_poses = _canonical_poses(pred_array, "predicted camera")
    gt_poses = _canonical_poses(gt_array, "ground-truth camera")
    if pred_poses.shape != gt_poses.shape:
        raise ValueError(f"camera metrics: prediction and ground truth shapes differ: pred {pred_array.shape}, "
                         f"gt {gt_array.shape}")
    functions = (ate_original, ate_se3, ate_sim3, ate_unaligned, rte, rre_deg)
    return {name: np.asarray(function(pred_poses, gt_poses)) for name, function in zip(CAMERA_METRICS, functions)}


def camera_metrics(pred: Any, gt: Any) -> dict[str, float]:
    """Camera metrics of one window or a batch (inputs as :func:`camera_metrics_per_window`).

    Returns ``<metric>`` = the mean over windows, ``<metric>_median`` and ``windows`` (the count), for the metrics
    :data:`CAMERA_METRICS` (metres, and degrees for ``rre_deg``).
    """
    per_window = camera_metrics_per_window(pred, gt)
    summary: dict[str, float] = {}
    for name, values in per_window.items():
        summary[name] = float(values.mean())
        summary[f"{name}_median"] = float(np.median(values))
    summary["windows"] = int(per_window[CAMERA_METRICS[0]].size)
    return summary


def gaze_mse(pred_units: Any, gt: Any) -> float:
    """The original's gaze MSE: mean squared difference in crop units over the valid ground-truth entries.

    ``pred_units``: predicted points (..., T, 2) in crop units (the decoded ``x * 0.5 + 0.5``). ``gt``: either crop
    units (..., T, 2) with NaN where missing (the valid entries are the non-NaN ones, as the original's example), or
    the tokenizer's input (..., T, 3) ``[x, y, valid]`` (its valid frames). NaN if nothing is valid.
    """
    pred = np.asarray(pred_units, dtype=np.float64)
    target = np.asarray(gt, dtype=np.float64)
    if target.ndim >= 1 and target.shape[-1] == 3:
        valid = np.broadcast_to(target[..., 2:3] > 0.5, target[..., :2].shape)
        target = target[..., :2] * 0.5 + 0.5
    else:
        valid = ~np.isnan(target)
    if pred.shape != target.shape or pred.shape[-1:] != (2,):
        raise ValueError(f"gaze MSE: expected pred (..., T, 2) and gt (..., T, 2) or (..., T, 3) of the same frames, "
                         f"got pred {pred.shape}, gt {np.shape(gt)}")
    if not valid.any():
        return float("nan")
    return float(((pred[valid] - target[valid]) ** 2).mean())


def gaze_error_px(pred_px: Any, gt_px: Any) -> float:
    """Mean Euclidean distance in pixels over the frames whose ground truth is present (not NaN).

    Give both in the same pixels, normally those of the square crop (:func:`.gaze.model_output_to_crop_pixels`).
    NaN if no frame is present.
    """
    pred, gt = _same_shape(pred_px, gt_px, "gaze error")
    if pred.ndim < 1 or pred.shape[-1] != 2:
        raise ValueError(f"gaze error: expected points (..., 2), got pred {pred.shape}, gt {gt.shape}")
    present = ~np.isnan(gt).any(axis=-1)
    if not present.any():
        return float("nan")
    return float(np.linalg.norm(pred[present] - gt[present], axis=-1).mean())


def gaze_metrics(pred_pixels: Any, gt_pixels: Any, frame: str | GazeFrame) -> dict[str, float]:
    """Gaze metrics of predicted against ground-truth pixels (..., T, 2) of the frame's original resolution.

    The ground truth's valid frames follow the tokenizer's rule (not NaN, inside [-0.2, 1.2] crop units).
    ``gaze_mse``: the original's MSE in crop units; ``gaze_error_crop_px``: mean distance in pixels of the square
    crop; ``valid_frames``: how many frames count.
    """
    pred_units, gt_units = _same_shape(pixels_to_crop_units(pred_pixels, frame),
                                       pixels_to_crop_units(gt_pixels, frame), "gaze metrics")
    crop = np.array(gaze_frame(frame).crop, dtype=np.float64)
    valid = valid_gaze(gt_units)
    gt_valid_px = np.where(valid[..., None], gt_units * crop, np.nan)
    return {
        "gaze_mse": gaze_mse(pred_units, pixels_to_model_input(gt_pixels, frame)),
        "gaze_error_crop_px": gaze_error_px(pred_units * crop, gt_valid_px),
        "valid_frames": float(valid.sum()),
    }
