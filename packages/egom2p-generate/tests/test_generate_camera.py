"""9-D camera representation helpers (SPEC 9.3)."""

import numpy as np
import pytest
from egom2p.generate.camera import (
    CAM_MEAN,
    CAM_STD,
    canonicalize_poses,
    decode_normalized_cam,
    nine_d_to_poses,
    normalize_cam,
    poses_to_nine_d,
    unnormalize_cam,
)


def _random_poses(n, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.linalg.det(q))[:, None, None]  # proper rotations
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = q
    poses[:, :3, 3] = rng.normal(size=(n, 3))
    return poses


def test_round_trip_poses_nine_d_normalisation():
    poses = _random_poses(60)
    vec = normalize_cam(poses_to_nine_d(poses))
    np.testing.assert_allclose(decode_normalized_cam(vec), poses, atol=1e-12)
    np.testing.assert_allclose(unnormalize_cam(np.zeros(9)), CAM_MEAN)
    assert CAM_STD.shape == (9,) and CAM_MEAN[0] == 0.9330503976511908


def test_gram_schmidt_returns_rotations_for_noisy_columns():
    rng = np.random.default_rng(1)
    vec = poses_to_nine_d(_random_poses(10)) + 0.05 * rng.normal(size=(10, 9))
    rot = nine_d_to_poses(vec)[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (10, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0)
    np.testing.assert_allclose(rot[:, :, 0], vec[:, :3] / np.linalg.norm(vec[:, :3], axis=1, keepdims=True))


def test_canonicalize_makes_first_pose_identity():
    canon = canonicalize_poses(_random_poses(5))
    np.testing.assert_allclose(canon[0], np.eye(4), atol=1e-12)


def test_bad_shapes():
    with pytest.raises(ValueError, match="9 channels"):
        unnormalize_cam(np.zeros((60, 8)))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4, 4\]"):
        poses_to_nine_d(np.zeros((3, 3)))
