"""The gaze convention against the original's conversion (the parity fixture) and hand-built cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from egom2p.tokenizers.gaze import (
    GAZE_FRAMES,
    GazeFrame,
    crop_units_to_pixels,
    gaze_frame,
    model_output_to_crop_pixels,
    model_output_to_pixels,
    pixels_to_crop_units,
    pixels_to_model_input,
    valid_gaze,
)


def _frame(args: dict) -> GazeFrame:
    return GazeFrame(args["orig_res"], args["resize_res"], args["crop"])


@pytest.mark.parametrize("sample", range(4))
def test_model_input_matches_the_original(gaze: dict, sample: int) -> None:
    model_input = pixels_to_model_input(gaze["raw_pixels"][sample], _frame(gaze["convert_args"][sample]))
    expected = gaze["input"][sample].numpy()
    assert model_input.dtype == np.float32 and model_input.shape == (60, 3)
    np.testing.assert_array_equal(model_input[:, 2], expected[:, 2])  # the validity first: a clearer failure
    np.testing.assert_array_equal(model_input, expected)
    assert 0 < (expected[:, 2] == 0).sum() < 60  # the fixture does exercise invalid frames


def test_batched_model_input_matches_the_original(gaze: dict) -> None:
    holoassist = [0, 2]
    assert all(_frame(gaze["convert_args"][i]) == GAZE_FRAMES["holoassist"] for i in holoassist)
    model_input = pixels_to_model_input(gaze["raw_pixels"][holoassist], "holoassist")
    np.testing.assert_array_equal(model_input, gaze["input"].numpy()[holoassist])
    egoexo = pixels_to_model_input(gaze["raw_pixels"][None, [1, 3]], GAZE_FRAMES["egoexo"])
    np.testing.assert_array_equal(egoexo, gaze["input"].numpy()[None, [1, 3]])


def test_presets() -> None:
    assert GAZE_FRAMES["holoassist"] == GazeFrame((896, 504), (896, 504), (480, 480))
    for name in ("egoexo", "aria", "hot3d"):
        assert GAZE_FRAMES[name] == GazeFrame((1408, 1408), (1408, 1408), (1408, 1408))
    np.testing.assert_array_equal(GAZE_FRAMES["holoassist"].crop_offset, [208.0, 12.0])
    assert gaze_frame("aria") is GAZE_FRAMES["aria"]
    with pytest.raises(ValueError, match=r"^unknown gaze frame 'ego4d'; known: holoassist, egoexo, aria, hot3d"):
        gaze_frame("ego4d")


def test_gaze_frame_validation() -> None:
    frame = GazeFrame([1920, 1080], [960, 540], [480, 480])
    assert frame.orig_res == (1920, 1080) and frame.crop == (480, 480)
    assert GazeFrame((640, 480), (320, 240)).crop == (320, 240)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.crop = (10, 10)  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"^GazeFrame.crop \(480, 600\) is larger than the resized frame \(896, 504\)$"):
        GazeFrame((896, 504), (896, 504), (480, 600))
    with pytest.raises(ValueError, match=r"^GazeFrame.orig_res must be two positive integers"):
        GazeFrame((0, 504), (896, 504))
    with pytest.raises(ValueError, match=r"^GazeFrame.resize_res must be two positive integers"):
        GazeFrame((896, 504), (896.0, 504))
    with pytest.raises(ValueError, match=r"^GazeFrame.crop must be \(width, height\), got 480$"):
        GazeFrame((896, 504), (896, 504), 480)


def test_conversion_with_a_resize_against_hand_numbers() -> None:
    # 1920x1080 resized to 960x540 and centre-cropped to 480x480: offset (240, 30).
    frame = GazeFrame((1920, 1080), (960, 540), (480, 480))
    pixels = np.array([[960.0, 540.0], [480.0, 60.0], [1440.0, 1020.0]])
    units = pixels_to_crop_units(pixels, frame)
    np.testing.assert_allclose(units, [[0.5, 0.5], [0.0, 0.0], [1.0, 1.0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(crop_units_to_pixels(units, frame), pixels, rtol=0, atol=1e-12)


def test_validity_rule_and_invalid_values() -> None:
    units = np.array([[-0.2, 1.2], [0.5, 0.5], [-0.2000001, 0.5], [0.5, 1.2000001], [np.nan, 0.5], [0.5, np.nan]])
    np.testing.assert_array_equal(valid_gaze(units), [True, True, False, False, False, False])
    frame = GazeFrame((100, 100), (100, 100))
    model_input = pixels_to_model_input(units * 100, frame)
    np.testing.assert_array_equal(model_input[:, 2], [1, 1, 0, 0, 0, 0])
    # Invalid points are 0 in crop units, i.e. -1 after (g - 0.5) / 0.5, as in the original's fixture.
    np.testing.assert_array_equal(model_input[2:, :2], -1.0)
    np.testing.assert_allclose(model_input[:2, :2], [[-1.4, 1.4], [0.0, 0.0]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["holoassist", "egoexo"])
def test_model_output_back_to_pixels(gaze: dict, name: str) -> None:
    frame = GAZE_FRAMES[name]
    pixels = gaze["raw_pixels"][0 if name == "holoassist" else 1]
    model_input = pixels_to_model_input(pixels, frame)
    valid = model_input[:, 2] == 1
    back = model_output_to_pixels(model_input[:, :2], frame)
    # float32 model input: a few thousandths of a pixel.
    np.testing.assert_allclose(back[valid], pixels[valid], rtol=0, atol=2e-3 * max(frame.orig_res) / 480)
    crop_pixels = model_output_to_crop_pixels(np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]), frame)
    np.testing.assert_array_equal(crop_pixels, [[0, 0], list(frame.crop), [frame.crop[0] / 2, frame.crop[1] / 2]])


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"^gaze pixels: expected shape \(\.\.\., 2\), got \(60, 3\)$"):
        pixels_to_model_input(np.zeros((60, 3)), "holoassist")
    with pytest.raises(ValueError, match=r"^gaze model output: expected shape \(\.\.\., 2\), got \(60, 3\)$"):
        model_output_to_pixels(np.zeros((60, 3)), "holoassist")
