"""Metrics of decoded video clips: relative depth (AbsRel, delta < 1.25) and RGB (PSNR, SSIM).

Depth tokens hold each clip min-max normalised (:mod:`egom2p.tokenizers.video`), so decoded depth is relative: 0 is
the clip's nearest point, 1 its farthest. The protocol of relative depth applies: the prediction is aligned to the
truth by the least-squares scale and shift of the whole clip, then ``abs_rel`` = mean |pred - true| / true and
``delta_1_25`` = the share of pixels with max(pred / true, true / pred) < 1.25, over the pixels whose true depth is
at least ``min_depth`` (10% of the clip's range by default: the nearest pixels of a normalised clip are 0, where a
ratio means nothing).

RGB frames (uint8): ``psnr`` = 10 log10(255^2 / MSE) over the clip (infinite when equal); ``ssim`` = the mean
structural similarity (Wang et al. 2004: 11 x 11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, data range
255) of each frame's luma (ITU-R BT.601), averaged over the frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["depth_metrics", "psnr", "ssim"]

_LUMA = np.array([0.299, 0.587, 0.114])


def depth_metrics(pred: np.ndarray, truth: np.ndarray, min_depth: float = 0.1) -> dict[str, float]:
    """``abs_rel`` and ``delta_1_25`` of one relative depth clip (T, H, W) (see the module docstring); NaN when no
    pixel is at least ``min_depth`` deep."""
    pred, truth = np.asarray(pred, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    if pred.shape != truth.shape:
        raise ValueError(f"depth clips differ in size: {pred.size} and {truth.size} values")
    design = np.stack([pred, np.ones_like(pred)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, truth, rcond=None)
    aligned = scale * pred + shift
    valid = truth >= min_depth
    if not valid.any():
        return {"abs_rel": float("nan"), "delta_1_25": float("nan")}
    p, t = np.maximum(aligned[valid], 1e-6), truth[valid]  # a prediction aligned below 0 counts as near-zero depth
    return {"abs_rel": float(np.mean(np.abs(p - t) / t)), "delta_1_25": float(np.mean(np.maximum(p / t, t / p) < 1.25))}


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """PSNR in dB of uint8 frames (any equal shapes), data range 255; infinite when they are equal."""
    mse = np.mean((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM of RGB frames (T, H, W, 3) uint8 on their luma, over the valid 11 x 11 windows and the frames."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"expected two RGB clips (T, H, W, 3) of one shape, got {pred.shape} and {truth.shape}")
    x = torch.from_numpy(pred.astype(np.float64) @ _LUMA)[:, None]
    y = torch.from_numpy(truth.astype(np.float64) @ _LUMA)[:, None]
    window = _gaussian_window()
    mean = lambda image: F.conv2d(image, window)  # noqa: E731
    mu_x, mu_y = mean(x), mean(y)
    var_x, var_y = mean(x * x) - mu_x**2, mean(y * y) - mu_y**2
    cov = mean(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean())
