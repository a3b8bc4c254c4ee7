"""The camera convention against the original's preprocessing (the parity fixture) and float64 references."""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.tokenizers.camera import (
    BASES,
    CAM_MEAN,
    CAM_STD,
    basis_matrix,
    canonicalize,
    change_basis,
    check_poses,
    denormalize_9d,
    model_output_to_poses,
    nine_d_to_poses,
    normalize_9d,
    poses_to_9d,
    poses_to_model_input,
)
from egom2p.tokenizers.synthetic import synthetic_camera_windows


def test_statistics_are_the_originals(cam: dict) -> None:
    np.testing.assert_array_equal(CAM_MEAN, np.asarray(cam["cam_mean"], dtype=np.float64))
    np.testing.assert_array_equal(CAM_STD, np.asarray(cam["cam_std"], dtype=np.float64))


@pytest.mark.parametrize("sample", range(4))
def test_basis_and_canonical_9d_match_the_original(cam: dict, sample: int) -> None:
    raw = cam["raw_poses"][sample]
    vectors = poses_to_9d(change_basis(raw, cam["basis"][sample]))
    np.testing.assert_allclose(vectors, cam["canonical_9d"][sample], rtol=0, atol=1e-12)


@pytest.mark.parametrize("sample", range(4))
def test_model_input_matches_the_original(cam: dict, sample: int) -> None:
    model_input = poses_to_model_input(cam["raw_poses"][sample], basis=cam["basis"][sample])
    assert model_input.dtype == np.float32 and model_input.shape == (60, 9)
    np.testing.assert_array_equal(model_input, cam["input"][sample].numpy())


def test_model_input_of_a_batch_matches_the_original(cam: dict) -> None:
    # The four samples share no basis, so bring them to OpenCV first and batch them with basis "none".
    opencv = np.stack([change_basis(cam["raw_poses"][i], cam["basis"][i]) for i in range(4)])
    np.testing.assert_array_equal(poses_to_model_input(opencv), cam["input"].numpy())
    np.testing.assert_array_equal(poses_to_model_input(opencv[None, 1:3]), cam["input"].numpy()[None, 1:3])


