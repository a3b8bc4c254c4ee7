"""Tracks: quaternions and SLERP against float64 closed forms, resampling, gaps, windows, files and their errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from egom2p.tokenizers.camera import check_poses
from egom2p.tokenizers.metrics import rotation_angle
from egom2p.tokenizers.synthetic import synthetic_gaze_track, synthetic_head_motion
from egom2p.tokenizers.tracks import (
    CameraTrack,
    GazeTrack,
    camera_windows,
    gaze_windows,
    matrix_to_quaternion,
    quaternion_to_matrix,
    read_camera_track,
    read_camera_tracks,
    read_gaze_track,
    read_gaze_tracks,
    resample_camera,
    resample_gaze,
    slerp,
    write_camera_track_tum,
)


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula, float64."""
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _track(motion_seconds: float, fps: float, seed: int) -> tuple[CameraTrack, object]:
    motion = synthetic_head_motion(motion_seconds, seed)
    times = np.arange(int(motion_seconds * fps)) / fps
    return CameraTrack(times=times, poses=motion.poses_at(times), source="synthetic.npz"), motion


def test_quaternions_against_known_rotations() -> None:
    quarter_turn_z = matrix_to_quaternion(_axis_angle(np.array([0.0, 0.0, 1.0]), np.pi / 2))
    np.testing.assert_allclose(quarter_turn_z, [0, 0, np.sqrt(0.5), np.sqrt(0.5)], rtol=0, atol=1e-15)
    rng = np.random.default_rng(0)
    # Random axes and angles up to pi, including the near-pi cases where w is small.
    angles = np.concatenate([rng.uniform(0, np.pi, 20), [np.pi, np.pi - 1e-9, 0.0]])
    rotations = np.stack([_axis_angle(rng.normal(size=3), a) for a in angles])
    quaternions = matrix_to_quaternion(rotations)
    np.testing.assert_allclose(np.linalg.norm(quaternions, axis=-1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(quaternion_to_matrix(quaternions), rotations, rtol=0, atol=1e-14)
    np.testing.assert_allclose(2 * np.arccos(np.clip(quaternions[:, 3], -1, 1)), angles, rtol=0, atol=1e-7)


@pytest.mark.parametrize(("start", "end"), [(0.1, 1.3), (-0.4, 2.6), (0.0, 1e-10), (0.5, 0.5)])
def test_slerp_against_the_closed_form(start: float, end: float) -> None:
    # Rotations about one axis (then a common fixed rotation): SLERP turns the angle linearly.
    axis = np.array([0.3, -1.0, 0.5])
    common = _axis_angle(np.array([1.0, 1.0, 0.0]), 0.8)
    fractions = np.linspace(0, 1, 11)
    q0 = matrix_to_quaternion(_axis_angle(axis, start) @ common)
    q1 = matrix_to_quaternion(_axis_angle(axis, end) @ common)
    got = quaternion_to_matrix(slerp(np.broadcast_to(q0, (11, 4)), np.broadcast_to(q1, (11, 4)), fractions))
    expected = np.stack([_axis_angle(axis, start + f * (end - start)) @ common for f in fractions])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


def test_slerp_takes_the_shorter_arc() -> None:
    axis = np.array([0.0, 0.0, 1.0])
    q0 = matrix_to_quaternion(_axis_angle(axis, np.radians(170)))
    q1 = matrix_to_quaternion(_axis_angle(axis, np.radians(-170)))  # 20 degrees further, across +-180
    np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, q1, 0.5)), _axis_angle(axis, np.pi), atol=1e-14)
    np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, -q1, 0.25)), _axis_angle(axis, np.radians(175)),
                               atol=1e-14)


@pytest.mark.parametrize(("fps", "position_m", "angle_deg"), [(60.0, 1e-12, 1e-9), (24.0, 2e-3, 0.1),
                                                             (100.0, 2e-4, 0.01)])
def test_resampling_reproduces_the_continuous_motion(fps: float, position_m: float, angle_deg: float) -> None:
    track, motion = _track(12.0, fps, seed=4)
    resampled = resample_camera(track)
    np.testing.assert_allclose(np.diff(resampled.times), 1 / 30, rtol=0, atol=1e-12)
    assert resampled.times[0] == 0.0 and track.times[-1] - 1 / 30 < resampled.times[-1] <= track.times[-1]
    assert not resampled.missing.any()
    expected = motion.poses_at(resampled.times)
    check_poses(resampled.poses, atol=1e-12)
    assert np.abs(resampled.poses[:, :3, 3] - expected[:, :3, 3]).max() < position_m
    relative = np.swapaxes(resampled.poses[:, :3, :3], 1, 2) @ expected[:, :3, :3]
    assert np.degrees(rotation_angle(relative)).max() < angle_deg


