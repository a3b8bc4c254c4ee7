"""The gaze convention: 2-D gaze pixels <-> the gaze tokenizer's ``[x, y, valid]`` input, as the original EgoM2P.

A recording's gaze point in pixels of its original resolution is divided by that resolution, rescaled to the
resolution the frames are resized to, shifted by the centre crop's offset and divided by the crop size, so the
square crop spans [0, 1] ("crop units", docs/original-behaviour.md#gaze). A point is valid when it is not NaN and
both coordinates lie in [-0.2, 1.2] (:data:`VALID_RANGE`); invalid points are set to 0. The model sees ``(g - 0.5) / 0.5``, so a valid
point inside the crop lies in [-1, 1] and an invalid one reads ``[-1, -1, 0]``. The model's output goes back by
``x * 0.5 + 0.5`` and the same steps in reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# Points this far outside the crop still count as gaze (the original's validity rule).
VALID_RANGE = (-0.2, 1.2)


def _size(value: Any, field: str) -> tuple[int, int]:
    try:
        width, height = value
    except (TypeError, ValueError):
        raise ValueError(f"GazeFrame.{field} must be (width, height), got {value!r}") from None
    for number in (width, height):
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number <= 0:
            raise ValueError(f"GazeFrame.{field} must be two positive integers (width, height), got {value!r}")
    return int(width), int(height)


@dataclass(frozen=True)
class GazeFrame:
    """How a dataset's gaze pixels map onto the tokenizer's square crop.

    ``orig_res``: (width, height) of the frames the gaze pixels refer to; ``resize_res``: (width, height) the frames
    are resized to; ``crop``: (width, height) of the centre crop of the resized frame (None: no crop, the whole
    resized frame).
    """

    orig_res: tuple[int, int]
    resize_res: tuple[int, int]
    crop: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "orig_res", _size(self.orig_res, "orig_res"))
        object.__setattr__(self, "resize_res", _size(self.resize_res, "resize_res"))
        crop = self.resize_res if self.crop is None else _size(self.crop, "crop")
        if crop[0] > self.resize_res[0] or crop[1] > self.resize_res[1]:
            raise ValueError(f"GazeFrame.crop {crop} is larger than the resized frame {self.resize_res}")
        object.__setattr__(self, "crop", crop)

    @property
    def crop_offset(self) -> np.ndarray:
        """(x, y) pixel offset of the centre crop inside the resized frame."""
        return (np.array(self.resize_res, dtype=np.float64) - np.array(self.crop, dtype=np.float64)) / 2.0


# The frames of the original's datasets: HoloAssist 896x504 centre-cropped to 480x480; EgoExo4D / Aria / HOT3D
# 1408x1408 without a crop.
GAZE_FRAMES: Mapping[str, GazeFrame] = {
    "holoassist": GazeFrame((896, 504), (896, 504), (480, 480)),
    "egoexo": GazeFrame((1408, 1408), (1408, 1408)),
    "aria": GazeFrame((1408, 1408), (1408, 1408)),
    "hot3d": GazeFrame((1408, 1408), (1408, 1408)),
}


def gaze_frame(frame: str | GazeFrame) -> GazeFrame:
    """A :class:`GazeFrame` itself, or the preset of :data:`GAZE_FRAMES` with that name."""
    if isinstance(frame, GazeFrame):
        return frame
    if isinstance(frame, str) and frame in GAZE_FRAMES:
        return GAZE_FRAMES[frame]
    raise ValueError(f"unknown gaze frame {frame!r}; known: {', '.join(GAZE_FRAMES)} (or a GazeFrame)")


def _points(values: Any, size: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim < 1 or array.shape[-1] != size:
        raise ValueError(f"{what}: expected shape (..., {size}), got {tuple(array.shape)}")
    return array


def pixels_to_crop_units(pixels: Any, frame: str | GazeFrame) -> np.ndarray:
    """Gaze pixels (..., 2) of the original resolution -> float64 crop units ([0, 1] inside the crop; NaN stays)."""
    frame = gaze_frame(frame)
    orig = np.array(frame.orig_res, dtype=np.float64)
    resized = _points(pixels, 2, "gaze pixels") / orig * np.array(frame.resize_res, dtype=np.float64)
    return (resized - frame.crop_offset) / np.array(frame.crop, dtype=np.float64)


def crop_units_to_pixels(units: Any, frame: str | GazeFrame) -> np.ndarray:
    """Crop units (..., 2) -> float64 gaze pixels of the original resolution (the inverse of
    :func:`pixels_to_crop_units`)."""
    frame = gaze_frame(frame)
    resized = _points(units, 2, "gaze crop units") * np.array(frame.crop, dtype=np.float64) + frame.crop_offset
    return resized / np.array(frame.resize_res, dtype=np.float64) * np.array(frame.orig_res, dtype=np.float64)


def valid_gaze(units: Any) -> np.ndarray:
    """Boolean (...,) validity of crop-unit points (..., 2): not NaN and both coordinates in :data:`VALID_RANGE`."""
    array = _points(units, 2, "gaze crop units")
    low, high = VALID_RANGE
    with np.errstate(invalid="ignore"):
        return ((array >= low) & (array <= high)).all(axis=-1)  # NaN compares False


def pixels_to_model_input(pixels: Any, frame: str | GazeFrame) -> np.ndarray:
    """Gaze pixels (..., T, 2) (NaN where missing) -> the tokenizer's float32 input (..., T, 3) ``[x, y, valid]``.

    x, y are ``(g - 0.5) / 0.5`` of the crop units (in [-1, 1] inside the crop); invalid points (NaN, or outside
    [-0.2, 1.2] in crop units) have ``valid = 0`` and ``x = y = -1`` (crop units 0, as the original).
    """
    units = pixels_to_crop_units(pixels, frame)
    valid = valid_gaze(units)
    units = np.where(valid[..., None], units, 0.0)
    normalised = (units - 0.5) / 0.5
    return np.concatenate([normalised, valid[..., None].astype(np.float64)], axis=-1).astype(np.float32)


def model_output_to_crop_units(outputs: Any) -> np.ndarray:
    """The tokenizer's output (..., T, 2) in [-1, 1] -> float64 crop units (``x * 0.5 + 0.5``)."""
    return _points(outputs, 2, "gaze model output") * 0.5 + 0.5


def model_output_to_pixels(outputs: Any, frame: str | GazeFrame) -> np.ndarray:
    """The tokenizer's output (..., T, 2) -> float64 gaze pixels of the frame's original resolution."""
    return crop_units_to_pixels(model_output_to_crop_units(outputs), frame)


def model_output_to_crop_pixels(outputs: Any, frame: str | GazeFrame) -> np.ndarray:
    """The tokenizer's output (..., T, 2) -> float64 pixels of the square crop (for gaze errors in crop pixels)."""
    return model_output_to_crop_units(outputs) * np.array(gaze_frame(frame).crop, dtype=np.float64)
