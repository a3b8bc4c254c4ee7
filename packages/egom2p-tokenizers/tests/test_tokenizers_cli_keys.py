"""The sample-key rule (:mod:`egom2p.tokenizers.keys`): one key for the same 2 s of a recording in every modality."""

from __future__ import annotations

import numpy as np
import pytest
from egom2p.core.layout import find_root_shards, sample_key
from egom2p.core.pairing import read_shard
from egom2p.tokenizers.gaze import GAZE_FRAMES
from egom2p.tokenizers.keys import parse_window_key, recording_stem, start_frame, window_key
from egom2p.tokenizers.synthetic import synthetic_camera_track, synthetic_gaze_track
from egom2p.tokenizers.tracks import write_camera_track_tum
from tokenize_cli_helpers import run, save_tiny_tokenizer


@pytest.mark.parametrize("stem,start,key", [("P01", 0, "P01_000000"), ("P01_kitchen", 120, "P01_kitchen_000120"),
                                            ("a-b", 1234567, "a-b_1234567")])
def test_window_key_and_back(stem, start, key):
    assert window_key(stem, start) == key
    assert parse_window_key(key) == (stem, start)
    assert sample_key(f"{key}.npz") == (key, "npz")  # a tar member named by it reads back as the same key


def test_recording_stem_is_the_member_key_rule():
    for path in ("tracks/P01.tum", "P01.v2.npz", "/data/P01.cam.npy"):
        assert recording_stem(path) == "P01" == sample_key(path)[0]
    for bad in ("tracks/.hidden.npy", "a[1].npy", "x,y.npz"):
        with pytest.raises(ValueError, match="cannot start a sample key"):
            recording_stem(bad)


def test_start_frames_count_30_fps_frames_from_the_first_sample():
    assert [start_frame(s) for s in (0.0, 2.0, 4.0, 4.0166, 1 / 30)] == [0, 60, 120, 120, 1]
    with pytest.raises(ValueError, match="before the recording's first sample"):
        start_frame(-0.5)
    for bad in (("P01", -1), ("P01", 1.5), ("P.01", 0), ("", 0)):
        with pytest.raises(ValueError):
            window_key(*bad)
    with pytest.raises(ValueError, match="is not <recording stem>_<start frame"):
        parse_window_key("P01-3")


def test_camera_and_gaze_of_one_recording_line_up_in_the_shards(capsys, tmp_path):
    """Camera at 30 fps (TUM) and gaze at 10 Hz of the same 8.5 s: the same keys, zipped by core's reader."""
    for kind in ("cam", "gaze"):
        save_tiny_tokenizer(tmp_path / kind, kind)
    frame = GAZE_FRAMES["egoexo"]
    write_camera_track_tum(tmp_path / "P01.tum", synthetic_camera_track(8.5, seed=0))
    gaze = synthetic_gaze_track(8.5, seed=0, frame=frame, fps=10.0)
    np.savez(tmp_path / "P01.npz", gaze=gaze.pixels, times=gaze.times)
    common = ["--out", tmp_path / "out", "--dataset", "ego", "--samples-per-shard", 2]
    assert run(capsys, "encode", "--tokenizer", tmp_path / "cam", "--input", tmp_path / "P01.tum", *common).code == 0
    assert run(capsys, "encode", "--tokenizer", tmp_path / "gaze", "--input", tmp_path / "P01.npz",
               "--gaze-frame", "egoexo", *common).code == 0
    urls = find_root_shards(tmp_path / "out", "ego", ["cam", "gaze"], policy="strict")
    assert [u.rsplit("/", 1)[1] for u in urls] == ["shard-000000.tar", "shard-000001.tar"]
    samples = [sample for url in urls for sample in read_shard(url)]
    assert [key for key, _ in samples] == ["P01_000000", "P01_000060", "P01_000120", "P01_000180"]
    assert all(set(members) == {"cam", "gaze"} for _, members in samples)
    # A video clip of P01.mp4 starting 4 s in gets the key of the third window.
    assert window_key(recording_stem("videos/P01.mp4"), start_frame(4.0)) == samples[2][0]


def test_a_new_modality_joins_existing_samples_with_given_keys_and_its_own_folder(capsys, tmp_path):
    """--keys names each window of a window array (the existing samples' keys), --folder the modality's folder."""
    save_tiny_tokenizer(tmp_path / "tok", "gaze")
    windows = np.random.default_rng(0).uniform(100, 1300, size=(5, 60, 2)).astype(np.float32)
    windows[3] = np.nan  # a window without any point is skipped; the others keep their own keys
    np.save(tmp_path / "hand.npy", windows)
    keys = ["ds-train-0000000", "ds-train-0000001", "ds-train-0000002", "ds-train-0000003", "ds-train-0000004"]
    (tmp_path / "hand.keys.txt").write_text("\n".join(keys) + "\n")
    common = ["encode", "--tokenizer", tmp_path / "tok", "--input", tmp_path / "hand.npy", "--gaze-frame", "aria",
              "--out", tmp_path / "out", "--dataset", "ds"]
    done = run(capsys, *common, "--keys", tmp_path / "hand.keys.txt", "--folder", "hand")
    assert done.code == 0, done.err
    urls = find_root_shards(tmp_path / "out", "ds", ["hand"], policy="strict")
    assert [key for url in urls for key, _ in read_shard(url)] == [k for i, k in enumerate(keys) if i != 3]
    assert not (tmp_path / "out" / "gaze").exists()

    (tmp_path / "short.txt").write_text("\n".join(keys[:4]))
    (tmp_path / "twice.txt").write_text("\n".join(keys[:4] + keys[:1]))
    (tmp_path / "dotted.txt").write_text("\n".join(keys[:4] + ["a.b"]))
    for keys_file, message in (("short.txt", "--keys: 4 keys for"), ("twice.txt", "line 5: 'ds-train-0000000' is given twice"),
                               ("dotted.txt", "line 5: 'a.b' is not a sample key")):
        failed = run(capsys, *common[:-1], "other", "--keys", tmp_path / keys_file, "--folder", "hand")
        assert failed.code == 2 and failed.err.count("\n") == 1 and message in failed.err, failed.err
    np.save(tmp_path / "more.npy", windows)
    failed = run(capsys, "encode", "--tokenizer", tmp_path / "tok", "--input", tmp_path / "hand.npy", tmp_path / "more.npy",
                 "--gaze-frame", "aria", "--out", tmp_path / "out", "--dataset", "two", "--keys", tmp_path / "hand.keys.txt")
    assert failed.code == 2 and "--keys names the windows of one window array; got 2 input files" in failed.err