def test_a_gap_is_not_bridged_and_its_windows_are_skipped() -> None:
    track, _ = _track(12.0, 60.0, seed=1)
    # Drop 0.5 s (source frames 300..329): the neighbours of the hole are 31 frame intervals apart.
    keep = np.r_[0:300, 330:len(track.times)]
    holed = CameraTrack(times=track.times[keep], poses=track.poses[keep], source="holed")
    resampled = resample_camera(holed)
    missing = np.flatnonzero(resampled.missing)
    # Output frames strictly between 299/60 s and 330/60 s: 30 fps frames 150..164.
    np.testing.assert_array_equal(missing, np.arange(150, 165))
    assert np.isnan(resampled.poses[missing]).all()

    windows, starts, skipped = camera_windows(resampled)
    all_starts = np.arange(0, len(resampled.times) - 60 + 1, 10)
    touching = [s for s in all_starts if resampled.missing[s:s + 60].any()]
    assert skipped == len(touching) > 0
    np.testing.assert_array_equal(starts.frames, [s for s in all_starts if s not in touching])
    np.testing.assert_array_equal(starts.times, resampled.times[starts.frames])
    assert windows.shape == (len(all_starts) - skipped, 60, 4, 4) and np.isfinite(windows).all()
    np.testing.assert_array_equal(windows[3], resampled.poses[starts.frames[3]:starts.frames[3] + 60])


def test_max_gap_threshold() -> None:
    track, _ = _track(4.0, 60.0, seed=2)
    one_dropped = np.r_[0:100, 101:len(track.times)]  # neighbours 2 intervals apart: bridged (< 2.5)
    two_dropped = np.r_[0:100, 102:len(track.times)]  # 3 intervals apart: not bridged
    bridged = resample_camera(CameraTrack(track.times[one_dropped], track.poses[one_dropped]))
    assert not bridged.missing.any()
    split = resample_camera(CameraTrack(track.times[two_dropped], track.poses[two_dropped]))
    np.testing.assert_array_equal(np.flatnonzero(split.missing), [50])  # 50/30 s lies in (99/60, 102/60)
    assert not resample_camera(CameraTrack(track.times[two_dropped], track.poses[two_dropped]),
                               max_gap=0.06).missing.any()


def test_missing_source_poses_stay_missing() -> None:
    track, _ = _track(4.0, 60.0, seed=3)
    poses = track.poses.copy()
    poses[[41, 90]] = np.nan  # at 60 -> 30 fps, 41 is never needed; 90 is output frame 45
    resampled = resample_camera(CameraTrack(track.times, poses))
    np.testing.assert_array_equal(np.flatnonzero(resampled.missing), [45])
    track, _ = _track(4.0, 25.0, seed=3)
    poses = track.poses.copy()
    poses[10] = np.nan  # 0.4 s: output frames in (9/25, 11/25) s need it
    resampled = resample_camera(CameraTrack(track.times, poses))
    np.testing.assert_array_equal(np.flatnonzero(resampled.missing), [11, 12, 13])


def test_gaze_resampling_and_windows_keep_blinks() -> None:
    frame = "holoassist"
    track = synthetic_gaze_track(12.0, seed=5, frame=frame, fps=60.0)
    resampled = resample_gaze(track)
    # At 60 -> 30 fps every output frame is a source frame: values and NaN carry over exactly.
    np.testing.assert_array_equal(resampled.pixels, track.pixels[::2][: len(resampled.times)])
    # A 1.5 s tracking loss in the middle: windows wholly inside it are skipped; the others keep their NaN.
    pixels = resampled.pixels.copy()
    pixels[100:240] = np.nan
    lost = GazeTrack(resampled.times, pixels, source="lost")
    windows, starts, skipped = gaze_windows(lost)
    all_starts = np.arange(0, len(pixels) - 60 + 1, 10)
    inside = [s for s in all_starts if 100 <= s and s + 60 <= 240]
    assert skipped == len(inside) == 9
    np.testing.assert_array_equal(starts.frames, [s for s in all_starts if s not in inside])
    assert windows.shape == (len(all_starts) - 9, 60, 2)
    assert np.isnan(windows).any(axis=(1, 2)).sum() > 0  # windows with blinks or part of the loss are kept
    assert not np.isnan(windows).all(axis=(1, 2)).any()


