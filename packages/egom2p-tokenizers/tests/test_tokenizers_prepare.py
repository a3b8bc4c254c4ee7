"""``egom2p-tokenize prepare``: recordings (video, depth, camera, gaze at their own rates) -> aligned shards.

Synthetic recordings (egom2p.tokenizers.synthetic_recording: 30 fps video, camera at 60 Hz as TUM text, gaze at
10 Hz as .npy), the scripted Cosmos stand-in and tiny random camera / gaze tokenizers.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from egom2p.core.shards import decode_tokens, read_tar_members
from egom2p.tokenizers.codec import WindowCodec
from egom2p.tokenizers.cosmos import CosmosVideoTokenizer
from egom2p.tokenizers.cosmos_standin import write_standin
from egom2p.tokenizers.tracks import camera_windows, read_camera_track, resample_camera
from egom2p.tokenizers.vqvae import VQVAE
from tokenize_cli_helpers import run, save_tiny_tokenizer

pytest.importorskip("av")  # the [video] extra
from egom2p.tokenizers import prepare as prepare_module  # noqa: E402
from egom2p.tokenizers.synthetic_recording import write_synthetic_recording  # noqa: E402
from egom2p.tokenizers.video_io import read_video, resample, square_resize  # noqa: E402

FOLDERS = ("rgb", "depth", "cam", "gaze")


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Two recordings (5 s and 4.5 s: two clips each), the stand-in and two tiny tokenizers."""
    base = tmp_path_factory.mktemp("prepare")
    write_synthetic_recording(base / "recs" / "P01", 5.0, seed=0)
    write_synthetic_recording(base / "recs" / "P02", 4.5, seed=1)
    save_tiny_tokenizer(base / "cam", "cam", seed=0)
    save_tiny_tokenizer(base / "gaze", "gaze", seed=1)
    return {"base": base, "recs": base / "recs", "cosmos": write_standin(base / "cosmos"), "cam": base / "cam",
            "gaze": base / "gaze"}


def prepare(capsys, kit, inputs, out, *extra):
    return run(capsys, "prepare", "--input", *inputs, "--out", out, "--dataset", "syn", "--video-tokenizer",
               kit["cosmos"], "--cam-tokenizer", kit["cam"], "--gaze-tokenizer", kit["gaze"], "--gaze-frame",
               "holoassist", "--gaze-fps", "10", "--samples-per-shard", "4", *extra)


def shard_members(out, folder):
    return [(key, decode_tokens(f"{key}.{ext}", data)) for shard in sorted((out / folder / "syn").glob("shard-*.tar"))
            for key, ext, data in read_tar_members(str(shard))]


