"""The eval data reader: pattern expansion and lockstep reading of tar shards / sample folders."""

import io

import numpy as np
import pytest
from egom2p.core.errors import ShardError
from egom2p.core.shards import encode_tokens, write_tar
from egom2p.generate.shards import expand_data_pattern, iter_samples, list_data_shards


def tar(path, samples):
    write_tar(path, [(f"{key}.npz", encode_tokens(array)) for key, array in samples])


def test_pattern_expansion():
    assert expand_data_pattern("root/[rgb,cam]/val/shard-{000000..000001}.tar") == [
        {"rgb": "root/rgb/val/shard-000000.tar", "cam": "root/cam/val/shard-000000.tar"},
        {"rgb": "root/rgb/val/shard-000001.tar", "cam": "root/cam/val/shard-000001.tar"},
    ]
    # the core grammar: descending ranges count down
    assert [s["cam"] for s in expand_data_pattern("r/[cam]/s-{10..08}.tar")] == ["r/cam/s-10.tar", "r/cam/s-09.tar",
                                                                                "r/cam/s-08.tar"]
    with pytest.raises(ValueError, match=r"exactly one \[folder,...\] list"):
        expand_data_pattern("root/rgb/val/shard-000000.tar")
    with pytest.raises(ValueError, match="at most one"):
        expand_data_pattern("root/[rgb]/[cam]/shard-000000.tar")


def test_reads_tar_shards_in_lockstep(tmp_path):
    for shard in range(2):
        keys = [f"s{shard}_{i}" for i in range(3)]
        tar(tmp_path / "rgb" / "val" / f"shard-{shard:06d}.tar", [(k, np.full((2, 2), i)) for i, k in enumerate(keys)])
        tar(tmp_path / "cam" / "val" / f"shard-{shard:06d}.tar", [(k, np.arange(4) + i) for i, k in enumerate(keys)])
    pattern = str(tmp_path) + "/[rgb,cam]/val/shard-{000000..000001}.tar"
    samples = list(iter_samples(pattern, ["rgb", "cam", "gaze"]))
    assert [key for key, _ in samples] == ["s0_0", "s0_1", "s0_2", "s1_0", "s1_1", "s1_2"]
    assert samples[4][1]["rgb"].shape == (2, 2) and samples[4][1]["cam"].tolist() == [1, 2, 3, 4]
    assert samples[4][1]["cam"].dtype == np.int64
    # the same data found under a root + dataset; the folder without the dataset is left out
    shards = list_data_shards(tmp_path, ["rgb", "cam", "gaze"], "val")
    assert [s.tars.keys() for s in shards] == [{"rgb", "cam"}] * 2
    assert shards[1].output_path("out", "depth") == "out/depth/val/shard-000001.tar"
    assert [k for k, _ in iter_samples(tmp_path, ["rgb", "cam", "gaze"], "val")] == [k for k, _ in samples]
    with pytest.raises(ValueError, match=r"data folders \['cam'\].*match no modality"):
        iter_samples(pattern, ["rgb"])
    with pytest.raises(ValueError, match="also give the dataset"):
        iter_samples(tmp_path, ["rgb"])


def test_mismatched_shards_are_reported_naming_both_files(tmp_path):
    rgb, cam = tmp_path / "rgb" / "val" / "shard-0.tar", tmp_path / "cam" / "val" / "shard-0.tar"
    tar(rgb, [("a", np.zeros(2, np.int64)), ("b", np.zeros(2, np.int64))])
    tar(cam, [("a", np.zeros(2, np.int64)), ("c", np.zeros(2, np.int64))])
    with pytest.raises(ShardError, match="sample keys differ") as err:
        list(iter_samples(tmp_path, ["rgb", "cam"], "val"))
    assert str(rgb) in str(err.value) and str(cam) in str(err.value)
    tar(cam, [("a", np.zeros(2, np.int64))])
    with pytest.raises(ShardError, match="differ in length"):
        list(iter_samples(str(tmp_path) + "/[rgb,cam]/val/shard-0.tar", ["rgb", "cam"]))
    tar(tmp_path / "cam" / "val" / "shard-1.tar", [("a", np.zeros(2, np.int64))])
    with pytest.raises(ShardError, match=r"val and .*cam/val hold different shards: only rgb holds \[\], only cam "
                                         r"holds \['shard-1.tar'\]"):
        list_data_shards(tmp_path, ["rgb", "cam"], "val")
    with pytest.raises(ShardError, match="hold different shards"):
        iter_samples(tmp_path, ["rgb", "cam"], "val")
    with pytest.raises(FileNotFoundError, match="data file not found"):
        list(iter_samples(str(tmp_path) + "/[rgb,gaze]/val/shard-0.tar", ["rgb", "gaze"]))


def test_float_tokens_are_an_error_naming_the_member(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, np.zeros(2, np.float32))
    write_tar(tmp_path / "cam" / "val" / "shard-0.tar", [("k1.npz", buffer.getvalue())])
    with pytest.raises(ValueError, match=r"shard-0.tar:k1.npz: token array has dtype float32"):
        list(iter_samples(str(tmp_path) + "/[cam]/val/shard-0.tar", ["cam"]))


def test_reads_per_sample_npz_folders_paired_by_key(tmp_path):
    for folder in ("rgb", "cam"):
        (tmp_path / folder / "ds").mkdir(parents=True)
        for i in range(2):
            np.savez(tmp_path / folder / "ds" / f"clip{i}.npz", np.full(3, i))
    np.save(tmp_path / "rgb" / "ds" / "clip2.npy", np.full(3, 2))  # no cam for clip2
    samples = list(iter_samples(tmp_path, ["rgb", "cam"], "ds"))
    assert [k for k, _ in samples] == ["clip0", "clip1", "clip2"] and samples[1][1]["cam"].tolist() == [1, 1, 1]
    assert samples[2][1].keys() == {"rgb"}
    with pytest.raises(FileNotFoundError, match="no token folders"):
        list(iter_samples(tmp_path, ["rgb"], "missing"))


def test_a_root_finds_nested_tars_and_outputs_keep_their_place(tmp_path):
    for folder in ("rgb", "cam"):
        tar(tmp_path / folder / "val" / "token" / "shard-000000.tar", [("k", np.arange(2))])
    [shard] = list_data_shards(tmp_path, ["rgb", "cam"], "val")
    assert shard.tars == {f: f"{tmp_path}/{f}/val/token/shard-000000.tar" for f in ("rgb", "cam")}
    assert shard.output_path("out", "depth") == "out/depth/val/token/shard-000000.tar"
    assert [k for k, _ in iter_samples(tmp_path, ["rgb", "cam"], "val")] == ["k"]
