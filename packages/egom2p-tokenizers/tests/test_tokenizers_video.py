"""The Cosmos adapter's processing equals the original's, on frames that went through a real mp4.

The reference below restates the original pipeline step by step (Cosmos-Tokenizer's numpy2tensor, pad_video_batch,
tensor2numpy and unpad_video_batch as EgoM2P calls them): pad height and width with zeros (half before), then
repeat edge frames to 1 + 8 k (half before), scale uint8 / 255 in float64 to [-1, 1], cast, run the model, map
back with (x + 1) / 2, clamp, * 255 + 0.5 truncated, crop. The tokenizer is the scripted stand-in with Cosmos's
interface (egom2p.tokenizers.cosmos_standin).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from egom2p.tokenizers.cosmos import CosmosVideoTokenizer
from egom2p.tokenizers.cosmos_standin import write_standin
from egom2p.tokenizers.video import (
    TOKEN_SHAPE,
    depth_from_frames,
    depth_to_frames,
    frames_from_tensor,
    latent_frames,
    pad_clips,
)

av = pytest.importorskip("av")  # the [video] extra
from egom2p.tokenizers.video_io import (  # noqa: E402
    cut_clips,
    read_depth,
    read_video,
    resample,
    square_resize,
    write_video,
)


def reference_pipeline(encoder, decoder, clip: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The original's steps for one batch (B, T, H, W, 3) uint8 -> (ids, decoded uint8 frames)."""
    t, h, w = clip.shape[1:4]
    pad_h, pad_w = (16 - h % 16) % 16, (16 - w % 16) % 16
    pad_t = (8 - (t - 1) % 8) % 8
    padded = np.pad(clip, ((0, 0), (0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    padded = np.pad(padded, ((0, 0), (pad_t // 2, pad_t - pad_t // 2), (0, 0), (0, 0), (0, 0)), mode="edge")
    x = torch.from_numpy(2.0 * (padded.transpose(0, 4, 1, 2, 3) / 255.0) - 1.0).to(dtype)
    ids = encoder(x)[0]
    out = ((decoder(ids).float() + 1.0) / 2.0).clamp(0, 1).numpy().transpose(0, 2, 3, 4, 1)
    out = (out * 255.0 + 0.5).astype(np.uint8)
    return ids.numpy(), out[:, pad_t // 2:pad_t // 2 + t, pad_h // 2:pad_h // 2 + h, pad_w // 2:pad_w // 2 + w]


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return write_standin(tmp_path_factory.mktemp("cosmos"))


def moving_pattern(num_frames: int, height: int, width: int) -> np.ndarray:
    """A coloured gradient sliding right over a checkerboard: motion, edges and smooth areas."""
    y, x = np.mgrid[:height, :width]
    frames = []
    for t in range(num_frames):
        board = ((x // 16 + y // 16) % 2) * 60
        frames.append(np.stack([(x * 2 + t * 9) % 256, (y * 3) % 256, board + 80], axis=-1))
    return np.asarray(frames, dtype=np.uint8)


@pytest.mark.parametrize("shape", [(16, 256, 256), (10, 100, 180), (17, 64, 48), (23, 40, 72)])
def test_processing_equals_the_original_on_frames_read_back_from_an_mp4(tmp_path, standin, shape):
    write_video(tmp_path / "clip.mp4", moving_pattern(*shape), fps=8)
    frames = read_video(tmp_path / "clip.mp4").frames  # what a user's video gives: decoded by FFmpeg
    assert frames.shape == (*shape, 3) and frames.dtype == np.uint8
    tok = CosmosVideoTokenizer.from_pretrained(standin)
    ids = tok.encode(frames)
    expected_ids, expected_frames = reference_pipeline(tok.encoder, tok.decoder, frames[None], torch.float32)
    np.testing.assert_array_equal(ids, expected_ids[0])
    assert ids.dtype == np.int64 and ids.shape == (latent_frames(shape[0]), -(-shape[1] // 16) * 2, -(-shape[2] // 16) * 2)
    decoded = tok.decode(ids, num_frames=shape[0], size=shape[1:])
    np.testing.assert_array_equal(decoded, expected_frames[0])
    assert decoded.shape == frames.shape


def test_a_clip_of_16_frames_of_256_gives_the_released_token_shape_and_bf16_matches_the_original(standin):
    tok = CosmosVideoTokenizer.from_pretrained(standin, dtype=torch.bfloat16)
    clips = np.stack([moving_pattern(16, 256, 256), moving_pattern(16, 256, 256)[::-1]])
    ids = tok.encode(clips, batch_size=1)
    assert ids.shape == (2, *TOKEN_SHAPE)
    expected_ids, expected_frames = reference_pipeline(tok.encoder, tok.decoder, clips, torch.bfloat16)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(tok.decode(ids), expected_frames)


def test_padding_repeats_the_last_frame_and_zero_pads_space_half_before():
    clip = np.arange(16 * 20 * 20 * 3, dtype=np.int64).reshape(1, 16, 20, 20, 3).astype(np.uint8)
    padded, padding = pad_clips(clip)
    assert padded.shape == (1, 17, 32, 32, 3) and padding.rows == (6, 6) and padding.frames == (0, 1)
    np.testing.assert_array_equal(padded[0, 16, 6:26, 6:26], clip[0, 15])
    assert not padded[0, :, :6].any() and not padded[0, :, :, 26:].any()
    np.testing.assert_array_equal(padding.crop(padded), clip)


def test_uint8_rounding_and_clamping_of_decoded_values():
    # (x + 1) / 2 * 255 + 0.5, truncated: 127.5 -> 128, 127.4 -> 127; outside [-1, 1] clamps.
    unit = torch.tensor([127.5, 127.4, 0.49, 254.6]) / 255.0
    values = torch.cat([unit * 2 - 1, torch.tensor([-1.5, 1.5])]).reshape(1, 1, 6, 1, 1).expand(1, 3, 6, 1, 1)
    out = frames_from_tensor(values)[0, :, 0, 0, 0]
    np.testing.assert_array_equal(out, [128, 127, 0, 255, 0, 255])


def test_depth_round_trip_keeps_the_clip_range():
    rng = np.random.default_rng(0)
    depth = 0.5 + 4 * rng.random((16, 32, 32))
    frames, (low, high) = depth_to_frames(depth)
    assert frames.dtype == np.uint8 and frames.shape == (16, 32, 32, 3) and (low, high) == (depth.min(), depth.max())
    back = depth_from_frames(frames, (low, high))
    assert np.abs(back - depth).max() <= (high - low) / 255 / 2 + 1e-6
    assert depth_from_frames(frames).max() == 1.0
    flat, _ = depth_to_frames(np.full((4, 8, 8), 2.0))
    assert not flat.any()
    with pytest.raises(ValueError, match="NaN or infinite"):
        depth_to_frames(np.full((4, 8, 8), np.nan))


def test_depth_goes_through_the_tokenizer_as_grey_video(standin):
    tok = CosmosVideoTokenizer.from_pretrained(standin)
    # Constant over each 8 x 8 patch, which the stand-in keeps up to its 40 levels per channel.
    depth = np.broadcast_to(np.repeat(np.linspace(1.0, 3.0, 8), 8)[None, None, :], (16, 64, 64)).copy()
    ids, depth_range = tok.encode_depth(depth)
    assert ids.shape == (5, 8, 8) and depth_range == (1.0, 3.0)
    back = tok.decode_depth(ids, depth_range, size=(64, 64))
    assert back.shape == depth.shape and np.abs(back - depth).max() <= 2.0 * (1 / 39 / 2 + 1 / 255)


def test_resampling_to_8_fps_takes_the_nearest_frame(tmp_path):
    frames = np.zeros((75, 32, 48, 3), np.uint8)
    frames[:] = (np.arange(75) * 3)[:, None, None, None]  # frame i has value 3 i
    write_video(tmp_path / "v30.mp4", frames, fps=30)
    video = read_video(tmp_path / "v30.mp4")
    assert len(video.frames) == 75 and video.fps == pytest.approx(30)
    eight = resample(video)
    assert len(eight.frames) == 20  # 2.5 s at 8 fps
    nearest = np.rint(np.arange(20) * 30 / 8 - 1e-9).astype(int)
    np.testing.assert_allclose(eight.frames[:, 0, 0, 0], nearest * 3, atol=3)  # H.264 is lossy
    squares = square_resize(eight.frames)
    assert squares.shape == (20, 256, 256, 3) and squares.dtype == np.uint8
    assert cut_clips(squares).shape == (1, 16, 256, 256, 3)


def test_square_resize_takes_the_centre_of_the_short_side():
    frames = np.zeros((1, 60, 100, 3), np.uint8)
    frames[:, :, 20:80] = 200  # the centred 60 x 60 square
    out = square_resize(frames, size=60)
    assert out.shape == (1, 60, 60, 3) and (out == 200).all()


def test_depth_sources(tmp_path):
    from PIL import Image

    depth = (np.arange(3 * 8 * 10).reshape(3, 8, 10) * 100).astype(np.uint16)
    np.save(tmp_path / "d.npy", depth)
    np.testing.assert_array_equal(read_depth(tmp_path / "d.npy"), depth)  # memory-mapped, its own dtype
    np.save(tmp_path / "obj.npy", np.array([None]), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):
        read_depth(tmp_path / "obj.npy")
    (tmp_path / "png").mkdir()
    for i, frame in enumerate(depth):
        Image.fromarray(frame).save(tmp_path / "png" / f"{i:04d}.png")
    np.testing.assert_array_equal(read_depth(tmp_path / "png"), depth.astype(np.float32))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="PNG frames"):
        read_depth(tmp_path / "empty")


def test_unreadable_files_are_named(tmp_path, standin):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(ValueError, match="bad.mp4"):
        read_video(tmp_path / "bad.mp4")
    write_video(tmp_path / "ok.mp4", moving_pattern(16, 64, 64))
    data = (tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])  # the index (moov) is lost with the tail
    with pytest.raises(ValueError, match="cut.mp4"):
        read_video(tmp_path / "cut.mp4")
    with pytest.raises(FileNotFoundError, match="decoder.jit.*NVIDIA Open Model License"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "encoder.jit").write_bytes((standin / "encoder.jit").read_bytes())
        CosmosVideoTokenizer.from_pretrained(tmp_path / "half")
    (tmp_path / "pickled").mkdir()
    for name in ("encoder.jit", "decoder.jit"):
        torch.save({"weight": torch.zeros(2)}, tmp_path / "pickled" / name)
    with pytest.raises(ValueError, match="encoder.jit: not a TorchScript file"):
        CosmosVideoTokenizer.from_pretrained(tmp_path / "pickled")
    tok = CosmosVideoTokenizer.from_pretrained(standin)
    with pytest.raises(ValueError, match=r"\[0, 64000\)"):
        tok.decode(np.full(TOKEN_SHAPE, 64000))
    with pytest.raises(ValueError, match="uint8"):
        tok.encode(np.zeros((16, 32, 32, 3), np.float32))


def test_a_hub_id_is_read_from_the_offline_cache(tmp_path, standin, monkeypatch):
    pytest.importorskip("huggingface_hub")
    repo = tmp_path / "hub" / "models--nvidia--Cosmos-0.1-Tokenizer-DV4x8x8"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in ("encoder.jit", "decoder.jit"):
        (snapshot / name).write_bytes((standin / name).read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    tok = CosmosVideoTokenizer.from_pretrained("nvidia/Cosmos-0.1-Tokenizer-DV4x8x8")
    assert tok.encode(moving_pattern(16, 32, 32)).shape == (5, 4, 4)


def test_the_cli_writes_the_standin(tmp_path):
    from egom2p.tokenizers.cli import main

    assert main(["cosmos-standin", "--out", str(tmp_path / "standin")]) == 0
    tok = CosmosVideoTokenizer.from_pretrained(tmp_path / "standin")
    clip = moving_pattern(16, 256, 256)
    assert np.abs(tok.decode(tok.encode(clip)).astype(int) - clip).mean() < 20  # patch means of a smooth pattern


def test_depth_metrics_align_scale_and_shift_per_clip():
    from egom2p.tokenizers.video_metrics import depth_metrics

    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, (4, 16, 16))
    assert depth_metrics(3 * truth - 0.5, truth) == {"abs_rel": pytest.approx(0, abs=1e-12), "delta_1_25": 1.0}
    pred = truth**2 + 0.05 * rng.standard_normal(truth.shape)
    # the closed-form least-squares line, then the two metrics over true depth >= 0.1, restated independently
    p, t = pred.ravel(), truth.ravel()
    a = np.cov(p, t, bias=True)[0, 1] / np.var(p)
    aligned = a * p + (t.mean() - a * p.mean())
    keep = t >= 0.1
    q = np.maximum(aligned[keep], 1e-6)
    expected_rel = np.mean(np.abs(q - t[keep]) / t[keep])
    expected_delta = np.mean(np.maximum(q / t[keep], t[keep] / q) < 1.25)
    got = depth_metrics(pred, truth)
    assert got["abs_rel"] == pytest.approx(expected_rel, rel=1e-9)
    assert got["delta_1_25"] == pytest.approx(expected_delta)
    assert np.isnan(depth_metrics(pred, np.zeros_like(truth))["abs_rel"])


def test_psnr_and_ssim_on_known_cases():
    from egom2p.tokenizers.video_metrics import psnr, ssim

    zeros = np.zeros((2, 32, 32, 3), np.uint8)
    assert psnr(zeros, zeros) == float("inf")
    assert psnr(zeros + 1, zeros) == pytest.approx(10 * np.log10(255**2))
    # two flat grey clips: SSIM reduces to its luminance term (2 mx my + C1) / (mx^2 + my^2 + C1)
    c1 = (0.01 * 255) ** 2
    assert ssim(zeros + 100, zeros + 110) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), rel=1e-9)
    clip = moving_pattern(4, 48, 48)
    assert ssim(clip, clip) == pytest.approx(1.0)
    noisy = np.clip(clip + np.random.default_rng(0).normal(0, 20, clip.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(clip + np.random.default_rng(0).normal(0, 60, clip.shape), 0, 255).astype(np.uint8)
    assert 1 > ssim(noisy, clip) > ssim(noisier, clip) > 0 and ssim(noisy, clip) == pytest.approx(ssim(clip, noisy))
    assert psnr(noisy, clip) > psnr(noisier, clip)


@pytest.mark.parametrize("fps", [30, 24, 8, 5])
def test_streamed_resampling_equals_the_whole_video_composition(tmp_path, fps):
    from egom2p.tokenizers.video_io import read_video_resampled, resample_indices

    write_video(tmp_path / "v.mp4", moving_pattern(int(2.7 * fps), 60, 84), fps=fps)
    whole = read_video(tmp_path / "v.mp4")
    index, times = resample_indices(whole.times)
    streamed = read_video_resampled(tmp_path / "v.mp4")
    np.testing.assert_array_equal(streamed.source_index, index)
    np.testing.assert_allclose(streamed.times, times)
    assert streamed.source_frames == len(whole.frames)
    np.testing.assert_array_equal(streamed.frames, square_resize(whole.frames[index]))
