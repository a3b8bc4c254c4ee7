"""The eval data reader: pattern expansion and lockstep reading of tar shards / sample folders."""

import io
import tarfile

import numpy as np
import pytest
from egom2p.generate.shards import brace_expand, dataset_sources, expand_data_pattern, iter_samples


def _npz_bytes(array):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, array)
    return buffer.getvalue()


def write_tar(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, array in samples:
            data = _npz_bytes(array)
            info = tarfile.TarInfo(f"{key}.npz")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_brace_and_bracket_expansion():
    assert brace_expand("s-{000008..000010}.tar") == ["s-000008.tar", "s-000009.tar", "s-000010.tar"]
    assert brace_expand("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    got = expand_data_pattern("root/[rgb,cam]/val/shard-{000000..000001}.tar")
    assert got == {
        "rgb": ["root/rgb/val/shard-000000.tar", "root/rgb/val/shard-000001.tar"],
        "cam": ["root/cam/val/shard-000000.tar", "root/cam/val/shard-000001.tar"],
    }
    with pytest.raises(ValueError, match="folder"):
        expand_data_pattern("root/rgb/val/shard-000000.tar")
    with pytest.raises(ValueError, match="empty brace range"):
        brace_expand("{5..1}")


def test_reads_tar_shards_in_lockstep(tmp_path):
    for shard in range(2):
        keys = [f"s{shard}_{i}" for i in range(3)]
        write_tar(tmp_path / "rgb" / "val" / f"shard-{shard:06d}.tar", [(k, np.full((2, 2), i)) for i, k in enumerate(keys)])
        write_tar(tmp_path / "cam" / "val" / f"shard-{shard:06d}.tar", [(k, np.arange(4) + i) for i, k in enumerate(keys)])
    samples = list(iter_samples(expand_data_pattern(str(tmp_path) + "/[rgb,cam]/val/shard-{000000..000001}.tar")))
    assert [key for key, _ in samples] == ["s0_0", "s0_1", "s0_2", "s1_0", "s1_1", "s1_2"]
    assert samples[4][1]["rgb"].shape == (2, 2) and samples[4][1]["cam"].tolist() == [1, 2, 3, 4]
    assert dataset_sources(tmp_path, "val", ["rgb", "cam", "gaze"]).keys() == {"rgb", "cam"}


def test_mismatched_keys_are_reported(tmp_path):
    write_tar(tmp_path / "rgb" / "val" / "shard-000000.tar", [("a", np.zeros(2)), ("b", np.zeros(2))])
    write_tar(tmp_path / "cam" / "val" / "shard-000000.tar", [("a", np.zeros(2)), ("c", np.zeros(2))])
    with pytest.raises(ValueError, match="sample keys differ"):
        list(iter_samples(dataset_sources(tmp_path, "val", ["rgb", "cam"])))


def test_reads_per_sample_npz_folders(tmp_path):
    for folder in ("rgb", "cam"):
        (tmp_path / folder / "ds").mkdir(parents=True)
        for i in range(2):
            np.savez(tmp_path / folder / "ds" / f"clip{i}.npz", np.full(3, i))
    samples = list(iter_samples(dataset_sources(tmp_path, "ds", ["rgb", "cam"])))
    assert [k for k, _ in samples] == ["clip0", "clip1"] and samples[1][1]["cam"].tolist() == [1, 1, 1]
    with pytest.raises(FileNotFoundError, match="no shards"):
        dataset_sources(tmp_path, "missing", ["rgb"])
