"""Synthetic head motion and gaze: deterministic, rigid, within their stated bounds, with the events they promise."""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.tokenizers.camera import check_poses
from egom2p.tokenizers.gaze import GAZE_FRAMES, pixels_to_crop_units, valid_gaze
from egom2p.tokenizers.metrics import rotation_angle
from egom2p.tokenizers.synthetic import (
    MAX_ANGULAR_SPEED_RAD_S,
    MAX_SPEED_M_S,
    MOTION_KINDS,
    synthetic_camera_track,
    synthetic_camera_windows,
    synthetic_gaze_track,
    synthetic_gaze_windows,
    synthetic_head_motion,
)


def test_deterministic_by_seed() -> None:
    np.testing.assert_array_equal(synthetic_camera_windows(3, seed=4), synthetic_camera_windows(3, seed=4))
    np.testing.assert_array_equal(synthetic_gaze_windows(3, 4, "holoassist"), synthetic_gaze_windows(3, 4, "holoassist"))
    first, again = synthetic_camera_track(5.0, 9, "walk"), synthetic_camera_track(5.0, 9, "walk")
    np.testing.assert_array_equal(first.poses, again.poses)
    np.testing.assert_array_equal(first.times, again.times)
    assert not np.allclose(synthetic_camera_windows(3, seed=4), synthetic_camera_windows(3, seed=5))
    assert not np.allclose(synthetic_gaze_windows(3, 4, "egoexo"), synthetic_gaze_windows(3, 5, "egoexo"),
                           equal_nan=True)


def test_shapes_and_times() -> None:
    assert synthetic_camera_windows(4, seed=0).shape == (4, 60, 4, 4)
    assert synthetic_gaze_windows(4, 0, GAZE_FRAMES["egoexo"]).shape == (4, 60, 2)
    track = synthetic_camera_track(3.0, seed=0, fps=24.0)
    np.testing.assert_allclose(track.times, np.arange(72) / 24.0, rtol=0, atol=1e-15)
    assert synthetic_gaze_track(2.5, 0, "holoassist").pixels.shape == (75, 2)


@pytest.mark.parametrize("kind", [None, *MOTION_KINDS])
def test_motion_is_rigid_and_within_its_bounds(kind: str | None) -> None:
    for seed in range(4):
        # 120 fps: finite differences of a smooth motion stay below its true speeds.
        track = synthetic_camera_track(20.0, seed, kind, fps=120.0)
        poses = track.poses
        check_poses(poses, atol=1e-12)
        speed = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=-1) * 120
        relative = np.swapaxes(poses[:-1, :3, :3], 1, 2) @ poses[1:, :3, :3]
        angular = rotation_angle(relative) * 120
        assert speed.max() < MAX_SPEED_M_S and angular.max() < MAX_ANGULAR_SPEED_RAD_S
        # Smooth: speeds change by less than a head's accelerations allow between frames (< 15 m/s^2, rad/s^2).
        assert np.abs(np.diff(speed)).max() * 120 < 15 and np.abs(np.diff(angular)).max() * 120 < 15
        if kind == "still":
            assert speed.max() < 1e-9 and 0 < angular.max() < 0.5
        if kind == "walk":
            assert speed.mean() > 0.7
            # Head bob: the height oscillates by centimetres.
            height = poses[:, 2, 3]
            assert 0.01 < height.max() - height.min() < 0.06
        if kind == "turn":
            forward = poses[:, :2, 2]
            heading = np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))
            assert np.abs(heading[-1] - heading[0]) > 1.0


def test_camera_looks_along_the_walk() -> None:
    poses = synthetic_camera_track(10.0, seed=3, kind="walk").poses
    travel = poses[-1, :2, 3] - poses[0, :2, 3]
    forward = poses[:, :3, 2].mean(axis=0)
    # OpenCV: z forward, y down; world z up.
    assert np.dot(forward[:2] / np.linalg.norm(forward[:2]), travel / np.linalg.norm(travel)) > 0.5
    assert (poses[:, 2, 1] < -0.8).all()  # the camera's y axis points down


def test_continuous_motion_range() -> None:
    motion = synthetic_head_motion(2.0, seed=0)
    assert motion.duration == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"^times must lie in \[0, 2\] s, got \[0, 2.5\]$"):
        motion.poses_at(np.array([0.0, 2.5]))
    with pytest.raises(ValueError, match="^unknown motion kind 'run'; known: walk, turn, look_around, still"):
        synthetic_head_motion(2.0, seed=0, kind="run")
    with pytest.raises(ValueError, match="^seconds must be positive, got -1.0$"):
        synthetic_camera_track(-1.0, seed=0)
    with pytest.raises(ValueError, match="^the number of windows must be a positive integer, got 0$"):
        synthetic_gaze_windows(0, 1, "egoexo")


@pytest.mark.parametrize("frame", ["holoassist", "egoexo"])
def test_gaze_has_fixations_saccades_and_blinks(frame: str) -> None:
    for seed in range(3):
        track = synthetic_gaze_track(30.0, seed, frame)
        units = pixels_to_crop_units(track.pixels, frame)
        missing = np.isnan(units).any(axis=-1)
        # Blinks: runs of 2 to 6 NaN frames (about 70 to 200 ms), several in 30 s.
        edges = np.diff(np.r_[0, missing.astype(int), 0])
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        assert len(runs) >= 3 and runs.min() >= 2 and runs.max() <= 6
        steps = np.linalg.norm(np.diff(units, axis=0), axis=-1)
        steps = steps[~np.isnan(steps)]
        fixating = steps < 0.015  # jitter of a few pixels
        saccades = steps > 0.05
        assert fixating.mean() > 0.6 and 20 < saccades.sum() < 0.25 * len(steps)
        # Points stay in the recorded image; with HoloAssist's crop a few fall outside the valid range.
        pixels = track.pixels[~missing]
        assert (pixels >= -1e-9).all() and (pixels <= np.array(GAZE_FRAMES[frame].orig_res) + 1e-9).all()
        assert valid_gaze(units[~missing]).mean() > 0.8


@pytest.mark.parametrize("count,segment", [(5000, 1500), (20000, 1200), (3000, 5000), (700, 100), (1, 10), (2401, 300)])
def test_the_behaviour_blend_is_the_hann_convolution_of_the_edge_padded_targets(count, segment):
    """The jump-based blend equals np.convolve of the edge-padded targets with the normalised Hann window (segments
    shorter, equal to and longer than the window; a single sample)."""
    from egom2p.tokenizers import synthetic

    width = int(synthetic._BLEND_S * synthetic._FINE_HZ)
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    rng = np.random.default_rng(count)
    targets = np.repeat(rng.normal(size=(-(-count // segment), 4)), segment, axis=0)[:count]
    padded = np.pad(targets, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    expected = np.stack([np.convolve(padded[:, c], window, mode="valid") for c in range(4)], axis=-1)
    np.testing.assert_allclose(synthetic._blend(targets), expected, rtol=0, atol=1e-12)