def test_bases_are_the_specs_rotations() -> None:
    np.testing.assert_array_equal(BASES["holoassist"][:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    np.testing.assert_array_equal(BASES["egoexo"][:3, :3], [[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(BASES["egogen"], np.diag([1.0, -1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(BASES["none"], np.eye(4))
    assert BASES["aria"] is BASES["egoexo"]
    for name, matrix in BASES.items():
        check_poses(matrix, where=name)
        assert not matrix.flags.writeable


def test_basis_matrix_accepts_names_matrices_and_none() -> None:
    assert basis_matrix(None) is BASES["none"]
    assert basis_matrix("holoassist") is BASES["holoassist"]
    turn = np.eye(4)
    turn[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    np.testing.assert_array_equal(basis_matrix(turn), turn)
    with pytest.raises(ValueError, match=r"^unknown camera basis 'opengl'; known: none, holoassist, egoexo, aria, "
                                         r"egogen$"):
        basis_matrix("opengl")
    with pytest.raises(ValueError, match="camera basis: the pose has a rotation that is not orthonormal"):
        basis_matrix(np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"expected a name or one 4x4 matrix, got shape \(2, 4, 4\)"):
        basis_matrix(np.stack([np.eye(4), np.eye(4)]))


def test_change_basis_right_multiplies() -> None:
    poses = synthetic_camera_windows(2, seed=3)
    for name, matrix in BASES.items():
        changed = change_basis(poses, name)
        np.testing.assert_allclose(changed[1, 7], poses[1, 7] @ matrix, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(60,), (3, 60), (2, 2, 17)])
def test_gram_schmidt_round_trip_of_rigid_poses(shape: tuple[int, ...]) -> None:
    count = int(np.prod(shape[:-1]))
    windows = synthetic_camera_windows(count, seed=11)[:, : shape[-1]].reshape(*shape, 4, 4)
    canonical = canonicalize(windows)
    np.testing.assert_allclose(canonical[..., 0, :, :], np.broadcast_to(np.eye(4), canonical[..., 0, :, :].shape),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(nine_d_to_poses(poses_to_9d(windows)), canonical, rtol=0, atol=1e-12)


def test_gram_schmidt_of_perturbed_vectors_matches_a_float64_reference() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 9))
    poses = nine_d_to_poses(vectors)
    check_poses(poses, atol=1e-12)
    for v, pose in zip(vectors, poses):
        a, b = v[:3], v[3:6]
        col0 = a / np.linalg.norm(a)
        col1 = b - b.dot(col0) * col0
        col1 /= np.linalg.norm(col1)
        expected = np.column_stack([col0, col1, np.cross(col0, col1)])
        np.testing.assert_allclose(pose[:3, :3], expected, rtol=0, atol=1e-14)
        np.testing.assert_array_equal(pose[:3, 3], v[6:])


def test_model_output_inverts_model_input() -> None:
    windows = synthetic_camera_windows(3, seed=5)
    model_input = poses_to_model_input(windows, basis="egoexo")
    np.testing.assert_allclose(denormalize_9d(normalize_9d(poses_to_9d(windows))), poses_to_9d(windows),
                               rtol=0, atol=1e-15)
    decoded = model_output_to_poses(model_input)
    assert decoded.dtype == np.float64 and decoded.shape == (3, 60, 4, 4)
    # float32 rounding of the normalised input, scaled back by CAM_STD: well under a millimetre.
    np.testing.assert_allclose(decoded, canonicalize(change_basis(windows, "egoexo")), rtol=0, atol=1e-6)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_check_poses_refuses_bad_poses_naming_the_frame_and_defect() -> None:
    poses = synthetic_camera_windows(2, seed=1)
    np.testing.assert_array_equal(check_poses(poses), poses)

    with pytest.raises(ValueError) as error:
        check_poses(poses[..., :3, :], where="walk.npz")
    assert _one_line(error) == "walk.npz: expected poses of shape (..., 4, 4), got (2, 60, 3, 4)"

    nan = poses.copy()
    nan[0, 7, 1, 2] = np.nan
    with pytest.raises(ValueError) as error:
        check_poses(nan[0], where="cam")
    assert _one_line(error) == "cam: frame 7 has a non-finite value (NaN or inf)"

    scaled = poses.copy()
    scaled[1, 5, :3, :3] *= 1.1
    scaled[1, 9, :3, :3] *= 1.1
    with pytest.raises(ValueError) as error:
        check_poses(scaled, where="batch")
    assert _one_line(error) == "batch: frame (1, 5) has a rotation that is not orthonormal (R^T R != I)"

    mirrored = poses.copy()
    mirrored[0, 3, :3, 0] *= -1
    with pytest.raises(ValueError, match=r"^poses: frame \(0, 3\) has a reflection instead of a rotation"):
        check_poses(mirrored)

    row = poses.copy()
    row[0, 2, 3, 0] = 0.5
    with pytest.raises(ValueError, match=r"^poses: frame \(0, 2\) has a last row other than \[0, 0, 0, 1\]"):
        check_poses(row)

    # The first bad frame wins, whatever its defect.
    both = poses[0].copy()
    both[4, :3, :3] *= 1.1
    both[6, 0, 0] = np.inf
    with pytest.raises(ValueError, match="^poses: frame 4 has a rotation that is not orthonormal"):
        check_poses(both)
    # Small float32 rounding passes.
    check_poses(poses.astype(np.float32))


def test_shape_errors_of_the_9d_functions() -> None:
    with pytest.raises(ValueError, match=r"^9-D camera vectors: expected shape \(\.\.\., 9\), got \(60, 8\)$"):
        normalize_9d(np.zeros((60, 8)))
    with pytest.raises(ValueError, match=r"^normalised 9-D camera vectors: expected shape"):
        model_output_to_poses(np.zeros((2, 60, 6)))
    with pytest.raises(ValueError, match=r"^poses: expected a window of poses \(\.\.\., T, 4, 4\), got \(4, 4\)$"):
        poses_to_model_input(np.eye(4))
