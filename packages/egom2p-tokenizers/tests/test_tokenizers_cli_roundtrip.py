"""``egom2p-tokenize encode`` -> core's shard reader -> ``decode``, and ``recon``, on tiny random tokenizers.

References are the library itself applied by hand (``encode_poses`` / ``decode_poses`` on windows cut here with
numpy slicing) and the float64 conventions: the command must add nothing and lose nothing on the way.
"""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.core.layout import find_root_shards
from egom2p.core.modalities import RELEASED_MODALITIES, load_modality_specs
from egom2p.core.pairing import read_shard
from egom2p.core.shards import decode_tokens
from egom2p.tokenizers.camera import BASES
from egom2p.tokenizers.gaze import GAZE_FRAMES
from egom2p.tokenizers.metrics import camera_metrics, gaze_metrics
from egom2p.tokenizers.synthetic import (
    synthetic_camera_track,
    synthetic_camera_windows,
    synthetic_gaze_track,
    synthetic_gaze_windows,
)
from egom2p.tokenizers.tracks import read_camera_track, read_gaze_track, resample_camera, write_camera_track_tum
from tokenize_cli_helpers import json_line, run, save_tiny_tokenizer

B = BASES["holoassist"]
FRAME = GAZE_FRAMES["holoassist"]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    return {kind: (root / kind, save_tiny_tokenizer(root / kind, kind)) for kind in ("cam", "gaze")}


def _shard_samples(root, dataset, folder):
    """``{key: tokens}`` of every shard of ``root/<folder>/<dataset>``, read by core's reader, in order, each sample
    passing the training loader's check of the released modality (shape, integer dtype, vocabulary)."""
    spec = next(s for s in load_modality_specs(RELEASED_MODALITIES).values() if s.folder == folder)
    samples = {}
    for url in find_root_shards(root, dataset, [folder], policy="strict"):
        for key, members in read_shard(url):
            name, data = members[folder]
            samples[key] = decode_tokens(name, data)
            assert spec.check_tokens(samples[key]) is None
    return samples


def test_camera_encode_decode_through_shards(capsys, tmp_path, tokenizers):
    source, model = tokenizers["cam"]
    track = synthetic_camera_track(7.0, seed=1)  # 210 frames at 30 fps: windows at 0, 60, 120
    np.savez(tmp_path / "P01.npz", poses=track.poses, times=track.times)
    windows = synthetic_camera_windows(5, seed=2)
    np.save(tmp_path / "walk.npy", windows)
    result = run(capsys, "encode", "--tokenizer", source, "--input", tmp_path / "P01.npz", tmp_path / "walk.npy",
                 "--basis", "holoassist", "--out", tmp_path / "out", "--dataset", "ds", "--samples-per-shard", 3)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"{tmp_path / 'out'}/[cam]/ds/shard-{{000000..000002}}.tar",
        f"encoded 8 windows from 2 recordings; skipped none; 3 shards in {tmp_path / 'out/cam/ds'}"]

    samples = _shard_samples(tmp_path / "out", "ds", "cam")
    starts = [0, 60, 120]
    assert list(samples) == [f"P01_{s:06d}" for s in starts] + [f"walk_{60 * i:06d}" for i in range(5)]
    by_hand = np.concatenate([track.poses[[np.arange(s, s + 60) for s in starts]], windows])
    expected = model.encode_poses(by_hand, "holoassist").numpy()
    tokens = np.stack(list(samples.values()))
    np.testing.assert_array_equal(tokens, expected)
    assert all(t.dtype == np.int64 and t.shape == (30,) for t in samples.values())

    # decode the shards (keys beside), and one token file of a single window
    result = run(capsys, "decode", "--tokenizer", source, "--input", f"{tmp_path}/out/[cam]/ds/shard-{{000000..000002}}.tar",
                 "--basis", "holoassist", "--out", tmp_path / "poses.npy")
    assert result.code == 0, result.err
    canonical = model.decode_poses(expected)
    np.testing.assert_allclose(np.load(tmp_path / "poses.npy"), B @ canonical @ np.linalg.inv(B), rtol=0, atol=1e-12)
    assert (tmp_path / "poses.keys.txt").read_text().split() == list(samples)
    np.savez(tmp_path / "one.npz", expected[4])
    assert run(capsys, "decode", "--tokenizer", source, "--input", tmp_path / "one.npz", "--out", tmp_path / "one.npy").code == 0
    np.testing.assert_allclose(np.load(tmp_path / "one.npy"), canonical[4], rtol=0, atol=1e-12)


