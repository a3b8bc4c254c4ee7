"""Pictures of generated vs true decoded signals (the ``[viz]`` extra; drawn off-screen like :mod:`.figures`).

A camera window is drawn in 3-D: each trajectory's camera positions as a line, the first frame as a
dot, and a few orientation ticks along each camera's viewing direction (OpenCV: +z of the rotation).
A gaze window is drawn as x and y over time and as the 2-D path inside the square crop (image axes:
y grows downwards).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .figures import require_matplotlib

__all__ = ["save_camera_figure", "save_gaze_figure"]

TRUE_STYLE = {"color": "tab:blue", "label": "true"}
GENERATED_STYLE = {"color": "tab:orange", "linestyle": "--", "label": "generated"}
TICKS = 5  # orientation ticks per trajectory


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def save_camera_figure(
    path: str | os.PathLike, truth: np.ndarray, generated: np.ndarray, title: str = ""
) -> Path:
    """Draw two camera trajectories ``(T, 4, 4)`` (camera-to-world) in 3-D into the PNG ``path``; returns it."""
    truth, generated = np.asarray(truth, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    fig = require_matplotlib()(figsize=(6.5, 6.0), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    positions = np.concatenate([truth[:, :3, 3], generated[:, :3, 3]])
    extent = float(np.ptp(positions, axis=0).max())
    tick = 0.15 * extent if extent > 1e-9 else 0.05  # a still camera still shows where it looks
    frames = np.linspace(0, len(truth) - 1, TICKS).round().astype(int)
    for poses, style in ((truth, TRUE_STYLE), (generated, GENERATED_STYLE)):
        xyz = poses[:, :3, 3]
        ax.plot(*xyz.T, **style)
        ax.scatter(*xyz[0], color=style["color"], s=25)
        for i in frames:
            end = xyz[i] + tick * poses[i, :3, 2]
            ax.plot(*np.stack([xyz[i], end]).T, color=style["color"], linewidth=1.0)
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_zlabel("z [m]")
    # a cube around both trajectories: equal scales, and a flat axis still gets readable ticks
    centre, half = (positions.max(0) + positions.min(0)) / 2, max(extent, 2 * tick) / 2 * 1.1
    ax.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[1] - half, centre[1] + half),
           zlim=(centre[2] - half, centre[2] + half))
    ax.legend(loc="upper right", fontsize="small")
    fig.suptitle(title or "camera trajectory (first frame at the origin)")
    return _save(fig, path)


def save_gaze_figure(
    path: str | os.PathLike, truth: np.ndarray, generated: np.ndarray, crop: tuple[int, int], title: str = "",
    fps: float = 30.0,
) -> Path:
    """Draw two gaze traces ``(T, 2)`` in pixels of the ``crop`` (w, h) into the PNG ``path``; returns it."""
    truth, generated = np.asarray(truth, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    width, height = crop
    fig = require_matplotlib()(figsize=(12.0, 4.0), layout="constrained")
    from matplotlib.patches import Rectangle  # matplotlib is there: require_matplotlib checked it

    ax_x, ax_y, ax_path = fig.subplots(1, 3, width_ratios=[1, 1, 1])
    seconds = np.arange(len(truth)) / fps
    for trace, style in ((truth, TRUE_STYLE), (generated, GENERATED_STYLE)):
        ax_x.plot(seconds, trace[:, 0], **style)
        ax_y.plot(seconds, trace[:, 1], **style)
        ax_path.plot(trace[:, 0], trace[:, 1], **style)
        ax_path.scatter(trace[0, 0], trace[0, 1], color=style["color"], s=20)
    for ax, name, size in ((ax_x, "x", width), (ax_y, "y", height)):
        ax.set_xlabel("time [s]")
        ax.set_ylabel(f"gaze {name} [crop px]")
        ax.axhspan(0, size, color="0.93", zorder=0)  # the crop
    ax_path.add_patch(Rectangle((0, 0), width, height, fill=False, edgecolor="0.5"))
    margin = 0.05 * max(width, height)
    ax_path.set_xlim(-margin, width + margin)
    ax_path.set_ylim(height + margin, -margin)  # image axes: y down
    ax_path.set_aspect("equal")
    ax_path.set_xlabel("x [crop px]")
    ax_path.set_ylabel("y [crop px]")
    ax_path.legend(loc="upper right", fontsize="small")
    fig.suptitle(title or "gaze")
    return _save(fig, path)

