"""Camera trajectories in EgoM2P's 9-D form (SPEC 9.3): normalisation and conversion to 4x4 poses.

Each frame of a canonicalised trajectory (first pose = identity, OpenCV convention) is
[first column of R, second column of R, translation], normalised per channel with CAM_MEAN and
CAM_STD. The camera VQ-VAE that maps tokens to these vectors is not part of this package, so camera
metrics in `egom2p.generate.tasks` stay at token level; these helpers turn the tokenizer's decoded
output into poses.
"""

from __future__ import annotations

import numpy as np

# Data constants of the released camera tokenizer (egom2p/utils/data_constants.py), verbatim.
CAM_MEAN = np.array(
    [0.9330503976511908, 0.004411310479848365, -0.004745505205447648, -0.004031105018382311,
     0.9670221745404669, 0.01229744056849661, 0.0025366981809852238, -0.002534521133857395,
     0.03687088469884694]
)  # fmt: skip
CAM_STD = np.array(
    [0.22410282941424692, 0.15409594854789294, 0.23538762722445528, 0.151592393482513,
     0.09890854498671052, 0.17871060521456542, 0.16229749698697332, 0.11305994570310635,
     0.22450155613920986]
)  # fmt: skip


def _check_nine(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] != 9:
        raise ValueError(f"{what} must end in 9 channels (rot col 0, rot col 1, translation), got shape {x.shape}")
    return x


def normalize_cam(vectors: np.ndarray) -> np.ndarray:
    """(v - CAM_MEAN) / CAM_STD per channel; `vectors` is [..., 9]."""
    return (_check_nine(vectors, "camera vectors") - CAM_MEAN) / CAM_STD


def unnormalize_cam(normalized: np.ndarray) -> np.ndarray:
    """x * CAM_STD + CAM_MEAN per channel, the inverse of `normalize_cam`; `normalized` is [..., 9]."""
    return _check_nine(normalized, "normalized camera vectors") * CAM_STD + CAM_MEAN


def nine_d_to_poses(vectors: np.ndarray) -> np.ndarray:
    """Turn un-normalised 9-D frames [..., 9] into 4x4 camera-to-world poses [..., 4, 4].

    Gram-Schmidt on the two rotation columns: col0 normalised; col1 minus its component along
    col0, normalised; col2 = col0 x col1. Translation = the last three values.
    """
    v = _check_nine(vectors, "camera vectors")
    col0 = v[..., 0:3] / np.linalg.norm(v[..., 0:3], axis=-1, keepdims=True)
    col1 = v[..., 3:6] - np.sum(col0 * v[..., 3:6], axis=-1, keepdims=True) * col0
    col1 = col1 / np.linalg.norm(col1, axis=-1, keepdims=True)
    col2 = np.cross(col0, col1)
    poses = np.zeros(v.shape[:-1] + (4, 4))
    poses[..., :3, 0], poses[..., :3, 1], poses[..., :3, 2] = col0, col1, col2
    poses[..., :3, 3] = v[..., 6:9]
    poses[..., 3, 3] = 1.0
    return poses


def poses_to_nine_d(poses: np.ndarray) -> np.ndarray:
    """The 9-D form [..., 9] of 4x4 poses [..., 4, 4]: rotation columns 0 and 1, then translation."""
    p = np.asarray(poses, dtype=np.float64)
    if p.shape[-2:] != (4, 4):
        raise ValueError(f"poses must be [..., 4, 4], got shape {p.shape}")
    return np.concatenate([p[..., :3, 0], p[..., :3, 1], p[..., :3, 3]], axis=-1)


def canonicalize_poses(poses: np.ndarray) -> np.ndarray:
    """Left-multiply every pose [T, 4, 4] by the inverse of the first, so the first becomes identity."""
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (4, 4):
        raise ValueError(f"poses must be [T, 4, 4], got shape {p.shape}")
    return np.linalg.inv(p[0]) @ p


def decode_normalized_cam(normalized: np.ndarray) -> np.ndarray:
    """Camera tokenizer output [T, 9] (normalised) -> poses [T, 4, 4]: un-normalise, then Gram-Schmidt."""
    return nine_d_to_poses(unnormalize_cam(normalized))
