"""Generation from and to video: ``--cond tok_rgb=clip.mp4 --video-tokenizer SOURCE --decode`` writes the generated
depth as an mp4 (and the tokens as always). The Cosmos tokenizer is the scripted stand-in of egom2p-tokenizers; the
model is tiny and random, with the released video token shapes (64,000 ids on 5 x 32 x 32)."""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.generate.cli import main
from egom2p.generate.video import VideoCodec
from generate_helpers import saved_checkpoint, tiny_egom2p

pytest.importorskip("egom2p.tokenizers")  # the [tokenizers] extra
pytest.importorskip("av")  # egom2p-tokenizers[video]
from egom2p.tokenizers.cosmos import CosmosVideoTokenizer  # noqa: E402
from egom2p.tokenizers.cosmos_standin import write_standin  # noqa: E402
from egom2p.tokenizers.video_io import read_video, resample, square_resize, write_video  # noqa: E402

VIDEO_MODALITIES = {"tok_rgb": {"vocab_size": 64000, "grid": [5, 32, 32], "folder": "rgb"},
                    "tok_depth": {"vocab_size": 64000, "grid": [5, 32, 32], "folder": "depth"},
                    "tok_cam": {"vocab_size": 256, "length": 30, "folder": "cam"}}


@pytest.fixture(scope="module")
def video_checkpoint(tmp_path_factory):
    return saved_checkpoint(tiny_egom2p(VIDEO_MODALITIES, seed=3), tmp_path_factory.mktemp("video-ckpt"))


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return write_standin(tmp_path_factory.mktemp("cosmos"))


def clip(path, seconds: float) -> None:
    t = np.arange(int(seconds * 30))
    y, x = np.mgrid[:72, :96]
    frames = np.stack([np.stack([(x * 3 + k * 5) % 256, (y * 3) % 256, np.full_like(x, 90)], -1) for k in t])
    write_video(path, frames.astype(np.uint8), fps=30)


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_rgb_video_to_depth_video(video_checkpoint, standin, tmp_path, capsys):
    clip(tmp_path / "clip.mp4", 2.5)  # one whole 2 s clip: one sample
    # No nucleus sorting of 64,000 logits and one pass per step: the test is about the video, not the sampler.
    code, out, err = _run(["--checkpoint", video_checkpoint, "--cond", f"tok_rgb={tmp_path / 'clip.mp4'}",
                           "--target", "tok_depth", "--steps", "1", "--top-p", "0", "--cfg", "1",
                           "--video-tokenizer", standin, "--decode", "--out", tmp_path / "pred.npz",
                           "--save-figures", tmp_path / "figs"], capsys)
    assert code == 0, err
    tokens = np.load(tmp_path / "pred.npz")["arr_0"]
    assert tokens.shape == (5, 32, 32)
    from PIL import Image

    with Image.open(tmp_path / "figs" / "pred_tok_depth.png") as sheet:  # condition row above the prediction row
        assert sheet.size == (4 * 128 + 3 * 4, 2 * (128 + 14 + 4))
    decoded = read_video(tmp_path / "pred_tok_depth.mp4")
    assert decoded.frames.shape == (16, 256, 256, 3)
    # grey, and what the tokenizer decodes from the written tokens (up to H.264)
    assert np.abs(decoded.frames[..., 0].astype(int) - decoded.frames[..., 2]).max() <= 4
    expected = CosmosVideoTokenizer.from_pretrained(standin).decode(tokens).mean(-1)
    assert np.abs(decoded.frames.mean(-1) - expected).mean() < 3
    assert "pred_tok_depth.mp4" in out


