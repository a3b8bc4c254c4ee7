"""Trajectory and gaze metrics: the original's printed figures on the shipped examples, and hand-built cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from egom2p.tokenizers.camera import canonicalize, poses_to_9d
from egom2p.tokenizers.gaze import GAZE_FRAMES, crop_units_to_pixels, pixels_to_crop_units, pixels_to_model_input
from egom2p.tokenizers.metrics import (
    CAMERA_METRICS,
    ate_original,
    ate_se3,
    ate_sim3,
    ate_unaligned,
    camera_metrics,
    camera_metrics_per_window,
    gaze_error_px,
    gaze_metrics,
    gaze_mse,
    rre_deg,
    rte,
)
from egom2p.tokenizers.synthetic import synthetic_camera_windows

EXAMPLES = Path(__file__).parent / "fixtures" / "examples"

# What the original's tok_cam_example.py prints, and the standard ATEs on the same pair
# (fixtures/TOKENIZERS_PARITY_README.md).
PRINTED = {
    "ate_original_m": 0.0058740,
    "rte_m": 0.0028375,
    "rre_deg": 0.29805,
    "ate_se3_m": 0.0056073,
    "ate_sim3_m": 0.0055237,
    "ate_unaligned_m": 0.0065794,
}


@pytest.fixture(scope="module")
def example() -> tuple[np.ndarray, np.ndarray]:
    return np.load(EXAMPLES / "token__cam-recon.npy"), np.load(EXAMPLES / "cam.npy")


def test_camera_metrics_reproduce_the_printed_figures(example: tuple[np.ndarray, np.ndarray]) -> None:
    recon_9d, gt_poses = example
    metrics = camera_metrics(recon_9d, gt_poses)
    for name, value in PRINTED.items():
        assert metrics[name] == pytest.approx(value, rel=1e-4), name
        assert metrics[f"{name}_median"] == metrics[name]
    assert metrics["windows"] == 1


def test_batched_camera_metrics_are_per_window(example: tuple[np.ndarray, np.ndarray]) -> None:
    recon_9d, gt_poses = example
    other_gt = synthetic_camera_windows(1, seed=2)[0]
    other_pred = other_gt.copy()
    other_pred[:, :3, 3] += np.linspace(0, 0.05, 60)[:, None]
    pred = np.stack([poses_to_9d(gt_poses), recon_9d, poses_to_9d(other_pred)])
    gt = np.stack([gt_poses, gt_poses, other_gt])
    per_window = camera_metrics_per_window(pred[None], gt[None])
    for name in CAMERA_METRICS:
        assert per_window[name].shape == (1, 3)
        singles = [camera_metrics(pred[i], gt[i])[name] for i in range(3)]
        np.testing.assert_allclose(per_window[name][0], singles, rtol=1e-12, atol=1e-15)
        summary = camera_metrics(pred, gt)
        assert summary[name] == pytest.approx(np.mean(singles), rel=1e-12, abs=1e-15)
        assert summary[f"{name}_median"] == pytest.approx(np.median(singles), rel=1e-12, abs=1e-15)
    assert per_window["ate_original_m"][0, 0] < 1e-12 and per_window["ate_unaligned_m"][0, 2] > 0.01


def _rigid(angle: float, axis: np.ndarray, translation: np.ndarray) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    transform = np.eye(4)
    transform[:3, :3] = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    transform[:3, 3] = translation
    return transform


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return canonicalize(synthetic_camera_windows(3, seed=7))


def test_a_trajectory_against_itself_is_zero(windows: np.ndarray) -> None:
    for function in (ate_original, ate_se3, ate_sim3, ate_unaligned, rte, rre_deg):
        assert np.all(np.asarray(function(windows, windows)) < 1e-9), function.__name__
    metrics = camera_metrics(poses_to_9d(windows), windows)  # 9-D against poses
    assert all(metrics[name] < 1e-9 for name in CAMERA_METRICS)


def test_a_rigidly_moved_copy(windows: np.ndarray) -> None:
    moved = _rigid(0.7, np.array([1.0, 2.0, -0.5]), np.array([0.3, -1.2, 2.0])) @ windows
    assert np.all(ate_se3(moved, windows) < 1e-12)
    assert np.all(ate_sim3(moved, windows) < 1e-12)
    assert np.all(rte(moved, windows) < 1e-12) and np.all(rre_deg(moved, windows) < 1e-9)
    assert np.all(ate_unaligned(moved, windows) > 0.1)
    # The original's ATE rotates about the origin only: a translation of the copy is an error to it...
    assert np.all(ate_original(moved, windows) > 0.01)
    # ...a rotation about the origin is not.
    turned = _rigid(0.7, np.array([1.0, 2.0, -0.5]), np.zeros(3)) @ windows
    assert np.all(ate_original(turned, windows) < 1e-12)
    # Canonicalising both (camera_metrics does) removes any rigid motion of the world.
    assert all(value < 1e-9 for name, value in camera_metrics(moved, windows).items() if name != "windows")


def test_a_scaled_copy(windows: np.ndarray) -> None:
    scaled = windows.copy()
    scaled[..., :3, 3] = 1.7 * scaled[..., :3, 3] + np.array([0.1, 0.2, 0.3])
    assert np.all(ate_sim3(scaled, windows) < 1e-12)
    assert np.all(ate_se3(scaled, windows) > 1e-3)


def test_a_constant_offset_gives_its_length_unaligned(windows: np.ndarray) -> None:
    offset = np.array([0.03, -0.04, 0.12])  # length 0.13
    shifted = windows.copy()
    shifted[..., :3, 3] += offset
    np.testing.assert_allclose(ate_unaligned(shifted, windows), 0.13, rtol=1e-12)
    assert np.all(ate_se3(shifted, windows) < 1e-12)
    np.testing.assert_allclose(rte(shifted, windows), 0.0, atol=1e-12)


def test_rte_and_rre_against_a_closed_form() -> None:
    # gt moves 0.1 m along x per frame without turning; pred turns by alpha about z each frame along the same
    # positions, so each relative error is a rotation by alpha with translation Rz(-k alpha) e_x - e_x (times 0.1).
    frames, alpha = 60, np.radians(1.5)
    gt = np.tile(np.eye(4), (frames, 1, 1))
    gt[:, 0, 3] = 0.1 * np.arange(frames)
    pred = np.stack([_rigid(k * alpha, np.array([0.0, 0.0, 1.0]), gt[k, :3, 3]) for k in range(frames)])
    steps = np.arange(frames - 1)
    expected_rte = np.sqrt(np.mean((0.2 * np.sin(steps * alpha / 2)) ** 2))
    assert rre_deg(pred, gt) == pytest.approx(1.5, rel=1e-12)
    assert rte(pred, gt) == pytest.approx(expected_rte, rel=1e-12)
    assert ate_unaligned(pred, gt) == pytest.approx(0.0, abs=1e-15)


def test_camera_shape_errors(windows: np.ndarray) -> None:
    with pytest.raises(ValueError) as error:
        ate_se3(windows[0], windows[0, :59])
    assert str(error.value) == ("camera trajectories: prediction and ground truth shapes differ: pred (60, 4, 4), "
                                "gt (59, 4, 4)")
    with pytest.raises(ValueError, match=r"^camera metrics: .* pred \(60, 9\), gt \(59, 4, 4\)$"):
        camera_metrics(poses_to_9d(windows[0]), windows[0, :59])
    with pytest.raises(ValueError, match=r"^predicted camera: expected poses .* or 9-D vectors .*, got \(60, 6\)$"):
        camera_metrics(np.zeros((60, 6)), windows[0])
    with pytest.raises(ValueError, match=r"^ground-truth camera: frame 3 has a non-finite value"):
        bad = windows[0].copy()
        bad[3, 0, 0] = np.nan
        camera_metrics(windows[0], bad)


def test_gaze_mse_reproduces_the_printed_figure() -> None:
    recon_units = np.load(EXAMPLES / "token__gaze-recon.npy")
    gt_pixels = np.load(EXAMPLES / "gaze.npy")
    frame = GAZE_FRAMES["holoassist"]
    assert gaze_mse(recon_units, pixels_to_crop_units(gt_pixels, frame)) == pytest.approx(4.1836e-5, rel=1e-4)
    # The model input form (float32, its valid frames) gives the same number.
    assert gaze_mse(recon_units, pixels_to_model_input(gt_pixels, frame)) == pytest.approx(4.1836e-5, rel=1e-4)
    metrics = gaze_metrics(crop_units_to_pixels(recon_units, frame), gt_pixels, frame)
    assert metrics["gaze_mse"] == pytest.approx(4.1836e-5, rel=1e-4)
    assert metrics["valid_frames"] == int((~np.isnan(gt_pixels).any(-1)).sum()) == 58
    # Mean crop-pixel distance, against a float64 reference over the same frames.
    valid = ~np.isnan(gt_pixels).any(-1)
    reference = np.linalg.norm((recon_units - pixels_to_crop_units(gt_pixels, frame))[valid] * 480, axis=-1).mean()
    assert metrics["gaze_error_crop_px"] == pytest.approx(reference, rel=1e-12)


def test_gaze_metrics_against_hand_built_cases() -> None:
    gt = np.array([[[0.5, 0.5], [np.nan, np.nan], [0.2, 0.8], [0.4, np.nan]]])
    pred = np.array([[[0.6, 0.5], [9.0, 9.0], [0.2, 0.6], [0.4, 7.0]]])
    # Valid entries: 0.5, 0.5, 0.2, 0.8, 0.4 -> squared errors 0.01, 0, 0, 0.04, 0.
    assert gaze_mse(pred, gt) == pytest.approx(0.05 / 5, rel=1e-12)
    assert np.isnan(gaze_mse(pred[:, 1:2], gt[:, 1:2]))
    model_input = np.concatenate([(np.nan_to_num(gt) - 0.5) / 0.5, [[[1.0], [0.0], [1.0], [0.0]]]], axis=-1)
    assert gaze_mse(pred, model_input) == pytest.approx(0.05 / 4, rel=1e-12)
    assert gaze_error_px(np.array([[3.0, 4.0], [50.0, 50.0]]), np.array([[0.0, 0.0], [np.nan, 1.0]])) == 5.0
    with pytest.raises(ValueError, match=r"^gaze MSE: .* got pred \(1, 3, 2\), gt \(1, 4, 2\)$"):
        gaze_mse(pred[:, :3], gt)
    with pytest.raises(ValueError, match=r"^gaze error: prediction and ground truth shapes differ: pred \(2, 2\), "
                                         r"gt \(3, 2\)$"):
        gaze_error_px(np.zeros((2, 2)), np.zeros((3, 2)))


def test_gaze_metrics_use_the_validity_rule() -> None:
    frame = GAZE_FRAMES["holoassist"]
    # Frame 1 is far left of the crop (x = -0.3 crop units): invalid, so its error does not count.
    gt_units = np.array([[0.5, 0.5], [-0.3, 0.5], [0.25, 0.75]])
    pred_units = gt_units + np.array([[0.0, 0.01], [0.5, 0.5], [0.03, 0.04]])
    metrics = gaze_metrics(crop_units_to_pixels(pred_units, frame), crop_units_to_pixels(gt_units, frame), frame)
    assert metrics["valid_frames"] == 2
    assert metrics["gaze_error_crop_px"] == pytest.approx((0.01 * 480 + 0.05 * 480) / 2, rel=1e-9)
    assert metrics["gaze_mse"] == pytest.approx((0.01**2 + 0.03**2 + 0.04**2) / 4, rel=1e-5)
