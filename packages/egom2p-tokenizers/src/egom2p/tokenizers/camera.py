"""The camera convention: OpenCV camera-to-world 4x4 poses <-> the camera tokenizer's normalised 9-D input.

A window of poses becomes the model input in four steps, as in the original EgoM2P (docs/original-behaviour.md#camera):

1. basis change: every pose is right-multiplied by the dataset's basis matrix (:data:`BASES`);
2. canonicalisation: every pose is left-multiplied by the inverse of the window's first pose, so the first pose is
   the identity;
3. 9-D: per frame ``[R[:, 0], R[:, 1], t]`` (the first two rotation columns and the translation);
4. normalisation: ``(v - CAM_MEAN) / CAM_STD`` per channel.

The way back (:func:`model_output_to_poses`) un-normalises and rebuilds each rotation by Gram-Schmidt
(:func:`nine_d_to_poses`). Everything is computed in float64; only the model input is float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# Per-channel statistics of the canonical 9-D vectors of the original's training data
# (egom2p/utils/data_constants.py); data, needed verbatim to decode the released camera tokenizer.
CAM_MEAN = np.array(
    [0.9330503976511908, 0.004411310479848365, -0.004745505205447648, -0.004031105018382311,
     0.9670221745404669, 0.01229744056849661, 0.0025366981809852238, -0.002534521133857395,
     0.03687088469884694],
    dtype=np.float64,
)
CAM_STD = np.array(
    [0.22410282941424692, 0.15409594854789294, 0.23538762722445528, 0.151592393482513,
     0.09890854498671052, 0.17871060521456542, 0.16229749698697332, 0.11305994570310635,
     0.22450155613920986],
    dtype=np.float64,
)
CAM_MEAN.setflags(write=False)
CAM_STD.setflags(write=False)


def _frozen(rows: list[list[float]]) -> np.ndarray:
    matrix = np.array(rows, dtype=np.float64)
    matrix.setflags(write=False)
    return matrix


_EGOEXO = _frozen([[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])

# Right-multiplied onto every pose of a dataset before canonicalisation (the original's cam_traj_dataset.py /
# load_cam.py). HOT3D, H2O, TACO, ARCTIC and ADT poses are used as they are ("none").
BASES: Mapping[str, np.ndarray] = {
    "none": _frozen(np.eye(4).tolist()),
    "holoassist": _frozen([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]]),
    "egoexo": _EGOEXO,
    "aria": _EGOEXO,
    "egogen": _frozen(np.diag([1.0, -1.0, -1.0, 1.0]).tolist()),  # OpenGL -> OpenCV
}

# Tolerance on |R^T R - I|, |det R - 1| and the last row of a pose: float32 files round at about 1e-7.
RIGID_ATOL = 1e-4


def _frame_name(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(tuple(int(i) for i in index))


def check_poses(poses: Any, where: str = "poses", atol: float = RIGID_ATOL) -> np.ndarray:
    """Return ``poses`` as a float64 array of shape (..., 4, 4) after checking that every one is a rigid pose.

    A pose must be finite, have the last row ``[0, 0, 0, 1]`` and a rotation block with ``R^T R = I`` and
    ``det R = +1`` (within ``atol``). Otherwise a one-line ValueError names ``where``, the first bad frame (its index
    over the leading dimensions) and the defect.
    """
    array = np.asarray(poses, dtype=np.float64)
    if array.ndim < 2 or array.shape[-2:] != (4, 4):
        raise ValueError(f"{where}: expected poses of shape (..., 4, 4), got {tuple(array.shape)}")
    if array.size == 0:
        return array
    lead = array.shape[:-2]
    rotation = array[..., :3, :3]
    defects = [
        (~np.isfinite(array).all(axis=(-2, -1)), "has a non-finite value (NaN or inf)"),
        (np.abs(array[..., 3, :] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=-1) > atol,
         "has a last row other than [0, 0, 0, 1]"),
    ]
    with np.errstate(invalid="ignore"):
        gram = np.swapaxes(rotation, -1, -2) @ rotation
        orthogonality = np.abs(gram - np.eye(3)).max(axis=(-2, -1))
        determinant = np.linalg.det(np.where(np.isfinite(rotation), rotation, 0.0))
    defects.append((orthogonality > atol, "has a rotation that is not orthonormal (R^T R != I)"))
    defects.append((np.abs(determinant - 1.0) > atol, "has a reflection instead of a rotation (det R = -1)"))
    bad = np.stack([mask for mask, _ in defects], axis=-1)  # (..., defect)
    bad_frames = bad.any(axis=-1).reshape(-1)
    if bad_frames.any():
        flat = int(np.flatnonzero(bad_frames)[0])
        defect = defects[int(np.argmax(bad.reshape(-1, len(defects))[flat]))][1]
        frame = f"frame {_frame_name(np.unravel_index(flat, lead))}" if lead else "the pose"
        raise ValueError(f"{where}: {frame} {defect}")
    return array


def basis_matrix(basis: str | Any | None) -> np.ndarray:
    """The 4x4 basis matrix for a dataset name of :data:`BASES`, a rigid 4x4 array, or None (identity)."""
    if basis is None:
        return BASES["none"]
    if isinstance(basis, str):
        if basis not in BASES:
            raise ValueError(f"unknown camera basis {basis!r}; known: {', '.join(BASES)}")
        return BASES[basis]
    matrix = check_poses(basis, where="camera basis")
    if matrix.shape != (4, 4):
        raise ValueError(f"camera basis: expected a name or one 4x4 matrix, got shape {matrix.shape}")
    return matrix


def change_basis(poses: Any, basis: str | Any | None) -> np.ndarray:
    """Right-multiply every pose of (..., 4, 4) by the basis matrix (a dataset's axis convention -> OpenCV)."""
    return np.asarray(poses, dtype=np.float64) @ basis_matrix(basis)


def canonicalize(poses: Any) -> np.ndarray:
    """Express every pose of (..., T, 4, 4) relative to the first one of its window: ``inv(P[0]) @ P[t]``."""
    array = np.asarray(poses, dtype=np.float64)
    # A general inverse, as the original: the parity fixture's canonical 9-D vectors match it to 1e-15.
    return np.linalg.inv(array[..., :1, :, :]) @ array


def poses_to_9d(poses: Any) -> np.ndarray:
    """Canonicalise (..., T, 4, 4) poses to their first frame and return ``[R[:, 0], R[:, 1], t]`` as (..., T, 9)."""
    canonical = canonicalize(poses)
    return np.concatenate([canonical[..., :3, 0], canonical[..., :3, 1], canonical[..., :3, 3]], axis=-1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    # The floor keeps a zero column from dividing by zero (as torch's F.normalize does).
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def nine_d_to_poses(vectors: Any) -> np.ndarray:
    """Rebuild (..., T, 4, 4) float64 poses from (..., T, 9) un-normalised 9-D vectors by Gram-Schmidt.

    col0 = normalised first column; col1 = the second column minus its component along col0, normalised;
    col2 = col0 x col1; translation = the last three values.
    """
    v = _last_dim(vectors, 9, "9-D camera vectors")
    col0 = _unit(v[..., 0:3])
    second = v[..., 3:6]
    col1 = _unit(second - (col0 * second).sum(axis=-1, keepdims=True) * col0)
    poses = np.zeros((*v.shape[:-1], 4, 4), dtype=np.float64)
    poses[..., :3, 0] = col0
    poses[..., :3, 1] = col1
    poses[..., :3, 2] = np.cross(col0, col1)
    poses[..., :3, 3] = v[..., 6:9]
    poses[..., 3, 3] = 1.0
    return poses


def _last_dim(values: Any, size: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim < 1 or array.shape[-1] != size:
        raise ValueError(f"{what}: expected shape (..., {size}), got {tuple(array.shape)}")
    return array


def normalize_9d(vectors: Any) -> np.ndarray:
    """``(v - CAM_MEAN) / CAM_STD`` per channel of (..., 9), float64."""
    return (_last_dim(vectors, 9, "9-D camera vectors") - CAM_MEAN) / CAM_STD


def denormalize_9d(vectors: Any) -> np.ndarray:
    """``v * CAM_STD + CAM_MEAN`` per channel of (..., 9), float64 (the inverse of :func:`normalize_9d`)."""
    return _last_dim(vectors, 9, "normalised 9-D camera vectors") * CAM_STD + CAM_MEAN


def poses_to_model_input(poses: Any, basis: str | Any | None = None, where: str = "poses") -> np.ndarray:
    """Camera-to-world poses (..., T, 4, 4) -> the tokenizer's float32 input (..., T, 9).

    Checks the poses (:func:`check_poses`), applies the basis change, canonicalises to each window's first frame,
    takes the 9-D vectors and normalises them, all in float64, then casts once to float32.
    """
    checked = check_poses(poses, where=where)
    if checked.ndim < 3:
        raise ValueError(f"{where}: expected a window of poses (..., T, 4, 4), got {checked.shape}")
    return normalize_9d(poses_to_9d(change_basis(checked, basis))).astype(np.float32)


def model_output_to_poses(outputs: Any) -> np.ndarray:
    """The tokenizer's normalised 9-D output (..., T, 9) -> float64 camera-to-world poses (..., T, 4, 4).

    The poses are in the window's canonical frame (the first one is the identity up to the reconstruction error);
    no basis change is undone.
    """
    return nine_d_to_poses(denormalize_9d(outputs))
