"""``egom2p-tokenize metrics`` against the original's recorded figures on its example files
(fixtures/TOKENIZERS_PARITY_README.md), in every layout and space a side may come in, and against float64
references."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from egom2p.tokenizers.camera import canonicalize, check_poses, nine_d_to_poses, normalize_9d, poses_to_9d
from egom2p.tokenizers.gaze import GAZE_FRAMES, crop_units_to_pixels, pixels_to_crop_units
from egom2p.tokenizers.metrics import camera_metrics
from egom2p.tokenizers.synthetic import synthetic_camera_windows
from tokenize_cli_helpers import EXAMPLES, json_line, run

CAM, CAM_RECON = EXAMPLES / "cam.npy", EXAMPLES / "token__cam-recon.npy"
GAZE, GAZE_RECON = EXAMPLES / "gaze.npy", EXAMPLES / "token__gaze-recon.npy"
HOLOASSIST = ["--orig-res", 896, 504, "--resize-res", 896, 504, "--crop", 480, 480]

# What the original's example prints, and the aligned ATEs of the same pair (the fixture README), to their digits.
# (The README's unaligned 0.0065794 is 1e-7 off the float64 value 0.00657930, so it is not among them.)
ORIGINAL = {"ate_original_m": (0.0058740, 5e-8), "rte_m": (0.0028375, 5e-8), "rre_deg": (0.29805, 5e-6),
            "ate_se3_m": (0.0056073, 5e-8), "ate_sim3_m": (0.0055237, 5e-8)}
GAZE_MSE = (4.1836e-5, 5e-10)


def _check_camera(metrics: dict, windows: int = 1, names: tuple[str, ...] = tuple(ORIGINAL)) -> None:
    for name in names:
        value, tolerance = ORIGINAL[name]
        assert abs(metrics[name] - value) <= tolerance, (name, metrics[name])
    assert metrics["windows"] == windows


def test_camera_example_prints_the_original_figures(capsys):
    # token__cam-recon.npy is the canonical (un-normalised) 9-D reconstruction; cam.npy world poses.
    _check_camera(json_line(run(capsys, "metrics", "--pred", CAM_RECON, "--gt", CAM)))


def test_camera_sides_in_any_layout_and_space(capsys, tmp_path):
    recon, gt = np.load(CAM_RECON).astype(np.float64), np.load(CAM)
    # The ground truth as canonical 9-D: the same figures.
    np.save(tmp_path / "gt_9d.npy", poses_to_9d(gt))
    _check_camera(json_line(run(capsys, "metrics", "--pred", CAM_RECON, "--gt", tmp_path / "gt_9d.npy")))
    # The reconstruction as world poses (put where the ground truth's first pose is): they are canonicalised to their
    # own first pose, which the 9-D reconstruction is not (the original's recipe), so the figures that do not depend
    # on where the trajectory starts are the same, the original's ATE is not.
    np.save(tmp_path / "pred_poses.npy", gt[:1] @ nine_d_to_poses(recon))
    metrics = json_line(run(capsys, "metrics", "--pred", tmp_path / "pred_poses.npy", "--gt", CAM))
    _check_camera(metrics, names=("rte_m", "rre_deg", "ate_se3_m", "ate_sim3_m"))
    assert abs(metrics["ate_original_m"] - ORIGINAL["ate_original_m"][0]) > 1e-5
    # The tokenizer's own output space: normalised 9-D.
    np.save(tmp_path / "pred_model.npy", normalize_9d(recon))
    _check_camera(json_line(run(capsys, "metrics", "--pred", tmp_path / "pred_model.npy", "--pred-space", "model",
                                "--gt", CAM, "--kind", "cam")))
    # Batched: three copies are three windows with the same mean.
    np.save(tmp_path / "pred_batch.npy", np.stack([recon] * 3))
    np.save(tmp_path / "gt_batch.npy", np.stack([gt] * 3))
    _check_camera(json_line(run(capsys, "metrics", "--pred", tmp_path / "pred_batch.npy", "--gt",
                                tmp_path / "gt_batch.npy")), windows=3)


def test_camera_batch_equals_the_library_and_a_float64_reference(capsys, tmp_path):
    gt = synthetic_camera_windows(4, seed=3)
    rng = np.random.default_rng(0)
    noise = rng.normal(scale=0.01, size=(4, 60, 3))
    pred = gt.copy()
    pred[..., :3, 3] += noise  # translations only: rotations stay rigid
    np.save(tmp_path / "pred.npy", pred)
    np.save(tmp_path / "gt.npy", gt)
    metrics = json_line(run(capsys, "metrics", "--pred", tmp_path / "pred.npy", "--gt", tmp_path / "gt.npy"))
    assert metrics == camera_metrics(pred, gt)
    # Unaligned ATE by hand in float64: canonical translations, RMSE per window, mean over windows.
    translation = lambda poses: canonicalize(poses)[..., :3, 3]  # noqa: E731
    per_window = np.sqrt(((translation(pred) - translation(gt)) ** 2).sum(-1).mean(-1))
    assert metrics["ate_unaligned_m"] == pytest.approx(per_window.mean(), rel=1e-12)
    assert metrics["ate_unaligned_m_median"] == pytest.approx(np.median(per_window), rel=1e-12)
    check_poses(pred)  # the test's prediction is a valid trajectory


def _gaze_reference(pred_units: np.ndarray, gt_pixels: np.ndarray) -> tuple[float, float]:
    """(MSE over the non-NaN entries in crop units, mean error in 480 x 480 crop pixels), as the original computes."""
    gt_units = (gt_pixels / [896, 504] * [896, 504] - [(896 - 480) / 2, (504 - 480) / 2]) / 480  # HoloAssist crop
    present = ~np.isnan(gt_units).any(-1)
    mse = ((pred_units - gt_units)[present] ** 2).mean()
    error = np.linalg.norm((pred_units - gt_units)[present] * 480, axis=-1).mean()
    return float(mse), float(error)


@pytest.mark.parametrize("frame", [HOLOASSIST, ["--gaze-frame", "holoassist"]], ids=["sizes", "preset"])
def test_gaze_example_prints_the_original_mse(capsys, frame):
    # token__gaze-recon.npy holds crop units ([0, 1] inside the crop: the decoded x * 0.5 + 0.5), as the figure shows.
    metrics = json_line(run(capsys, "metrics", "--pred", GAZE_RECON, "--pred-space", "crop", "--gt", GAZE, *frame))
    assert abs(metrics["gaze_mse"] - GAZE_MSE[0]) <= GAZE_MSE[1]
    mse, error = _gaze_reference(np.load(GAZE_RECON).astype(np.float64), np.load(GAZE))
    assert metrics["gaze_mse"] == pytest.approx(mse, rel=1e-6)  # the ground truth passes the float32 model input
    assert metrics["gaze_error_crop_px"] == pytest.approx(error, rel=1e-12)
    assert metrics["valid_frames"] == int((~np.isnan(np.load(GAZE)).any(-1)).sum())


def test_gaze_prediction_in_pixels_or_model_space(capsys, tmp_path):
    units = np.load(GAZE_RECON).astype(np.float64)
    frame = GAZE_FRAMES["holoassist"]
    np.save(tmp_path / "pixels.npy", crop_units_to_pixels(units, frame))
    np.save(tmp_path / "model.npy", units * 2 - 1)
    for name, space in (("pixels.npy", "signal"), ("model.npy", "model")):
        metrics = json_line(run(capsys, "metrics", "--pred", tmp_path / name, "--pred-space", space, "--gt", GAZE,
                                *HOLOASSIST))
        assert abs(metrics["gaze_mse"] - GAZE_MSE[0]) <= GAZE_MSE[1], space
    # A batch of two windows: the second one shifted by 0.01 crop units in x.
    gt = np.load(GAZE)
    shifted = crop_units_to_pixels(pixels_to_crop_units(gt, frame) + [0.01, 0.0], frame)
    np.save(tmp_path / "gt_batch.npy", np.stack([gt, gt]))
    np.save(tmp_path / "pred_batch.npy", np.stack([gt, shifted]))
    metrics = json_line(run(capsys, "metrics", "--pred", tmp_path / "pred_batch.npy", "--gt", tmp_path / "gt_batch.npy",
                            "--gaze-frame", "holoassist"))
    # Half the valid entries are off by 0.01 in x only: MSE over x and y entries = 0.01^2 / 4.
    assert metrics["gaze_mse"] == pytest.approx(0.01**2 / 4, rel=1e-6)
    assert metrics["gaze_error_crop_px"] == pytest.approx(0.01 * 480 / 2, rel=1e-9)


def test_the_console_script_prints_one_json_line_and_nothing_else():
    script = Path(sys.executable).parent / "egom2p-tokenize"  # installed with the package's [project.scripts]
    done = subprocess.run([script, "metrics", "--pred", CAM_RECON, "--gt", CAM], capture_output=True, text=True,
                          check=False)
    assert (done.returncode, done.stderr) == (0, "")
    _check_camera(json.loads(done.stdout))
    assert done.stdout.count("\n") == 1