def test_gaze_interpolation_is_linear_and_does_not_bridge_nan() -> None:
    times = np.array([0.0, 0.04, 0.08, 0.12, 0.16, 0.20])  # 25 fps
    pixels = np.array([[0.0, 10.0], [4.0, 10.0], [8.0, 10.0], [np.nan, np.nan], [16.0, 10.0], [20.0, 10.0]])
    resampled = resample_gaze(GazeTrack(times, pixels))
    np.testing.assert_allclose(resampled.times, np.arange(7) / 30, rtol=0, atol=1e-15)  # 0.2 s included
    expected_x = [0.0, 100 / 30, 200 / 30, np.nan, np.nan, 500 / 30, 20.0]
    np.testing.assert_allclose(resampled.pixels[:, 0], expected_x, rtol=1e-12, atol=1e-12)


def test_windows_need_the_tokenizer_rate() -> None:
    track, _ = _track(3.0, 60.0, seed=0)
    with pytest.raises(ValueError) as error:
        camera_windows(track)
    assert str(error.value) == ("synthetic.npz: windows need a track at 30 fps (resample it first); frame 1 is "
                                "16.667 ms after the previous one")
    with pytest.raises(ValueError, match="^window stride must be a positive integer, got 0$"):
        camera_windows(resample_camera(track), stride=0)
    short, starts, skipped = camera_windows(resample_camera(track), length=100)
    assert short.shape == (0, 100, 4, 4) and len(starts.frames) == 0 and skipped == 0


def test_tum_round_trip(tmp_path: Path) -> None:
    track, _ = _track(3.0, 30.0, seed=6)
    path = tmp_path / "walk.txt"
    write_camera_track_tum(path, track)
    back = read_camera_track(path)
    np.testing.assert_array_equal(back.times, track.times)
    np.testing.assert_allclose(back.poses, track.poses, rtol=0, atol=1e-14)
    assert back.source == str(path)


def test_tum_text_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "hand.tum"
    path.write_text("# timestamp tx ty tz qx qy qz qw\n"
                    "0.0 1 2 3 0 0 0 1\n"
                    "\n"
                    "0.5 1 2 3.5 0 0 2 2   # a 90 degree turn about z, quaternion not normalised\n")
    track = read_camera_track(path)
    np.testing.assert_array_equal(track.times, [0.0, 0.5])
    np.testing.assert_allclose(track.poses[1, :3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_array_equal(track.poses[:, :3, 3], [[1, 2, 3], [1, 2, 3.5]])


def test_npy_npz_and_folders(tmp_path: Path) -> None:
    track, _ = _track(2.0, 30.0, seed=8)
    np.save(tmp_path / "b.npy", track.poses)
    np.savez(tmp_path / "a.npz", poses=track.poses, times=track.times + 5.0)
    np.savez(tmp_path / "c.npz", poses=track.poses[:10], fps=np.float64(15.0))
    (tmp_path / "notes.md").write_text("not a track")
    from_npy = read_camera_track(tmp_path / "b.npy", fps=30.0)
    np.testing.assert_array_equal(from_npy.poses, track.poses)
    np.testing.assert_allclose(from_npy.times, track.times, rtol=0, atol=1e-15)
    tracks = read_camera_tracks(tmp_path, fps=30.0)
    assert [Path(t.source).name for t in tracks] == ["a.npz", "b.npy", "c.npz"]
    assert tracks[0].times[0] == 5.0
    np.testing.assert_allclose(tracks[2].times, np.arange(10) / 15.0, rtol=0, atol=1e-15)

    gaze = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]])
    np.savez(tmp_path / "g.npz", gaze=gaze, fps=30)
    np.save(tmp_path / "g.npy", gaze)
    (tmp_path / "g.txt").write_text("0 1 2\n0.1 nan nan\n0.2 3 4\n")
    for name, fps in (("g.npz", None), ("g.npy", 30.0), ("g.txt", None)):
        read = read_gaze_track(tmp_path / name, fps=fps)
        np.testing.assert_array_equal(read.pixels, gaze)
        np.testing.assert_array_equal(read.missing, [False, True, False])
    assert len(read_gaze_tracks(tmp_path / "g.txt")) == 1