def test_a_longer_video_is_a_batch_of_clips(video_checkpoint, standin, tmp_path, capsys):
    clip(tmp_path / "clip.mp4", 4.2)  # two whole 2 s clips (the last 0.2 s make no clip)
    code, _, err = _run(["--checkpoint", video_checkpoint, "--cond", f"tok_rgb={tmp_path / 'clip.mp4'}",
                         "--target", "tok_cam", "--steps", "1", "--video-tokenizer", standin,
                         "--out", tmp_path / "pred.npz"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "pred.npz")["arr_0"].shape == (2, 30)
    codec = VideoCodec(CosmosVideoTokenizer.from_pretrained(standin), str(standin))
    ids = codec.condition("tok_rgb", tmp_path / "clip.mp4")
    codec.write("tok_rgb", ids, tmp_path / "two.mp4")  # clips one after the other, at 8 fps
    video = read_video(tmp_path / "two.mp4")
    assert video.frames.shape == (32, 256, 256, 3) and video.fps == pytest.approx(8)


def test_the_video_condition_is_the_prepared_clip(video_checkpoint, standin, tmp_path, capsys):
    """The condition's tokens are those of the clip at 8 fps, centre square at 256 (as prepare makes them): the
    same generation from that token file gives the same prediction."""
    clip(tmp_path / "clip.mp4", 2.5)  # one clip: one sample, written without a batch axis
    frames = square_resize(resample(read_video(tmp_path / "clip.mp4")).frames)[:16]
    np.savez(tmp_path / "cond.npz", CosmosVideoTokenizer.from_pretrained(standin).encode(frames))
    common = ["--checkpoint", video_checkpoint, "--target", "tok_cam", "--steps", "1", "--seed", "4"]
    assert _run([*common, "--cond", f"tok_rgb={tmp_path / 'clip.mp4'}", "--video-tokenizer", standin,
                 "--out", tmp_path / "a.npz"], capsys)[0] == 0
    assert _run([*common, "--cond", f"tok_rgb={tmp_path / 'cond.npz'}", "--out", tmp_path / "b.npz"], capsys)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["arr_0"], np.load(tmp_path / "b.npz")["arr_0"])


def test_video_mistakes_are_one_line(video_checkpoint, checkpoint, standin, tmp_path, capsys):
    clip(tmp_path / "clip.mp4", 2.5)
    clip(tmp_path / "short.mp4", 1.0)
    cond = f"tok_rgb={tmp_path / 'clip.mp4'}"
    cases = [
        (["--checkpoint", video_checkpoint, "--cond", cond, "--target", "tok_depth"], "needs --video-tokenizer"),
        (["--checkpoint", video_checkpoint, "--cond", cond, "--target", "tok_depth", "--decode"],
         "--decode needs --video-tokenizer"),
        (["--checkpoint", video_checkpoint, "--cond", cond, "--target", "tok_depth", "--video-tokenizer", standin,
          "--save-figures", tmp_path / "figs"], "it needs --decode"),
        (["--checkpoint", video_checkpoint, "--cond", f"tok_cam={tmp_path / 'clip.mp4'}", "--target", "tok_depth",
          "--video-tokenizer", standin], "a video conditions tok_rgb or tok_depth"),
        (["--checkpoint", video_checkpoint, "--cond", f"tok_rgb={tmp_path / 'short.mp4'}", "--target", "tok_depth",
          "--video-tokenizer", standin], "shorter than one 2 s clip"),
        (["--checkpoint", checkpoint, "--cond", cond, "--target", "tok_depth", "--video-tokenizer", standin],
         "the Cosmos tokenizer makes 64000"),
        (["--checkpoint", video_checkpoint, "--cond", cond, "--target", "tok_depth", "--video-tokenizer",
          tmp_path / "nowhere"], "encoder.jit"),
    ]
    for argv, expected in cases:
        code, _, err = _run([*argv, "--steps", "1", "--out", tmp_path / "x.npz"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, (argv, err)


def test_a_depth_video_conditions_tok_depth_as_normalised_grey(video_checkpoint, standin, tmp_path, capsys):
    """depth -> *: a grey depth video is read as its channel mean, normalised per clip, as depth is tokenized."""
    from egom2p.tokenizers.video import depth_to_frames

    ramp = np.broadcast_to(np.linspace(40, 200, 96)[None, None, :, None], (75, 72, 96, 3)).astype(np.uint8)
    write_video(tmp_path / "depth.mp4", np.ascontiguousarray(ramp), fps=30)
    codec = VideoCodec(CosmosVideoTokenizer.from_pretrained(standin), str(standin))
    ids = codec.condition("tok_depth", tmp_path / "depth.mp4")
    grey = square_resize(resample(read_video(tmp_path / "depth.mp4")).frames.astype(np.float32).mean(-1))[:16]
    np.testing.assert_array_equal(ids, codec.tokenizer.encode(depth_to_frames(grey)[0])[None])
    code, _, err = _run(["--checkpoint", video_checkpoint, "--cond", f"tok_depth={tmp_path / 'depth.mp4'}",
                         "--target", "tok_cam", "--steps", "1", "--video-tokenizer", standin,
                         "--out", tmp_path / "cam.npz"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "cam.npz")["arr_0"].shape == (30,)
