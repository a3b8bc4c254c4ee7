"""Synthetic head motion and gaze, deterministic by seed, for tests, demos and smoke training without data.

Head motion is a sequence of 2-5 s behaviours (:data:`MOTION_KINDS`): walking forward with head bob and sway,
turning, looking around, standing still. Their targets (speed, turn rate, how far the head swings) blend smoothly
from one behaviour to the next, so the motion is smooth; by construction its speed stays under
:data:`MAX_SPEED_M_S` and its angular speed under :data:`MAX_ANGULAR_SPEED_RAD_S`. Poses are OpenCV
camera-to-world in a z-up world (the camera looks along the heading, x to the right, y down).

Gaze is a sequence of fixations (a point with small jitter and drift), saccades (a jump of one or two frames) and
blinks (a few NaN frames), in pixels of a :class:`~egom2p.tokenizers.gaze.GazeFrame`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from egom2p.tokenizers.gaze import GazeFrame, crop_units_to_pixels, gaze_frame, pixels_to_crop_units
from egom2p.tokenizers.tracks import (
    TOKENIZER_FPS,
    WINDOW_LENGTH,
    CameraTrack,
    GazeTrack,
    camera_windows,
    gaze_windows,
)

MAX_SPEED_M_S = 2.0
MAX_ANGULAR_SPEED_RAD_S = np.pi  # 180 deg/s
MOTION_KINDS = ("walk", "turn", "look_around", "still")
_KIND_WEIGHTS = (0.35, 0.2, 0.25, 0.2)  # of a mixed motion (kind=None)

_FINE_HZ = 600.0  # the continuous motion is defined on this grid and interpolated linearly between its samples
_BLEND_S = 2.0  # width of the Hann window that blends one behaviour into the next
_SEGMENT_S = (2.0, 5.0)
# Per behaviour: ranges of forward speed (m/s), body turn rate (rad/s, either sign), head yaw swing and head pitch
# swing (rad). A blended step of height h changes at most 2 h / _BLEND_S per second, so: speed <= walk 1.4 + bob
# 0.025 * 2 pi 2.0 (+0.03) + sway 0.02 * 2 pi (+0.04) < 1.9 m/s; angular speed (the sum of the angle rates) <= turn
# 0.8 + yaw swing 0.5 * 2 pi 0.25 + 0.5 + pitch swing 0.2 * 2 pi 0.2 + 0.2 + roll 0.03 * 2 pi (+0.03) < 2.8 rad/s.
_BEHAVIOURS = {
    "walk": ((0.8, 1.4), (0.0, 0.15), (0.05, 0.15), (0.03, 0.10)),
    "turn": ((0.2, 0.8), (0.4, 0.8), (0.05, 0.20), (0.03, 0.10)),
    "look_around": ((0.0, 0.3), (0.0, 0.10), (0.30, 0.50), (0.10, 0.20)),
    "still": ((0.0, 0.0), (0.0, 0.0), (0.00, 0.08), (0.00, 0.05)),
}
_WALK_SPEED = 1.4  # bob, sway and roll amplitudes scale with speed / this
_BOB_M, _SWAY_M, _ROLL_RAD = 0.025, 0.02, 0.03

# Camera axes in the z-up world at zero yaw, pitch and roll: x (right) = -y, y (down) = -z, z (forward) = +x.
_CAMERA_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True, eq=False)
class HeadMotion:
    """A continuous head trajectory: positions (M, 3) and (yaw, pitch, roll) angles (M, 3) every ``step`` seconds
    from time 0, linearly interpolated in between (:meth:`poses_at`)."""

    step: float
    positions: np.ndarray
    angles: np.ndarray

    @property
    def duration(self) -> float:
        """Seconds covered."""
        return self.step * (len(self.positions) - 1)

    def poses_at(self, times: np.ndarray) -> np.ndarray:
        """Camera-to-world poses (N, 4, 4) at ``times`` (N,) seconds within [0, duration]."""
        times = np.asarray(times, dtype=np.float64)
        if times.size and (times.min() < 0 or times.max() > self.duration + 1e-9):
            raise ValueError(f"times must lie in [0, {self.duration:g}] s, got [{times.min():g}, {times.max():g}]")
        grid = np.arange(len(self.positions)) * self.step
        position = np.stack([np.interp(times, grid, self.positions[:, i]) for i in range(3)], axis=-1)
        yaw, pitch, roll = (np.interp(times, grid, self.angles[:, i]) for i in range(3))
        poses = np.tile(np.eye(4), (len(times), 1, 1))
        poses[:, :3, :3] = _rotation_z(yaw) @ _rotation_y(-pitch) @ _rotation_x(roll) @ _CAMERA_AXES
        poses[:, :3, 3] = position
        return poses


def _rotation_x(angle: np.ndarray) -> np.ndarray:
    c, s, o, i = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([i, o, o], -1), np.stack([o, c, -s], -1), np.stack([o, s, c], -1)], -2)


def _rotation_y(angle: np.ndarray) -> np.ndarray:
    c, s, o, i = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, o, s], -1), np.stack([o, i, o], -1), np.stack([-s, o, c], -1)], -2)


def _rotation_z(angle: np.ndarray) -> np.ndarray:
    c, s, o, i = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, o], -1), np.stack([s, c, o], -1), np.stack([o, o, i], -1)], -2)


def _check_seconds(seconds: float) -> float:
    if not (np.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    return float(seconds)


def _blend(targets: np.ndarray) -> np.ndarray:
    """Smooth piecewise-constant targets (M, C) with a normalised Hann window (keeps them within their range).

    The same values as ``np.convolve`` of the edge-padded targets with the window, computed from the jumps: the
    smoothed signal is the targets delayed by half the window, plus, before each delayed jump, the window's rising
    step response. Work is proportional to jumps x window width, not to the length (hours of motion at 600 Hz
    took seconds of FFT)."""
    width = int(_BLEND_S * _FINE_HZ)
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    count, lead = len(targets), width // 2
    lag = width - 1 - lead
    ramp = np.cumsum(window)[:-1]  # the step response while it rises (the delayed step itself is still 0 there)
    out = targets[np.clip(np.arange(count) - lead, 0, count - 1)]
    for jump in np.flatnonzero(np.any(targets[1:] != targets[:-1], axis=1)) + 1:
        first = jump - lag  # the output sample where this jump's ramp starts
        begin, end = max(first, 0), min(first + width - 1, count)
        if end > begin:
            out[begin:end] += ramp[begin - first:end - first, None] * (targets[jump] - targets[jump - 1])
    return out


def _behaviour_targets(count: int, rng: np.random.Generator, kind: str | None) -> np.ndarray:
    """Per fine sample: target speed, turn rate, yaw swing and pitch swing of the behaviour in force."""
    targets = np.empty((count, 4))
    start = 0
    while start < count:
        name = kind if kind is not None else str(rng.choice(MOTION_KINDS, p=_KIND_WEIGHTS))
        speed, turn, yaw_swing, pitch_swing = _BEHAVIOURS[name]
        end = min(count, start + int(rng.uniform(*_SEGMENT_S) * _FINE_HZ))
        targets[start:end] = [rng.uniform(*speed), rng.choice((-1.0, 1.0)) * rng.uniform(*turn),
                               rng.uniform(*yaw_swing), rng.uniform(*pitch_swing)]
        start = end
    return targets


def synthetic_head_motion(seconds: float, seed: int, kind: str | None = None) -> HeadMotion:
    """A continuous head trajectory of ``seconds``; ``kind`` one of :data:`MOTION_KINDS` or None (a mixture)."""
    if kind is not None and kind not in MOTION_KINDS:
        raise ValueError(f"unknown motion kind {kind!r}; known: {', '.join(MOTION_KINDS)} (or None for a mixture)")
    rng = np.random.default_rng(seed)
    count = int(np.ceil(_check_seconds(seconds) * _FINE_HZ)) + 1
    step = 1.0 / _FINE_HZ
    time = np.arange(count) * step
    speed, turn_rate, yaw_swing, pitch_swing = _blend(_behaviour_targets(count, rng, kind)).T
    heading = rng.uniform(-np.pi, np.pi) + np.cumsum(turn_rate) * step
    # Per axis rather than (M, 3) stacks: hours at 600 Hz are tens of millions of samples (the same values).
    cos_heading, sin_heading = np.cos(heading), np.sin(heading)  # forward = (cos, sin, 0), left = (-sin, cos, 0)
    # Steps: the head rises and falls once per step and sways sideways once per stride (two steps).
    step_phase = 2 * np.pi * rng.uniform(1.7, 2.0) * time + rng.uniform(0, 2 * np.pi)
    stride = np.sin(step_phase / 2)
    gait = speed / _WALK_SPEED
    start = np.array([*rng.uniform(-5, 5, size=2), rng.uniform(1.5, 1.75)])
    sway = _SWAY_M * gait * stride
    x = start[0] + np.cumsum(speed * cos_heading) * step - sway * sin_heading
    y = start[1] + np.cumsum(speed * sin_heading) * step + sway * cos_heading
    z = start[2] + _BOB_M * gait * np.sin(step_phase)
    positions = np.stack([x, y, z], axis=-1)
    yaw = heading + yaw_swing * np.sin(2 * np.pi * rng.uniform(0.12, 0.25) * time + rng.uniform(0, 2 * np.pi))
    pitch = rng.uniform(-0.2, 0.05) + pitch_swing * np.sin(2 * np.pi * rng.uniform(0.1, 0.2) * time
                                                            + rng.uniform(0, 2 * np.pi))
    roll = _ROLL_RAD * gait * stride
    return HeadMotion(step=step, positions=positions, angles=np.stack([yaw, pitch, roll], axis=-1))


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"the number of windows must be a positive integer, got {n!r}")
    return int(n)


def _sample_times(seconds: float, fps: float) -> np.ndarray:
    return np.arange(int(np.floor(_check_seconds(seconds) * fps + 1e-9))) / fps


def synthetic_camera_track(seconds: float, seed: int, kind: str | None = None,
                           fps: float = TOKENIZER_FPS) -> CameraTrack:
    """``seconds`` of synthetic head motion sampled at ``fps`` (``seconds * fps`` frames from time 0)."""
    times = _sample_times(seconds, fps)
    motion = synthetic_head_motion(seconds, seed, kind)
    return CameraTrack(times=times, poses=motion.poses_at(times), source=f"synthetic camera (seed {seed})")


def synthetic_camera_windows(n: int, seed: int, kind: str | None = None) -> np.ndarray:
    """``n`` consecutive 2 s windows (n, 60, 4, 4) of one synthetic camera track at 30 fps."""
    track = synthetic_camera_track(2.0 * _check_count(n), seed, kind)
    windows, _, _ = camera_windows(track, stride=WINDOW_LENGTH)
    return windows


_FIXATION_S = (0.2, 0.8)
_SACCADE_S = (0.03, 0.07)
_BLINK_S = (0.1, 0.2)
_BLINK_CHANCE = 0.15  # per fixation
_JITTER = 0.004  # crop units (about 2 px of a 480 px crop)
_DRIFT = 0.01  # crop units over a fixation
_SPREAD = 0.18  # of fixation points around the crop centre, crop units


def _fixation_point(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return np.clip(rng.normal(0.5, _SPREAD, size=2), low, high)


def synthetic_gaze_track(seconds: float, seed: int, frame: str | GazeFrame,
                         fps: float = TOKENIZER_FPS) -> GazeTrack:
    """``seconds`` of synthetic gaze at ``fps`` in pixels of ``frame``'s original resolution, NaN during blinks.

    Fixation points scatter around the crop centre but stay inside the recorded image, so with a crop some fall
    outside it (invalid for the tokenizer, as in real recordings).
    """
    frame = gaze_frame(frame)
    rng = np.random.default_rng(seed)
    times = _sample_times(seconds, fps)
    count = len(times)
    # The recorded image in crop units; fixations keep a small margin from its border.
    image_low = pixels_to_crop_units(np.zeros(2), frame)
    image_high = pixels_to_crop_units(np.array(frame.orig_res, dtype=np.float64), frame)
    low, high = image_low + 0.02, image_high - 0.02
    units = np.empty((count, 2))
    point = _fixation_point(rng, low, high)
    start = 0
    while start < count:
        length = max(1, round(rng.uniform(*_FIXATION_S) * fps))
        end = min(count, start + length)
        drift = rng.normal(0, _DRIFT, size=2) * np.linspace(0, 1, end - start)[:, None]
        units[start:end] = point + drift + rng.normal(0, _JITTER, size=(end - start, 2))
        if rng.random() < _BLINK_CHANCE:
            blink = max(1, round(rng.uniform(*_BLINK_S) * fps))
            first = start + int(rng.integers(0, max(1, end - start - blink + 1)))
            units[first:min(end, first + blink)] = np.nan
        # A saccade: one or two frames on the way to the next fixation point.
        target = _fixation_point(rng, low, high)
        steps = max(1, round(rng.uniform(*_SACCADE_S) * fps))
        last = units[end - 1] if not np.isnan(units[end - 1]).any() else point
        path = last + (target - last) * (np.arange(1, steps + 1) / (steps + 1))[:, None]
        units[end:end + steps] = path[: max(0, count - end)]
        point, start = target, end + steps
    units = np.clip(units, image_low, image_high)  # jitter and drift near a border stay in the image
    return GazeTrack(times=times, pixels=crop_units_to_pixels(units, frame), source=f"synthetic gaze (seed {seed})")


def synthetic_gaze_windows(n: int, seed: int, frame: str | GazeFrame) -> np.ndarray:
    """``n`` consecutive 2 s windows (n, 60, 2) of one synthetic gaze track at 30 fps (pixels, NaN in blinks)."""
    track = synthetic_gaze_track(2.0 * _check_count(n), seed, frame)
    windows, _, _ = gaze_windows(track, stride=WINDOW_LENGTH)
    return windows