def test_four_modalities_line_up_by_key_and_hold_the_right_tokens(capsys, kit, tmp_path):
    out = tmp_path / "out"
    result = prepare(capsys, kit, [kit["recs"]], out)
    assert result.code == 0, result.err
    assert "4 samples of 2 recordings" in result.out and "[rgb,depth,cam,gaze]" in result.out
    members = {folder: shard_members(out, folder) for folder in FOLDERS}
    keys = [key for key, _ in members["rgb"]]
    assert keys == ["P01_000000", "P01_000060", "P02_000000", "P02_000060"]
    for folder in FOLDERS:  # the same keys in the same shards and order: the loader zips them
        assert [key for key, _ in members[folder]] == keys
        assert sorted(p.name for p in (out / folder / "syn").glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    # rgb: the second clip of P01 is seconds 2-4 of the video at 8 fps, centre square at 256
    tok = CosmosVideoTokenizer.from_pretrained(kit["cosmos"])
    frames = square_resize(resample(read_video(kit["recs"] / "P01" / "rgb.mp4")).frames)
    np.testing.assert_array_equal(members["rgb"][1][1], tok.encode(frames[16:32]))
    assert members["depth"][0][1].shape == (5, 32, 32)
    # cam: the 30 fps window of the 60 Hz track that starts at 2 s, tokenized by the camera tokenizer
    codec = WindowCodec(VQVAE.from_pretrained(kit["cam"]))
    windows, starts, _ = camera_windows(resample_camera(read_camera_track(kit["recs"] / "P01" / "cam.tum")),
                                        length=60, stride=60)
    assert list(starts.frames[:2]) == [0, 60]
    np.testing.assert_array_equal(members["cam"][1][1], codec.encode(windows[1:2])[0])
    assert all(tokens.shape == (30,) for _, tokens in members["gaze"])
    # nothing of the run is left aside
    assert not [p for p in out.rglob("*") if ".egom2p-" in p.name]


def test_clips_a_track_does_not_cover_are_skipped_and_counted(capsys, kit, tmp_path):
    recs = tmp_path / "recs"
    shutil.copytree(kit["recs"] / "P01", recs / "P01")
    lines = (recs / "P01" / "cam.tum").read_text().splitlines()
    (recs / "P01" / "cam.tum").write_text("\n".join(lines[:180]) + "\n")  # 3 s at 60 Hz: the second clip lacks it
    result = prepare(capsys, kit, [recs / "P01"], tmp_path / "out")
    assert result.code == 0, result.err
    assert "1 sample of 1 recording" in result.out and "clip without a cam window" in result.out
    assert [key for key, _ in shard_members(tmp_path / "out", "gaze")] == ["P01_000000"]


def test_a_run_that_keeps_no_clip_fails_with_its_summary(capsys, kit, tmp_path):
    recs = tmp_path / "recs"
    shutil.copytree(kit["recs"] / "P01", recs / "P01")
    lines = (recs / "P01" / "cam.tum").read_text().splitlines()
    (recs / "P01" / "cam.tum").write_text("\n".join(lines[:60]) + "\n")  # 1 s at 60 Hz: no clip has a cam window
    result = prepare(capsys, kit, [recs / "P01"], tmp_path / "out")
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("egom2p-tokenize: error: nothing prepared: 0 shards per folder"), result.err
    assert "skipped: 2 clips without a cam window" in result.err


def _no_dataset(out) -> bool:
    return not any(any((out / folder / "syn").glob("*.tar")) for folder in FOLDERS)


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "short", "depth-length", "npy-without-fps", "no-cam-tok"])
def test_a_bad_recording_is_one_line_and_nothing_shows_in_the_output(capsys, kit, tmp_path, damage):
    recs = tmp_path / "recs"
    shutil.copytree(kit["recs"], recs)
    bad = recs / "P02"
    if damage == "corrupt":
        (bad / "rgb.mp4").write_bytes(b"\x00not a video" * 500)
    elif damage == "truncated":
        data = (bad / "rgb.mp4").read_bytes()
        (bad / "rgb.mp4").write_bytes(data[: len(data) // 3])
    elif damage == "short":
        shutil.rmtree(bad)
        write_synthetic_recording(bad, 1.5, seed=3)
    elif damage == "depth-length":
        np.save(bad / "depth.npy", np.load(bad / "depth.npy")[:-5])
    elif damage == "npy-without-fps":
        track = read_camera_track(bad / "cam.tum")
        (bad / "cam.tum").unlink()
        np.save(bad / "cam.npy", track.poses)
    result = (run(capsys, "prepare", "--input", recs, "--out", tmp_path / "out", "--dataset", "syn",
                  "--video-tokenizer", kit["cosmos"], "--gaze-tokenizer", kit["gaze"], "--gaze-frame", "holoassist",
                  "--gaze-fps", "10") if damage == "no-cam-tok" else prepare(capsys, kit, [recs], tmp_path / "out"))
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    expected = {"corrupt": "rgb.mp4", "truncated": "rgb.mp4", "short": "shorter than one 2 s clip",
                "depth-length": "depth.npy: 130 depth frames for the 135 frames", "npy-without-fps": "cam.npy",
                "no-cam-tok": "needs --cam-tokenizer"}[damage]
    assert expected in lines[0], lines[0]
    assert _no_dataset(tmp_path / "out")


def test_a_killed_run_resumes_without_encoding_finished_recordings_again(capsys, kit, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = prepare_module._aligned_samples
    calls = []

    def killed_on_the_second(tokenizers, recording):
        calls.append(recording.name)
        if recording.name == "P02":
            raise KeyboardInterrupt  # what Ctrl-C or a SIGTERM handler raises mid-run
        return real(tokenizers, recording)

    monkeypatch.setattr(prepare_module, "_aligned_samples", killed_on_the_second)
    assert prepare(capsys, kit, [kit["recs"]], out).code == 130
    assert _no_dataset(out)
    monkeypatch.setattr(prepare_module, "_aligned_samples", lambda t, r: (calls.append(r.name), real(t, r))[1])
    result = prepare(capsys, kit, [kit["recs"]], out)
    assert result.code == 0 and "resuming: 1 recording" in result.err, result.err
    assert calls == ["P01", "P02", "P02"]  # P01 was not encoded again
    fresh = tmp_path / "fresh"
    assert prepare(capsys, kit, [kit["recs"]], fresh).code == 0
    for folder in FOLDERS:
        ours, theirs = shard_members(out, folder), shard_members(fresh, folder)
        assert [k for k, _ in ours] == [k for k, _ in theirs]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ours, theirs))


def test_a_second_run_is_refused_unless_overwrite_or_append(capsys, kit, tmp_path):
    out = tmp_path / "out"
    assert prepare(capsys, kit, [kit["recs"] / "P01"], out).code == 0
    again = prepare(capsys, kit, [kit["recs"] / "P01"], out)
    assert again.code == 2 and "--overwrite" in again.err
    appended = prepare(capsys, kit, [kit["recs"] / "P02"], out, "--append")
    assert appended.code == 0, appended.err
    assert [k for k, _ in shard_members(out, "cam")] == ["P01_000000", "P01_000060", "P02_000000", "P02_000060"]
    manifest = json.loads((out / "rgb" / "syn" / prepare_module.MANIFEST_NAME).read_text())
    assert [r["source"]["name"] for r in manifest["recordings"]] == ["P02"]
    assert [r["source"]["name"] for run in manifest["earlier_runs"] for r in run["recordings"]] == ["P01"]
    repeated = prepare(capsys, kit, [kit["recs"] / "P02"], out, "--append")
    assert repeated.code == 2 and "P02_000000" in repeated.err
    replaced = prepare(capsys, kit, [kit["recs"] / "P02"], out, "--overwrite")
    assert replaced.code == 0
    assert [k for k, _ in shard_members(out, "rgb")] == ["P02_000000", "P02_000060"]


def test_recordings_of_one_dataset_need_the_same_modalities(capsys, kit, tmp_path):
    recs = tmp_path / "recs"
    shutil.copytree(kit["recs"], recs)
    (recs / "P02" / "gaze.npy").unlink()
    result = prepare(capsys, kit, [recs], tmp_path / "out")
    assert result.code == 2 and "P02: has no gaze" in result.err


def test_a_list_file_names_recording_folders(capsys, kit, tmp_path):
    listing = kit["base"] / "list.txt"
    listing.write_text("# my recordings\nrecs/P02\n\nrecs/P01  # the first\n")
    result = prepare(capsys, kit, [listing], tmp_path / "out")
    assert result.code == 0, result.err
    assert [k for k, _ in shard_members(tmp_path / "out", "depth")] == ["P02_000000", "P02_000060", "P01_000000",
                                                                         "P01_000060"]


def test_a_long_run_in_a_log_prints_progress_lines(capsys, kit, tmp_path, monkeypatch):
    """stderr is not a terminal here: each recording of a slow run (a clock that moves 61 s per reading) gets a
    plain line, the last at 100%; no bar redraws."""
    from types import SimpleNamespace

    from egom2p.core import progress as progress_module

    now = [0.0]
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=lambda: now.__setitem__(0, now[0] + 61) or now[0]))
    result = prepare(capsys, kit, [kit["recs"]], tmp_path / "out")
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("preparing:")]
    assert [line.split(", ")[:2] for line in lines] == [["preparing: 1/2 recording (50.0%)", "samples 2"],
                                                        ["preparing: 2/2 recording (100.0%)", "samples 4"]]
    assert "\r" not in result.err