def test_camera_recon_of_windows_lies_on_the_input(capsys, tmp_path, tokenizers):
    source, model = tokenizers["cam"]
    windows = synthetic_camera_windows(4, seed=5)
    windows[2, 7] = np.nan  # a missing pose: its window is skipped, its row stays NaN
    np.save(tmp_path / "w.npy", windows)
    metrics = json_line(run(capsys, "recon", "--tokenizer", source, "--input", tmp_path / "w.npy", "--basis", "egogen",
                            "--out", tmp_path / "r.npy"))
    kept = [0, 1, 3]
    egogen = BASES["egogen"]
    canonical = model.decode_poses(model.encode_poses(windows[kept], "egogen"))
    expected = windows[kept, :1] @ egogen @ canonical @ np.linalg.inv(egogen)
    out = np.load(tmp_path / "r.npy")
    assert out.shape == windows.shape and np.isnan(out[2]).all()
    np.testing.assert_allclose(out[kept], expected, rtol=0, atol=1e-12)
    assert metrics == pytest.approx(camera_metrics(expected, windows[kept]), rel=1e-12)
    assert metrics["windows"] == 3
    # one window (60, 4, 4) comes back as one window
    np.save(tmp_path / "one.npy", windows[0])
    json_line(run(capsys, "recon", "--tokenizer", source, "--input", tmp_path / "one.npy", "--basis", "egogen",
                  "--out", tmp_path / "one_r.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "one_r.npy"), expected[0], rtol=0, atol=1e-12)


def test_camera_recon_of_a_tum_track_is_a_tum_track(capsys, tmp_path, tokenizers):
    source, model = tokenizers["cam"]
    track = synthetic_camera_track(4.5, seed=7, fps=20.0)  # 134 frames at 30 fps: 2 windows, the rest uncovered
    write_camera_track_tum(tmp_path / "rec.tum", track)
    metrics = json_line(run(capsys, "recon", "--tokenizer", source, "--input", tmp_path / "rec.tum",
                            "--out", tmp_path / "rec_recon.tum"))
    assert metrics["windows"] == 2
    resampled = resample_camera(read_camera_track(tmp_path / "rec.tum"))
    assert len(resampled.times) == 134
    windows = resampled.poses[[np.arange(0, 60), np.arange(60, 120)]]
    expected = windows[:, :1] @ model.decode_poses(model.encode_poses(windows))
    back = read_camera_track(tmp_path / "rec_recon.tum")  # the frames no window covers are left out
    np.testing.assert_allclose(back.times, np.arange(120) / 30, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.poses, expected.reshape(120, 4, 4), rtol=0, atol=1e-9)


def test_gaze_encode_decode_and_recon(capsys, tmp_path, tokenizers):
    source, model = tokenizers["gaze"]
    windows = synthetic_gaze_windows(5, seed=3, frame=FRAME)
    windows[1] = np.nan  # no gaze point at all: skipped
    windows[3, 10:20] = np.nan  # a blink: kept, invalid frames
    np.save(tmp_path / "g.npy", windows)
    frame = ["--orig-res", 896, 504, "--resize-res", 896, 504, "--crop", 480, 480]
    result = run(capsys, "encode", "--tokenizer", source, "--input", tmp_path / "g.npy", *frame, "--out",
                 tmp_path / "out", "--dataset", "ds")
    assert result.code == 0, result.err
    assert "encoded 4 windows from 1 recording; skipped 1 window without any gaze point" in result.out
    samples = _shard_samples(tmp_path / "out", "ds", "gaze")
    kept = [0, 2, 3, 4]
    assert list(samples) == [f"g_{60 * i:06d}" for i in kept]
    tokens = np.stack(list(samples.values()))
    np.testing.assert_array_equal(tokens, model.encode_gaze(windows[kept], FRAME).numpy())

    assert run(capsys, "decode", "--tokenizer", source, "--input", f"{tmp_path}/out/[gaze]/ds/shard-000000.tar",
               "--gaze-frame", "holoassist", "--out", tmp_path / "px.npy").code == 0
    np.testing.assert_allclose(np.load(tmp_path / "px.npy"), model.decode_gaze(tokens, FRAME), rtol=0, atol=1e-9)

    metrics = json_line(run(capsys, "recon", "--tokenizer", source, "--input", tmp_path / "g.npy",
                            "--gaze-frame", "holoassist", "--out", tmp_path / "r.npy"))
    out = np.load(tmp_path / "r.npy")
    np.testing.assert_allclose(out[kept], model.decode_gaze(tokens, FRAME), rtol=0, atol=1e-9)
    assert np.isnan(out[1]).all()
    assert metrics == pytest.approx(gaze_metrics(out[kept], windows[kept], FRAME), rel=1e-12)


def test_gaze_track_recon_in_text_and_npy_track_with_fps(capsys, tmp_path, tokenizers):
    source, _ = tokenizers["gaze"]
    track = synthetic_gaze_track(5.0, seed=4, frame=FRAME, fps=10.0)  # 10 Hz -> 30 fps, 2 windows
    np.save(tmp_path / "g10.npy", track.pixels)
    result = run(capsys, "encode", "--tokenizer", source, "--input", tmp_path / "g10.npy", "--fps", 10,
                 "--gaze-frame", "holoassist", "--out", tmp_path / "out", "--dataset", "ds", "--stride", 30)
    assert result.code == 0, result.err
    # 5 s at 10 Hz spans 4.9 s = 148 frames at 30 fps: windows every 30 frames from 0 to 60 (88 > 60 + 60)
    assert list(_shard_samples(tmp_path / "out", "ds", "gaze")) == ["g10_000000", "g10_000030", "g10_000060"]
    np.savez(tmp_path / "g.npz", gaze=track.pixels, times=track.times)
    json_line(run(capsys, "recon", "--tokenizer", source, "--input", tmp_path / "g.npz", "--gaze-frame", "holoassist",
                  "--out", tmp_path / "g_recon.txt"))
    back = read_gaze_track(tmp_path / "g_recon.txt")
    assert len(back.times) == 148 and np.isnan(back.pixels[120:]).all() and np.isfinite(back.pixels[:120]).all()
