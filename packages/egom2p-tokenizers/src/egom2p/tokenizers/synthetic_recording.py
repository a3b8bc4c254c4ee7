"""A synthetic recording folder for ``egom2p-tokenize prepare``: video, depth, camera and gaze of one scene.

The camera follows :func:`~egom2p.tokenizers.synthetic.synthetic_camera_track`; the video renders a textured wall
that slides with the camera's yaw and height (so the video and the track agree), the depth is the wall's distance
along each pixel's ray; gaze comes from :func:`~egom2p.tokenizers.synthetic.synthetic_gaze_track`. The sources use
different rates, as real recordings do: video at ``video_fps`` (an mp4, the ``[video]`` extra), camera at
``cam_fps`` (TUM text), gaze at ``gaze_fps`` (``.npy``: pass that rate as ``--gaze-fps``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .synthetic import synthetic_camera_track, synthetic_gaze_track
from .tracks import write_camera_track_tum
from .video_io import write_video

__all__ = ["write_synthetic_recording"]


def _wall(height: int, width: int, yaw: float, lift: float, t: float) -> np.ndarray:
    y, x = np.mgrid[:height, :width].astype(np.float64)
    u = x / width * 2 - 1 + yaw * 2.0  # the wall slides with the head's yaw (radians) and height (metres)
    v = y / height * 2 - 1 - lift * 4.0
    stripes = 0.5 + 0.5 * np.sin(6 * u) * np.cos(5 * v)
    board = ((np.floor(u * 4) + np.floor(v * 4)) % 2) * 0.3
    rgb = np.stack([stripes, 0.6 * stripes + board, 0.4 + 0.3 * np.sin(3 * u + t)], axis=-1)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_synthetic_recording(folder: str | os.PathLike, seconds: float, seed: int, *, size: tuple[int, int] = (96, 128),
                              video_fps: int = 30, cam_fps: float = 60, gaze_fps: float = 10,
                              gaze_frame: str = "holoassist") -> Path:
    """Write ``rgb.mp4``, ``depth.npy`` (one frame per video frame), ``cam.tum`` and ``gaze.npy`` of ``seconds``
    into ``folder`` (created; its name is the recording's name); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = size
    camera = synthetic_camera_track(seconds, seed, fps=cam_fps)
    write_camera_track_tum(folder / "cam.tum", camera)
    times = np.arange(int(np.floor(seconds * video_fps + 1e-9))) / video_fps
    nearest = np.minimum(np.rint(times * cam_fps).astype(int), len(camera.times) - 1)
    poses = camera.poses[nearest]
    yaw = np.arctan2(poses[:, 0, 2], poses[:, 2, 2])
    lift = poses[:, 1, 3] - poses[0, 1, 3]
    write_video(folder / "rgb.mp4", np.stack([_wall(height, width, a, b, t) for a, b, t in zip(yaw, lift, times)]),
                fps=video_fps)
    rays = np.hypot(np.linspace(-1, 1, width)[None, :], np.linspace(-0.75, 0.75, height)[:, None])
    distance = 2.0 + np.sin(yaw)[:, None, None]
    np.save(folder / "depth.npy", (distance * np.sqrt(1 + rays[None] ** 2)).astype(np.float32))
    np.save(folder / "gaze.npy", synthetic_gaze_track(seconds, seed, gaze_frame, fps=gaze_fps).pixels)
    return folder