def _error(kind: type[Exception], call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """The message of the ``kind`` error that ``call(*args, **kwargs)`` raises, checked to be one line."""
    with pytest.raises(kind) as error:
        call(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    def camera(name: str, **kwargs: object) -> str:  # the ValueError of reading the camera track tmp_path/name
        return _error(ValueError, read_camera_track, tmp_path / name, **kwargs)

    poses = np.tile(np.eye(4), (5, 1, 1))
    assert _error(FileNotFoundError, read_camera_track, tmp_path / "none.npz") == (
        f"camera track not found: {tmp_path / 'none.npz'}")

    (tmp_path / "x.csv").write_text("1 2 3")
    assert camera("x.csv") == (f"{tmp_path / 'x.csv'}: unsupported camera track file type '.csv'; use one of .npy, "
                               ".npz, .txt, .tum")

    np.save(tmp_path / "p.npy", poses)
    assert camera("p.npy") == f"{tmp_path / 'p.npy'}: a .npy track carries no times; give its frame rate (fps)"

    np.save(tmp_path / "flat.npy", np.zeros((5, 9)))
    assert camera("flat.npy", fps=30) == (
        f"{tmp_path / 'flat.npy'}: expected camera poses of shape (N, 4, 4), got (5, 9)")

    np.savez(tmp_path / "k.npz", pose=poses, times=np.arange(5.0))
    assert camera("k.npz") == (
        f"{tmp_path / 'k.npz'}: no array 'poses' (camera poses (N, 4, 4)); found keys: pose, times")

    np.savez(tmp_path / "t.npz", poses=poses)
    assert camera("t.npz") == (f"{tmp_path / 't.npz'}: needs exactly one of 'times' (seconds per frame) or 'fps' "
                               "beside 'poses'; found keys: poses")

    np.savez(tmp_path / "order.npz", poses=poses, times=np.array([0.0, 0.1, 0.2, 0.2, 0.3]))
    assert camera("order.npz") == (
        f"{tmp_path / 'order.npz'}: times must be strictly increasing; frame 3 at 0.2 s follows 0.2 s")

    skewed = poses.copy()
    skewed[2, 0, 1] = 0.3
    np.savez(tmp_path / "skew.npz", poses=skewed, fps=30.0)
    assert camera("skew.npz") == (
        f"{tmp_path / 'skew.npz'}: frame 2 has a rotation that is not orthonormal (R^T R != I)")

    (tmp_path / "short.txt").write_text("# t tx ty tz qx qy qz qw\n0 0 0 0 0 0 0 1\n0.1 0 0 0 0 0 1\n")
    assert camera("short.txt") == (f"{tmp_path / 'short.txt'}:3: expected 8 numbers 't tx ty tz qx qy qz qw', "
                                   "got '0.1 0 0 0 0 0 1'")

    (tmp_path / "zero.txt").write_text("0 0 0 0 0 0 0 0\n")
    assert camera("zero.txt") == f"{tmp_path / 'zero.txt'}: the quaternion of sample 0 is zero or NaN"

    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert _error(ValueError, read_gaze_track, tmp_path / "bad.npy", fps=30).startswith(
        f"{tmp_path / 'bad.npy'}: not a readable .npy array (")

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    assert _error(ValueError, read_gaze_track, tmp_path / "objects.npy", fps=30).startswith(
        f"{tmp_path / 'objects.npy'}: not a readable .npy array (")

    np.savez(tmp_path / "gaze3.npz", gaze=np.zeros((4, 3)), fps=30)
    assert _error(ValueError, read_gaze_track, tmp_path / "gaze3.npz") == (
        f"{tmp_path / 'gaze3.npz'}: expected gaze pixels of shape (N, 2), got (4, 3)")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error(FileNotFoundError, read_camera_tracks, empty) == (
        f"no camera track files (.npy, .npz, .txt, .tum) in {empty}")
    assert camera("empty") == f"{empty}: is a folder; read its files with read_camera_tracks"

    assert _error(ValueError, CameraTrack, times=np.zeros(0), poses=np.zeros((0, 4, 4)), source="nothing.npz") == (
        "nothing.npz: the track has no frames")
    assert _error(ValueError, resample_gaze, GazeTrack(np.arange(3.0), np.zeros((3, 2)), source="g.txt"),
                  max_gap=0.0) == "g.txt: max_gap must be a positive number of seconds, got 0.0"
